// Shared by the host compiler and nvcc. Every function here has a jnp twin in mrl_jax; both evaluate
// the same float32 expressions in the same order, and this code is compiled without floating-point
// contraction (-ffp-contract=off / -fmad=false), so results are identical bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MRL_HD __host__ __device__ __forceinline__
#else
#define MRL_HD inline
#endif

namespace mrl {

MRL_HD float fmin_(float a, float b) { return a < b ? a : b; }
MRL_HD float fmax_(float a, float b) { return a > b ? a : b; }
// jnp.minimum(jnp.maximum(v, lo), hi)
MRL_HD float clip(float v, float lo, float hi) { return fmin_(fmax_(v, lo), hi); }

MRL_HD float bits_to_float(uint32_t u) {
  union { uint32_t u; float f; } c;
  c.u = u;
  return c.f;
}
MRL_HD uint32_t float_to_bits(float f) {
  union { uint32_t u; float f; } c;
  c.f = f;
  return c.u;
}

// Round half to even (jnp.round); valid for |v| < 2^23, and exact beyond.
MRL_HD float round_even(float v) {
  const float big = 8388608.0f;  // 2^23
  const float a = v < 0 ? -v : v;
  const float r = (a + big) - big;  // the FPU's default round-to-nearest-even
  const float m = a < big ? r : a;  // |v| >= 2^23 (or NaN) is already integral
  return v < 0 ? -m : m;
}

}  // namespace mrl
