// Rate of the pulse-train random bits on this CPU: one Threefry-2x32-20 block per bit (the generator before
// line seeds) against one block per line plus the two-round mixer per slot (mrl_ops/rng.h, line_seed/slot_bits).
// One core, 4096 rows of 432 lines (conv2 of LeNet-5: 400 x + 32 d lines) at BL 31:
//
//   for a in x86-64 x86-64-v3 x86-64-v4; do g++ -O3 -std=c++17 -march=$a -Ixla_ops/include \
//     benchmarks/rng_rate.cc -o /tmp/rng_$a && /tmp/rng_$a $a; done
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "mrl_ops/rng.h"

using namespace mrl;

int main(int argc, char** argv) {
  const int n = 432, bl = 31, rows = 4096;
  std::vector<uint32_t> out(n), s0(n), s1(n);
  volatile uint32_t sink = 0;
  double best_block = 1e30, best_mixer = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < n; ++c) out[c] = 0;
      for (int t = 0; t < bl; ++t) {
        for (int c = 0; c < n; ++c) {
          uint32_t x0 = (kStreamXPulses << 24) | static_cast<uint32_t>(r), x1 = static_cast<uint32_t>(t * n + c);
          threefry2x32(7, 9, x0, x1);
          out[c] |= (0.3f > uniform24(x0 ^ x1) ? 1u : 0u) << t;
        }
      }
      sink = sink + out[r % n];
    }
    auto t1 = std::chrono::steady_clock::now();
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < n; ++c) {
        out[c] = 0;
        line_seed(7, 9, kStreamXPulses, static_cast<uint32_t>(r), static_cast<uint32_t>(c), s0[c], s1[c]);
      }
      for (int t = 0; t < bl; ++t) {
        for (int c = 0; c < n; ++c) out[c] |= (0.3f > uniform24(slot_bits(s0[c], s1[c], t)) ? 1u : 0u) << t;
      }
      sink = sink + out[r % n];
    }
    auto t2 = std::chrono::steady_clock::now();
    const double bits = double(rows) * n * bl;
    best_block = std::min(best_block, std::chrono::duration<double, std::nano>(t1 - t0).count() / bits);
    best_mixer = std::min(best_mixer, std::chrono::duration<double, std::nano>(t2 - t1).count() / bits);
  }
  std::printf("%s: Threefry block per bit %.3f ns/bit, line seed + mixer %.3f ns/bit (%.1fx)\n",
              argc > 1 ? argv[1] : "", best_block, best_mixer, best_block / best_mixer);
  return 0;
}
