// The two hot loops of the CPU pulsed update, compiled once per x86-64 ISA level (cpu/row_kernels.cc
// is built several times with different -march flags) and chosen at run time. Every variant computes
// the same bits: the math is IEEE float32 without contraction, vectorized across crosspoints.
#pragma once

#include <atomic>
#include <cstdint>

#include "mrl_ops/update.h"

namespace mrl {

// Pulse lines of one (seed, row): `lines` receives one value per x line then one per d line.
struct LineArgs {
  const UpdateConsts* up;
  const float* x;  // [in]
  const float* d;  // [out]
  int64_t in_size, out_size;
  uint32_t k0, k1, row;
  int bl;
  float a, b;  // probability scales of d and x
  uint32_t* lines;
};

// All pulses of one batch row on one weight row i.
struct RowArgs {
  const DeviceConsts* dev;
  const UpdateConsts* up;
  const float* table;
  float* w;                  // weight row [in]
  const float* params[6];    // parameter rows [in]
  const float* x;            // input row [in]
  const uint32_t* x_lines;   // [in]
  uint32_t d_line;
  bool d_pos;
  int bl;
  uint32_t s0, s1;
  uint32_t element0;         // flat index of (i, 0)
  int64_t in_size;
  int32_t* counts;           // scratch [in]
  int32_t* lanes;            // scratch [in]
  uint32_t* hashes;          // scratch [in]
  float* noise0;             // scratch [in]
  float* noise1;             // scratch [in]
};

struct Kernels {
  bool (*lines)(const LineArgs&);  // false: no crosspoint of the row can pulse
  void (*row)(const RowArgs&);
};

// flag: the device's noise variant (DeviceConsts::mult_noise or ::complex_noise); noise: dw_min_std > 0;
// sum_pulses: UpdateConsts::sum_pulses.
Kernels kernels_baseline(int kind, bool flag, bool noise, bool sum_pulses);
Kernels kernels_x86_64_v3(int kind, bool flag, bool noise, bool sum_pulses);
Kernels kernels_x86_64_v4(int kind, bool flag, bool noise, bool sum_pulses);

// ISA variants, in the order of the x86-64 micro-architecture levels (mrl_jax._native.CPU_VARIANTS).
enum CpuVariant : int { kAutoVariant = -1, kBaseline = 0, kX86_64_v3 = 1, kX86_64_v4 = 2 };

bool variant_compiled(int variant);   // built into this module
bool variant_runs_here(int variant);  // built, and this CPU has its instructions
// Forces `variant` for every later call (kAutoVariant: the best this CPU runs). Refuses, returning
// false, a variant that does not run here, so a forced variant can never raise SIGILL.
bool set_cpu_variant(int variant);
int cpu_variant();                    // the variant the next call will use

// Wall time of the two phases of every CPU pulsed-update call since the last reset, for
// benchmarks/profile_lenet_step.py (three clock reads per call; no effect on results).
struct PhaseTimes {
  std::atomic<int64_t> calls{0}, lines_ns{0}, pulses_ns{0};
  void add(int64_t lines, int64_t pulses) {
    calls.fetch_add(1, std::memory_order_relaxed);
    lines_ns.fetch_add(lines, std::memory_order_relaxed);
    pulses_ns.fetch_add(pulses, std::memory_order_relaxed);
  }
};
extern PhaseTimes g_phase_times;

// The kernels of cpu_variant().
Kernels select_kernels(int kind, bool flag, bool noise, bool sum_pulses);

}  // namespace mrl
