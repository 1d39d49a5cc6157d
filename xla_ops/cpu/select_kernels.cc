// Run-time choice of the ISA variant of the CPU row kernels.
#include "cpu/row_kernels.h"

namespace mrl {

Kernels select_kernels(int kind, bool flag, bool noise, bool sum_pulses) {
#if defined(MRL_HAVE_X86_VARIANTS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return kernels_x86_64_v4(kind, flag, noise, sum_pulses);
  if (__builtin_cpu_supports("x86-64-v3")) return kernels_x86_64_v3(kind, flag, noise, sum_pulses);
#endif
  return kernels_baseline(kind, flag, noise, sum_pulses);
}

}  // namespace mrl
