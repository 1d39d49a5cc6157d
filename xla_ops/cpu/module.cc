// nanobind module _mrl_cpu: the CPU FFI handlers as PyCapsules for jax.ffi.register_ffi_target, and
// the switch of the row kernels' ISA variant (mrl_jax._native.set_cpu_variant wraps it).
#include <nanobind/nanobind.h>

#include "cpu/row_kernels.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(MrlPulsedUpdateCpu);

namespace nb = nanobind;

NB_MODULE(_mrl_cpu, m) {
  m.doc() = "CPU XLA FFI handlers of mrl_jax.";
  m.def("registrations", []() {
    nb::dict d;
    d["mrl_pulsed_update"] = nb::capsule(reinterpret_cast<void*>(MrlPulsedUpdateCpu));
    return d;
  });
  m.def("variant_compiled", &mrl::variant_compiled, nb::arg("variant"));
  m.def("variant_runs_here", &mrl::variant_runs_here, nb::arg("variant"));
  m.def("set_cpu_variant", &mrl::set_cpu_variant, nb::arg("variant"));
  m.def("cpu_variant", &mrl::cpu_variant);
  m.def("phase_times", []() {  // (calls, pulse-line seconds, pulse seconds); then resets
    auto& t = mrl::g_phase_times;
    const double lines = 1e-9 * t.lines_ns.exchange(0), pulses = 1e-9 * t.pulses_ns.exchange(0);
    return nb::make_tuple(t.calls.exchange(0), lines, pulses);
  });
}
