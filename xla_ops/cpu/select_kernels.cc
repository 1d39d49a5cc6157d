// Run-time choice of the ISA variant of the CPU row kernels, and the switch that forces one.
#include <atomic>

#include "cpu/row_kernels.h"

namespace mrl {
namespace {

// kAutoVariant, or a variant this CPU runs (set_cpu_variant checks before storing).
std::atomic<int> g_forced_variant{kAutoVariant};

}  // namespace

bool variant_compiled(int variant) {
#if defined(MRL_HAVE_X86_VARIANTS)
  return variant >= kBaseline && variant <= kX86_64_v4;
#else
  return variant == kBaseline;
#endif
}

bool variant_runs_here(int variant) {
  if (!variant_compiled(variant)) return false;
#if defined(MRL_HAVE_X86_VARIANTS)
  __builtin_cpu_init();
  if (variant == kX86_64_v4) return __builtin_cpu_supports("x86-64-v4");
  if (variant == kX86_64_v3) return __builtin_cpu_supports("x86-64-v3");
#endif
  return true;
}

bool set_cpu_variant(int variant) {
  if (variant != kAutoVariant && !variant_runs_here(variant)) return false;
  g_forced_variant.store(variant, std::memory_order_relaxed);
  return true;
}

int cpu_variant() {
  const int forced = g_forced_variant.load(std::memory_order_relaxed);
  if (forced != kAutoVariant) return forced;
  for (int v = kX86_64_v4; v > kBaseline; --v) {
    if (variant_runs_here(v)) return v;
  }
  return kBaseline;
}

Kernels select_kernels(int kind, bool flag, bool noise, bool sum_pulses) {
  switch (cpu_variant()) {
#if defined(MRL_HAVE_X86_VARIANTS)
    case kX86_64_v4: return kernels_x86_64_v4(kind, flag, noise, sum_pulses);
    case kX86_64_v3: return kernels_x86_64_v3(kind, flag, noise, sum_pulses);
#endif
    default: return kernels_baseline(kind, flag, noise, sum_pulses);
  }
}

}  // namespace mrl
