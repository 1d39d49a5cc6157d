// nanobind module _mrl_cuda: the CUDA FFI handlers as PyCapsules. Compiled by the host compiler; the
// handlers themselves live in the nvcc-built static library (cuda/*.cu).
#include <nanobind/nanobind.h>

#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(MrlPulsedUpdateCuda);

namespace nb = nanobind;

NB_MODULE(_mrl_cuda, m) {
  m.doc() = "CUDA XLA FFI handlers of mrl_jax.";
  m.def("registrations", []() {
    nb::dict d;
    d["mrl_pulsed_update"] = nb::capsule(reinterpret_cast<void*>(MrlPulsedUpdateCuda));
    return d;
  });
}
