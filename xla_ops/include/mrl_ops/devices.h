// One device pulse per device type (twin of PulsedDevice.pulse_once in mrl_jax/devices.py).
#pragma once

#include "mrl_ops/common.h"
#include "mrl_ops/fmath.h"

namespace mrl {

enum DeviceKind : int32_t {
  kConstantStep = 0,
  kLinearStep = 1,  // also SoftBounds
  kSoftBoundsReference = 2,
  kExpStep = 3,
  kPowStep = 4,
  kPiecewiseStep = 5,
};

// Per-crosspoint hidden parameters, in the operand order of mrl_jax._native.param_planes.
struct CrossPoint {
  float max_bound, min_bound, scale_up, scale_down, aux0, aux1;
};

constexpr int kMaxPiecewise = 64;

// Static (per-config) device constants, each a named attribute of the kernel call: X(type, name) per line,
// the names mrl_jax._native.kernel_attrs writes (mrl_ops/attrs.h decodes them). A new device parameter is
// one line here and one entry there.
#define MRL_DEVICE_ATTRS(X)                                                                    \
  X(int32_t, kind)            /* DeviceKind: PulsedDevice.kind */                              \
  X(bool, mult_noise)         /* LinearStep, SoftBoundsReference: multiplicative noise */      \
  X(bool, complex_noise)      /* ExpStep */                                                    \
  X(float, exp_a)                                                                              \
  X(float, exp_b)                                                                              \
  X(float, exp_A_up)                                                                           \
  X(float, exp_A_down)                                                                         \
  X(float, exp_gamma_up)                                                                       \
  X(float, exp_gamma_down)                                                                     \
  X(float, std_add)           /* ExpStep dw_min_std_add */                                     \
  X(float, std_slope)         /* ExpStep dw_min_std_slope */

#define MRL_DECLARE_MEMBER(type, name) type name;

struct DeviceConsts {
  MRL_DEVICE_ATTRS(MRL_DECLARE_MEMBER)
  // PiecewiseStep: the array attributes piecewise_up/piecewise_down, zero-padded to kMaxPiecewise.
  int32_t n_piecewise;
  float pw_up[kMaxPiecewise];
  float pw_down[kMaxPiecewise];
};

// Applies one up (up = true) or down pulse with cycle-to-cycle noise sxi = dw_min_std * xi. Branch-free per
// device kind (selects only), so the CPU row loop vectorizes across crosspoints. Flag is the kind's
// noise variant: mult_noise (LinearStep, SoftBoundsReference) or complex_noise (ExpStep).
template <int Kind, bool Flag>
MRL_HD float pulse_once_t(const DeviceConsts& c, float w, const CrossPoint& p, bool up, float sxi) {
  const float factor = 1.0f + sxi;
  const float scale = up ? p.scale_up : p.scale_down;
  if (Kind == kConstantStep) {
    const float delta = up ? p.scale_up * factor : -(p.scale_down * factor);
    return clip(w + delta, p.min_bound, p.max_bound);
  } else if (Kind == kLinearStep) {
    const float slope = up ? p.aux0 : p.aux1;
    const float delta = Flag ? (slope * w + scale) * factor : slope * w + scale * factor;
    return clip(w + (up ? delta : -delta), p.min_bound, p.max_bound);
  } else if (Kind == kSoftBoundsReference) {
    const float ref = p.aux0;
    const float v = w + ref;
    const bool has_bound = up ? p.max_bound > 0 : p.min_bound < 0;
    const float bound = has_bound ? (up ? p.max_bound : p.min_bound) : 1.0f;
    const float a = has_bound ? v / bound : 0.0f;
    const float step = Flag ? scale * (1.0f - a) * factor : scale * ((1.0f - a) + sxi);
    return clip(v + (up ? step : -step), p.min_bound, p.max_bound) - ref;
  } else if (Kind == kExpStep) {
    const float diff = p.max_bound - p.min_bound;
    const bool valid = diff > 0;
    const float z = 2.0f * w / (valid ? diff : 1.0f) * c.exp_a + c.exp_b;
    const float arg = up ? c.exp_gamma_up * z : c.exp_gamma_down * (-z);
    const float amp = up ? c.exp_A_up : c.exp_A_down;
    const float y = fmax_(1.0f - amp * exp_(arg), 0.0f);
    float nw;
    if (Flag) {
      const float dw = up ? y * scale : -(y * scale);
      const float aw = w < 0 ? -w : w;
      const float adw = dw < 0 ? -dw : dw;
      const float spread = adw + c.std_add + c.std_slope * aw;
      nw = w + (dw + spread * sxi);
    } else {
      const float step = y * factor * scale;
      nw = w + (up ? step : -step);
    }
    return valid ? fmax_(fmin_(nw, p.max_bound), p.min_bound) : w;
  } else if (Kind == kPowStep) {
    const float range = p.max_bound - p.min_bound;
    const bool valid = range != 0;
    const float safe = valid ? range : 1.0f;
    const float base = up ? (p.max_bound - w) / safe : (w - p.min_bound) / safe;
    const float gamma = up ? p.aux0 : p.aux1;
    const float step = scale * pow_(base, gamma) * factor;
    return clip(valid ? w + (up ? step : -step) : w, p.min_bound, p.max_bound);
  } else {  // kPiecewiseStep
    const int n = c.n_piecewise - 1;
    const float first = up ? c.pw_up[0] : c.pw_down[0];
    float step = scale * first;
    if (n > 0) {
      const bool valid = p.max_bound > p.min_bound;
      const float ws = fmax_((w - p.min_bound) / (valid ? p.max_bound - p.min_bound : 1.0f) * static_cast<float>(n), 0.0f);
      // floor of ws >= 0 (values >= 2^23 are integers already)
      float idx = ws < 8388608.0f ? static_cast<float>(static_cast<int32_t>(ws)) : ws;
      idx = fmin_(idx, static_cast<float>(n - 1));
      const float t = fmin_(ws - idx, 1.0f);
      const float t1 = 1.0f - t;
      const int k = static_cast<int>(idx);
      const float v0 = up ? c.pw_up[k] : c.pw_down[k];
      const float v1 = up ? c.pw_up[k + 1] : c.pw_down[k + 1];
      const float interp = scale * (t1 * v0 + t * v1);
      step = valid ? interp : step;
    }
    step = step * factor;
    return clip(w + (up ? step : -step), p.min_bound, p.max_bound);
  }
}

// n ≥ 1 same-direction ConstantStep pulses as one summed step n·scale·(1 + sxi/√n), clipped once
// (AIHWKit's CUDA UpdateFunctorConstantStep; twin of ConstantStepDevice.pulse_run). n = 1 gives the bits of
// pulse_once_t<kConstantStep>.
MRL_HD float pulse_run_constant_step(float w, const CrossPoint& p, int n, bool up, float sxi) {
  const float nf = static_cast<float>(n);
  const float factor = 1.0f + sxi / sqrtf(nf);
  const float delta = up ? (p.scale_up * nf) * factor : -((p.scale_down * nf) * factor);
  return clip(w + delta, p.min_bound, p.max_bound);
}

MRL_HD float pulse_once(const DeviceConsts& c, float w, const CrossPoint& p, bool up, float sxi) {
  switch (c.kind) {
    case kConstantStep: return pulse_once_t<kConstantStep, false>(c, w, p, up, sxi);
    case kLinearStep:
      return c.mult_noise ? pulse_once_t<kLinearStep, true>(c, w, p, up, sxi)
                          : pulse_once_t<kLinearStep, false>(c, w, p, up, sxi);
    case kSoftBoundsReference:
      return c.mult_noise ? pulse_once_t<kSoftBoundsReference, true>(c, w, p, up, sxi)
                          : pulse_once_t<kSoftBoundsReference, false>(c, w, p, up, sxi);
    case kExpStep:
      return c.complex_noise ? pulse_once_t<kExpStep, true>(c, w, p, up, sxi)
                             : pulse_once_t<kExpStep, false>(c, w, p, up, sxi);
    case kPowStep: return pulse_once_t<kPowStep, false>(c, w, p, up, sxi);
    case kPiecewiseStep: return pulse_once_t<kPiecewiseStep, false>(c, w, p, up, sxi);
    default: return w;
  }
}

}  // namespace mrl
