// exp2/exp/log2/pow from correctly rounded operations only (twin of mrl_jax/fmath.py).
#pragma once

#include "mrl_ops/common.h"

namespace mrl {

MRL_HD float horner_exp2(float r) {
  const double c[9] = {1.3215486790144305e-06, 1.5252733804059838e-05, 0.00015403530393381606,
                       0.0013333558146428441,  0.009618129107628477,   0.055504108664821576,
                       0.2402265069591007,     0.6931471805599453,     1.0};
  float acc = static_cast<float>(c[0]);
  for (int i = 1; i < 9; ++i) acc = acc * r + static_cast<float>(c[i]);
  return acc;
}

MRL_HD float horner_log(float s2) {
  const double c[7] = {0.15384615384615385, 0.18181818181818182, 0.2222222222222222, 0.2857142857142857,
                       0.4,                 0.6666666666666666,  2.0};
  float acc = static_cast<float>(c[0]);
  for (int i = 1; i < 7; ++i) acc = acc * s2 + static_cast<float>(c[i]);
  return acc;
}

MRL_HD float exp2_(float t) {
  t = clip(t, -126.0f, 127.0f);
  const float k = round_even(t);
  const float r = t - k;
  const float p = horner_exp2(r);
  const float scale = bits_to_float(static_cast<uint32_t>((static_cast<int32_t>(k) + 127) << 23));
  return p * scale;
}

MRL_HD float exp_(float x) { return exp2_(x * static_cast<float>(1.4426950408889634)); }

MRL_HD float log2_(float x) {
  x = fmax_(x, 1.1754943508222875e-38f);  // 2^-126
  const uint32_t bits = float_to_bits(x);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xFFu) - 127;
  float m = bits_to_float((bits & 0x007FFFFFu) | 0x3F800000u);
  if (m > static_cast<float>(1.4142135)) {
    m = m * 0.5f;
    e = e + 1;
  }
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float ln_m = horner_log(s2) * s;
  return static_cast<float>(e) + ln_m * static_cast<float>(1.4426950408889634);
}

MRL_HD float pow_(float base, float gamma) {
  if (base > 0) return exp2_(gamma * log2_(base));
  return gamma == 0 ? 1.0f : 0.0f;
}

}  // namespace mrl
