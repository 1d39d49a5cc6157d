// Update management, pulse trains and coincidence counts of the pulsed update
// (twin of mrl_jax/pulses.py and mrl_jax/update.py).
#pragma once

#include "mrl_ops/common.h"
#include "mrl_ops/devices.h"
#include "mrl_ops/rng.h"

namespace mrl {

constexpr int kMaxBL = 31;
constexpr int kRowHeader = 3;  // workspace words per row before the lines: bl, noise seed s0, s1

enum PulseKind : int32_t { kStochastic = 0, kMeanCount = 1, kDeterministicImplicit = 2 };

// Static (per-config) update constants, named attributes of the kernel call as MRL_DEVICE_ATTRS.
#define MRL_UPDATE_ATTRS(X)                                                                    \
  X(int32_t, desired_bl)                                                                       \
  X(bool, update_management)                                                                   \
  X(bool, update_bl_management)                                                                \
  X(bool, fixed_bl)                                                                            \
  X(int32_t, pulse_kind)      /* PulseKind */                                                  \
  X(bool, has_noise)          /* dw_min_std > 0 */                                             \
  X(bool, sum_pulses)         /* ConstantStep with aggregate_pulses: one summed step per row */ \
  X(float, res)                                                                                \
  X(float, x_res_implicit)                                                                     \
  X(float, d_res_implicit)                                                                     \
  X(float, um_grad_scale)                                                                      \
  X(float, dw)                /* granularity of the update management */

struct UpdateConsts {
  MRL_UPDATE_ATTRS(MRL_DECLARE_MEMBER)
};

MRL_HD bool is_finite(float v) { return v == v && v - v == 0.0f; }

// Per-row bit length and scales (AIHWKit performUpdateManagement); bl = 0 skips the row.
MRL_HD void row_bl_and_scales(const UpdateConsts& u, float x_amax, float d_amax, float lr, int& bl, float& a,
                              float& b) {
  const float dw = u.dw;
  const float bld = static_cast<float>(u.desired_bl);
  if (u.fixed_bl || u.update_bl_management) {
    bl = u.desired_bl;
    a = sqrtf(lr / (dw * bld));
  } else {
    const bool big = dw * bld < lr;
    float c = ceilf(lr / dw);
    c = clip(c, 1.0f, static_cast<float>(kMaxBL));
    bl = big ? static_cast<int>(c) : u.desired_bl;
    a = big ? 1.0f : sqrtf(lr / (dw * bld));
  }
  b = a;
  const bool um = u.update_management || u.update_bl_management;
  float k = 0.0f;
  if (um) {
    const float x_val = x_amax;
    float d_val = u.um_grad_scale * d_amax;
    k = lr * x_val * d_val / dw;
    if (u.update_bl_management) {
      bl = static_cast<int>(fmin_(ceilf(k), bld));
      const int blc = bl > 1 ? bl : 1;
      a = sqrtf(lr / (dw * static_cast<float>(blc)));
      b = a;
    }
    if (u.update_management) {
      if (k > bld) d_val = d_val * (bld / k);
      a = a * sqrtf(x_val / d_val);
      b = b * sqrtf(d_val / x_val);
    }
  }
  const bool skip = x_amax == 0.0f || d_amax == 0.0f || !(lr > 0.0f) || !is_finite(um ? k : lr);
  if (skip) bl = 0;
}

MRL_HD float disc(float v, float res) { return res > 0 ? round_even(v / res) * res : v; }

// Per-line value of a row: the bit line (stochastic) or the float count/probability (deterministic).
MRL_HD uint32_t line_value(const UpdateConsts& u, uint32_t k0, uint32_t k1, uint32_t stream, uint32_t row,
                           uint32_t line, float v_abs, float scale, int bl, float res_implicit) {
  if (u.pulse_kind == kStochastic) {
    const float prob = disc(v_abs * scale, u.res);
    uint32_t bits = 0;
    if (!(prob > 0.0f)) return bits;  // no slot can fire (uniform24 >= 0)
    uint32_t s0, s1;
    line_seed(k0, k1, stream, row, line, s0, s1);
    for (int t = 0; t < bl; ++t) {
      if (prob > uniform24(slot_bits(s0, s1, static_cast<uint32_t>(t)))) bits |= 1u << t;
    }
    return bits;
  }
  if (u.pulse_kind == kMeanCount) {
    const float blf = static_cast<float>(bl);
    return float_to_bits(clip(round_even(blf * disc(v_abs * scale, u.res)), 0.0f, blf));
  }
  return float_to_bits(clip(disc(v_abs * scale, res_implicit), 0.0f, 1.0f));
}

MRL_HD int popcount32(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}

MRL_HD int coincidences(const UpdateConsts& u, uint32_t d_line, uint32_t x_line, int bl) {
  if (u.pulse_kind == kStochastic) return popcount32(d_line & x_line);
  const float blf = static_cast<float>(bl);
  const float cd = bits_to_float(d_line), cx = bits_to_float(x_line);
  if (u.pulse_kind == kMeanCount) return static_cast<int>(round_even(cd / fmax_(blf, 1.0f) * cx));
  return static_cast<int>(round_even(blf * cd * cx));
}

// All pulses of one row on one crosspoint.
MRL_HD float apply_pulses(const DeviceConsts& dev, const UpdateConsts& u, const float* table, float w,
                          const CrossPoint& p, int n, bool up, uint32_t s0, uint32_t s1, uint32_t element) {
  if (u.sum_pulses) {
    const float sxi = u.has_noise ? table[pulse_noise_index(s0, s1, element, 0)] : 0.0f;
    return pulse_run_constant_step(w, p, n, up, sxi);
  }
  for (int q = 0; q < n; ++q) {
    const float sxi = u.has_noise ? table[pulse_noise_index(s0, s1, element, static_cast<uint32_t>(q))] : 0.0f;
    w = pulse_once(dev, w, p, up, sxi);
  }
  return w;
}

}  // namespace mrl
