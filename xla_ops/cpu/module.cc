// nanobind module _mrl_cpu: the CPU FFI handlers as PyCapsules for jax.ffi.register_ffi_target.
#include <nanobind/nanobind.h>

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
}
