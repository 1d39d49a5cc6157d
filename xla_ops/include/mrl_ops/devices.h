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

// Per-crosspoint hidden parameters, in the packed order of mrl_jax._native.PACKED_KEYS.
struct CrossPoint {
  float max_bound, min_bound, scale_up, scale_down, aux0, aux1;
};

constexpr int kMaxPiecewise = 64;

// Static (per-config) device constants.
struct DeviceConsts {
  int32_t kind;
  bool mult_noise;
  bool complex_noise;
  float exp_a, exp_b, exp_A_up, exp_A_down, exp_gamma_up, exp_gamma_down, std_add, std_slope;
  int32_t n_piecewise;
  float pw_up[kMaxPiecewise];
  float pw_down[kMaxPiecewise];
};

// Applies one up (up = true) or down pulse with cycle-to-cycle noise sxi = dw_min_std * xi.
MRL_HD float pulse_once(const DeviceConsts& c, float w, const CrossPoint& p, bool up, float sxi) {
  const float factor = 1.0f + sxi;
  const float scale = up ? p.scale_up : p.scale_down;
  switch (c.kind) {
    case kConstantStep: {
      const float delta = up ? p.scale_up * factor : -(p.scale_down * factor);
      return clip(w + delta, p.min_bound, p.max_bound);
    }
    case kLinearStep: {
      const float slope = up ? p.aux0 : p.aux1;
      const float delta = c.mult_noise ? (slope * w + scale) * factor : slope * w + scale * factor;
      return clip(w + (up ? delta : -delta), p.min_bound, p.max_bound);
    }
    case kSoftBoundsReference: {
      const float ref = p.aux0;
      float v = w + ref;
      const float bound = up ? p.max_bound : p.min_bound;
      const bool has_bound = up ? p.max_bound > 0 : p.min_bound < 0;
      const float a = has_bound ? v / bound : 0.0f;
      const float step = c.mult_noise ? scale * (1.0f - a) * factor : scale * ((1.0f - a) + sxi);
      v = v + (up ? step : -step);
      v = clip(v, p.min_bound, p.max_bound);
      return v - ref;
    }
    case kExpStep: {
      const float diff = p.max_bound - p.min_bound;
      if (!(diff > 0)) return w;
      const float z = 2.0f * w / diff * c.exp_a + c.exp_b;
      const float arg = up ? c.exp_gamma_up * z : c.exp_gamma_down * (-z);
      const float amp = up ? c.exp_A_up : c.exp_A_down;
      const float y = fmax_(1.0f - amp * exp_(arg), 0.0f);
      float nw;
      if (c.complex_noise) {
        const float dw = up ? y * scale : -(y * scale);
        const float aw = w < 0 ? -w : w;
        const float adw = dw < 0 ? -dw : dw;
        const float spread = adw + c.std_add + c.std_slope * aw;
        nw = w + (dw + spread * sxi);
      } else {
        const float step = y * factor * scale;
        nw = w + (up ? step : -step);
      }
      return fmax_(fmin_(nw, p.max_bound), p.min_bound);
    }
    case kPowStep: {
      const float range = p.max_bound - p.min_bound;
      float nw = w;
      if (range != 0) {
        const float base = up ? (p.max_bound - w) / range : (w - p.min_bound) / range;
        const float gamma = up ? p.aux0 : p.aux1;
        const float step = scale * pow_(base, gamma) * factor;
        nw = w + (up ? step : -step);
      }
      return clip(nw, p.min_bound, p.max_bound);
    }
    case kPiecewiseStep: {
      const int n = c.n_piecewise - 1;
      float step;
      const float first = up ? c.pw_up[0] : c.pw_down[0];
      if (n == 0 || !(p.max_bound > p.min_bound)) {
        step = scale * first;
      } else {
        const float ws = fmax_((w - p.min_bound) / (p.max_bound - p.min_bound) * static_cast<float>(n), 0.0f);
        float idx = ws;
        // floor for ws >= 0 (ws may be huge but finite)
        idx = idx < 8388608.0f ? static_cast<float>(static_cast<int64_t>(idx)) : idx;
        idx = fmin_(idx, static_cast<float>(n - 1));
        const float t = fmin_(ws - idx, 1.0f);
        const float t1 = 1.0f - t;
        const int k = static_cast<int>(idx);
        const float v0 = up ? c.pw_up[k] : c.pw_down[k];
        const float v1 = up ? c.pw_up[k + 1] : c.pw_down[k + 1];
        step = scale * (t1 * v0 + t * v1);
      }
      step = step * factor;
      return clip(w + (up ? step : -step), p.min_bound, p.max_bound);
    }
    default:
      return w;
  }
}

}  // namespace mrl
