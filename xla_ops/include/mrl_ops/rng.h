// Counter-based random numbers (twin of mrl_jax/rng.py).
#pragma once

#include "mrl_ops/common.h"

namespace mrl {

constexpr uint32_t kStreamXPulses = 1;
constexpr uint32_t kStreamDPulses = 2;
constexpr uint32_t kStreamPulseNoise = 3;
constexpr int kNormalTableSize = 1 << 16;

MRL_HD uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

// Threefry-2x32 with 20 rounds, the block cipher of jax.random.
MRL_HD void threefry2x32(uint32_t k0, uint32_t k1, uint32_t& x0, uint32_t& x1) {
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  const int rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  x0 += k0;
  x1 += k1;
  for (int block = 0; block < 5; ++block) {
    for (int i = 0; i < 4; ++i) {
      x0 += x1;
      x1 = rotl(x1, rot[block % 2][i]) ^ x0;
    }
    x0 += ks[(block + 1) % 3];
    x1 += ks[(block + 2) % 3] + static_cast<uint32_t>(block + 1);
  }
}

MRL_HD float uniform24(uint32_t bits) { return static_cast<float>(bits >> 8) * 5.9604644775390625e-08f; }

MRL_HD uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

// Seed of the pulse-train slots of one line (an x or d element of a row): one Threefry block per
// (stream, row, line); slot_bits mixes the slot index into it.
MRL_HD void line_seed(uint32_t k0, uint32_t k1, uint32_t stream, uint32_t row, uint32_t line, uint32_t& s0,
                      uint32_t& s1) {
  s0 = (stream << 24) | row;
  s1 = line;
  threefry2x32(k0, k1, s0, s1);
}

// 32 random bits of time slot `slot` (< 32) of the line seeded (s0, s1).
MRL_HD uint32_t slot_bits(uint32_t s0, uint32_t s1, uint32_t slot) { return lowbias32(lowbias32(slot ^ s0) ^ s1); }

MRL_HD void row_noise_seed(uint32_t k0, uint32_t k1, uint32_t row, uint32_t& s0, uint32_t& s1) {
  s0 = (kStreamPulseNoise << 24) | row;
  s1 = 0;
  threefry2x32(k0, k1, s0, s1);
}

// 16-bit index into the normal table for pulse `pulse` (< 32) of flat element `element`.
MRL_HD uint32_t pulse_noise_index(uint32_t s0, uint32_t s1, uint32_t element, uint32_t pulse) {
  const uint32_t word = (element << 4) | (pulse >> 1);
  const uint32_t h = lowbias32(lowbias32(word ^ s0) ^ s1);
  return (pulse & 1u) == 0 ? (h >> 16) : (h & 0xFFFFu);
}

}  // namespace mrl
