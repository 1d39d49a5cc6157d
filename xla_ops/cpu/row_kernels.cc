// See row_kernels.h. MRL_KERNELS_NAME names this build's entry point (one per ISA level).
#include "cpu/row_kernels.h"

#ifndef MRL_KERNELS_NAME
#define MRL_KERNELS_NAME kernels_baseline
#endif

namespace mrl {
namespace {

// Returns false when no crosspoint of the row can pulse (every d line or every x line is empty); the x
// lines are then left zero without drawing them (the d lines come first: there are fewer of them).
bool lines_impl(const LineArgs& a) {
  const UpdateConsts& u = *a.up;
  uint32_t* xl = a.lines;
  uint32_t* dl = a.lines + a.in_size;
  auto any_set = [](const uint32_t* v, int64_t n) {
    uint32_t acc = 0;
    for (int64_t c = 0; c < n; ++c) acc |= v[c];
    return acc != 0;
  };
  if (u.pulse_kind != kStochastic) {  // float counts or probabilities; +0.0f (all bits zero) means none
    for (int64_t i = 0; i < a.out_size; ++i)
      dl[i] = line_value(u, a.k0, a.k1, kStreamDPulses, a.row, i, a.d[i] < 0 ? -a.d[i] : a.d[i], a.a, a.bl,
                         u.d_res_implicit);
    for (int64_t j = 0; j < a.in_size; ++j)
      xl[j] = line_value(u, a.k0, a.k1, kStreamXPulses, a.row, j, a.x[j] < 0 ? -a.x[j] : a.x[j], a.b, a.bl,
                         u.x_res_implicit);
    return any_set(dl, a.out_size) && any_set(xl, a.in_size);
  }
  // Blocks of lines: the Threefry seeds of a block, then slot outer, lines inner, so both loops vectorize
  // across lines. A block whose probabilities are all zero (e.g. the background of an image) draws nothing.
  constexpr int64_t kBlock = 64;
  auto fill = [&](uint32_t* out, const float* v, int64_t n, float scale, uint32_t stream) {
    float prob[kBlock];
    uint32_t s0[kBlock], s1[kBlock];
    uint32_t acc = 0;
    for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
      const int64_t m = n - c0 < kBlock ? n - c0 : kBlock;
      bool any = false;
      for (int64_t c = 0; c < m; ++c) {
        const float x = v[c0 + c];
        prob[c] = disc((x < 0 ? -x : x) * scale, u.res);
        any |= prob[c] > 0.0f;
        out[c0 + c] = 0;
      }
      if (!any) continue;
      for (int64_t c = 0; c < m; ++c) line_seed(a.k0, a.k1, stream, a.row, static_cast<uint32_t>(c0 + c), s0[c], s1[c]);
      for (int t = 0; t < a.bl; ++t) {
        for (int64_t c = 0; c < m; ++c) {
          const float r = uniform24(slot_bits(s0[c], s1[c], static_cast<uint32_t>(t)));
          out[c0 + c] |= (prob[c] > r ? 1u : 0u) << t;
        }
      }
      for (int64_t c = 0; c < m; ++c) acc |= out[c0 + c];
    }
    return acc != 0;
  };
  if (!fill(dl, a.d, a.out_size, a.a, kStreamDPulses)) {
    for (int64_t j = 0; j < a.in_size; ++j) xl[j] = 0;
    return false;
  }
  return fill(xl, a.x, a.in_size, a.b, kStreamXPulses);
}

// Noise of pulses 2·qw and 2·qw + 1 (the two halves of one hash) of the crosspoints e0 + lanes[k], written
// at those lanes: both pulses for k < m2, pulse 2·qw only for m2 ≤ k < m1. The hashes are computed first
// in a loop that vectorizes; the table lookups (random reads of a 256 KiB table, the cost that matters)
// then run only for lanes that still pulse.
__attribute__((noinline)) void fill_noise(const float* __restrict__ table, float* __restrict__ out0,
                                          float* __restrict__ out1, uint32_t* __restrict__ hashes, uint32_t s0,
                                          uint32_t s1, uint32_t e0, uint32_t qw, const int32_t* __restrict__ lanes,
                                          int64_t m1, int64_t m2) {
  for (int64_t k = 0; k < m1; ++k) {
    const uint32_t word = ((e0 + static_cast<uint32_t>(lanes[k])) << 4) | qw;
    hashes[k] = lowbias32(lowbias32(word ^ s0) ^ s1);
  }
  for (int64_t k = 0; k < m2; ++k) {
    const uint32_t h = hashes[k];
    out0[lanes[k]] = table[static_cast<int32_t>(h >> 16)];
    out1[lanes[k]] = table[static_cast<int32_t>(h & 0xFFFFu)];
  }
  for (int64_t k = m2; k < m1; ++k) out0[lanes[k]] = table[static_cast<int32_t>(hashes[k] >> 16)];
}

// Noise of pulse 0 of the crosspoints e0 … e0 + len − 1 (pulse_noise_index(…, 0)), for rows where most
// crosspoints pulse: the dense loop needs no lane list.
__attribute__((noinline)) void fill_noise_all(const float* __restrict__ table, float* __restrict__ out0,
                                              uint32_t* __restrict__ hashes, uint32_t s0, uint32_t s1, uint32_t e0,
                                              int64_t len) {
  for (int64_t j = 0; j < len; ++j) {
    const uint32_t word = (e0 + static_cast<uint32_t>(j)) << 4;
    hashes[j] = lowbias32(lowbias32(word ^ s0) ^ s1);
  }
  for (int64_t j = 0; j < len; ++j) out0[j] = table[static_cast<int32_t>(hashes[j] >> 16)];
}

// Bit count in plain integer arithmetic, which vectorizes (AVX2 has no vector popcount instruction).
inline int32_t popcount_swar(uint32_t v) {
  v = v - ((v >> 1) & 0x55555555u);
  v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
  v = (v + (v >> 4)) & 0x0F0F0F0Fu;
  v = v + (v >> 8);
  return static_cast<int32_t>((v + (v >> 16)) & 0x3Fu);
}

// Pulse counts of one weight row into a.counts; returns how many are > 0. Operands are copied to locals
// first: the stores to the int32 counts could otherwise alias the int32 fields behind a.up, forcing
// reloads every iteration. Stochastic lines of x = 0 are empty, so that case needs no test for x = 0.
int64_t pulse_counts(const RowArgs& a) {
  const UpdateConsts u = *a.up;
  const float* __restrict__ x = a.x;
  const uint32_t* __restrict__ x_lines = a.x_lines;
  int32_t* __restrict__ n = a.counts;
  const uint32_t d_line = a.d_line;
  const int bl = a.bl;
  int64_t active = 0;
  if (u.pulse_kind == kStochastic) {
    for (int64_t j = 0; j < a.in_size; ++j) {
      n[j] = popcount_swar(d_line & x_lines[j]);
      active += n[j] > 0 ? 1 : 0;
    }
  } else {
    for (int64_t j = 0; j < a.in_size; ++j) {
      n[j] = x[j] == 0.0f ? 0 : coincidences(u, d_line, x_lines[j], bl);
      active += n[j] > 0 ? 1 : 0;
    }
  }
  return active;
}

template <int Kind, bool Flag, bool Noise>
void row_impl(const RowArgs& a) {
  pulse_counts(a);
  const int32_t* __restrict__ n = a.counts;
  int32_t* __restrict__ lanes = a.lanes;
  // Counting sort of the lanes by descending pulse count: the lanes still pulsing at pulse q are then the
  // first above[q] entries of `lanes`, and no noise is drawn for lanes that are done (about half of them).
  int32_t above[kMaxBL + 1] = {};  // first a histogram of the counts, then the number of lanes with count > c
  for (int64_t j = 0; j < a.in_size; ++j) ++above[n[j]];
  int32_t max_n = 0;
  for (int32_t c = kMaxBL, sum = 0; c >= 0; --c) {
    if (max_n == 0 && above[c] > 0) max_n = c;
    const int32_t here = above[c];
    above[c] = sum;
    sum += here;
  }
  if (Noise && max_n > 0) {
    int32_t next[kMaxBL + 1];
    for (int32_t c = 0; c <= kMaxBL; ++c) next[c] = above[c];
    for (int64_t j = 0; j < a.in_size; ++j) lanes[next[n[j]]++] = static_cast<int32_t>(j);
  }
  const DeviceConsts dev = *a.dev;
  float* __restrict__ w = a.w;
  const float* __restrict__ p0 = a.params[0];
  const float* __restrict__ p1 = a.params[1];
  const float* __restrict__ p2 = a.params[2];
  const float* __restrict__ p3 = a.params[3];
  const float* __restrict__ p4 = a.params[4];
  const float* __restrict__ p5 = a.params[5];
  const float* __restrict__ x = a.x;
  const float* __restrict__ table = a.table;
  const int32_t* __restrict__ nn = n;
  const bool d_pos = a.d_pos;
  const uint32_t s0 = a.s0, s1 = a.s1, e0 = a.element0;
  const int64_t len = a.in_size;
  float* __restrict__ sxi0 = a.noise0;
  float* __restrict__ sxi1 = a.noise1;
  // Pulses q and q + 1 share one hash (its two 16-bit halves), as in rng.pulse_noise_index. The noise
  // draws go to scratch first: two simple loops vectorize where one fused loop does not.
  for (int32_t q = 0; q < max_n; q += 2) {
    if (Noise) fill_noise(table, sxi0, sxi1, a.hashes, s0, s1, e0, static_cast<uint32_t>(q) >> 1, lanes, above[q],
                          above[q + 1]);
    for (int64_t j = 0; j < len; ++j) {
      const CrossPoint cp{p0[j], p1[j], p2[j], p3[j], p4[j], p5[j]};
      const bool up = d_pos != (x[j] > 0);
      float wj = w[j];
      const float w1 = pulse_once_t<Kind, Flag>(dev, wj, cp, up, Noise ? sxi0[j] : 0.0f);
      wj = q < nn[j] ? w1 : wj;
      const float w2 = pulse_once_t<Kind, Flag>(dev, wj, cp, up, Noise ? sxi1[j] : 0.0f);
      w[j] = q + 1 < nn[j] ? w2 : wj;
    }
  }
}

// ConstantStep with summed pulses (UpdateConsts::sum_pulses): one step and one noise draw per crosspoint.
template <bool Noise>
void row_sum_impl(const RowArgs& a) {
  const int64_t active = pulse_counts(a);
  if (active == 0) return;
  const int32_t* __restrict__ n = a.counts;
  if (Noise && 2 * active >= a.in_size) {
    fill_noise_all(a.table, a.noise0, a.hashes, a.s0, a.s1, a.element0, a.in_size);
  } else if (Noise) {
    int32_t* __restrict__ lanes = a.lanes;
    int64_t m = 0;
    for (int64_t j = 0; j < a.in_size; ++j) {
      lanes[m] = static_cast<int32_t>(j);
      m += n[j] > 0 ? 1 : 0;
    }
    fill_noise(a.table, a.noise0, a.noise1, a.hashes, a.s0, a.s1, a.element0, 0, lanes, m, 0);
  }
  float* __restrict__ w = a.w;
  const float* __restrict__ p0 = a.params[0];
  const float* __restrict__ p1 = a.params[1];
  const float* __restrict__ p2 = a.params[2];
  const float* __restrict__ p3 = a.params[3];
  const float* __restrict__ x = a.x;
  const float* __restrict__ sxi = a.noise0;
  const bool d_pos = a.d_pos;
  for (int64_t j = 0; j < a.in_size; ++j) {
    const CrossPoint cp{p0[j], p1[j], p2[j], p3[j], 0.0f, 0.0f};
    const float w1 = pulse_run_constant_step(w[j], cp, n[j], d_pos != (x[j] > 0), Noise ? sxi[j] : 0.0f);
    w[j] = n[j] > 0 ? w1 : w[j];
  }
}

template <int Kind, bool Flag>
Kernels pick(bool noise) {
  return noise ? Kernels{lines_impl, row_impl<Kind, Flag, true>} : Kernels{lines_impl, row_impl<Kind, Flag, false>};
}

}  // namespace

Kernels MRL_KERNELS_NAME(int kind, bool flag, bool noise, bool sum_pulses) {
  if (sum_pulses) return noise ? Kernels{lines_impl, row_sum_impl<true>} : Kernels{lines_impl, row_sum_impl<false>};
  switch (kind) {
    case kLinearStep: return flag ? pick<kLinearStep, true>(noise) : pick<kLinearStep, false>(noise);
    case kSoftBoundsReference:
      return flag ? pick<kSoftBoundsReference, true>(noise) : pick<kSoftBoundsReference, false>(noise);
    case kExpStep: return flag ? pick<kExpStep, true>(noise) : pick<kExpStep, false>(noise);
    case kPowStep: return pick<kPowStep, false>(noise);
    case kPiecewiseStep: return pick<kPiecewiseStep, false>(noise);
    default: return pick<kConstantStep, false>(noise);
  }
}

}  // namespace mrl
