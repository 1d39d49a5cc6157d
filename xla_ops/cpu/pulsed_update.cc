// CPU XLA FFI handler of the pulsed update: mrl_pulsed_update.
//
// Operands (leading batch dims of size S = seeds, or 1 when shared; trailing dims fixed):
//   weights f32[S, out, in] (aliased to the result), 6 parameter planes f32[S|1, out, in] (max/min bound,
//   up/down scale, two device-specific; mrl_jax._native.param_planes),
//   x f32[S|1, B, in], d f32[S|1, B, out], lr f32[S|1], key u32[S|1, 2], noise_table f32[S|1, 65536].
// Results: weights f32[S, out, in]; workspace u32[S, B, 3 + in + out] (row info and pulse lines).
// Attributes: named, MRL_DEVICE_ATTRS and MRL_UPDATE_ATTRS (mrl_ops/devices.h, update.h) plus the PiecewiseStep
// tables piecewise_up/piecewise_down (decoded in mrl_ops/attrs.h).
//
// Work is split in two phases over XLA's intra-op thread pool: (1) the pulse lines of every (seed, row),
// (2) the pulses of every (seed, block of weight rows), rows of the batch in order. Each output element is
// written by exactly one task and every random number is a function of its coordinates, so the result
// does not depend on the number of threads.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cpu/row_kernels.h"
#include "mrl_ops/attrs.h"
#include "mrl_ops/ffi_shapes.h"
#include "mrl_ops/update.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace mrl {

PhaseTimes g_phase_times;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn(i) for i in [0, n) on the caller and the pool. The caller claims items itself and waits only
// for items other threads have claimed, so it never waits for a task that has not started.
template <typename Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t n, Fn fn) {
  if (n <= 0) return;
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto* fn_ptr = &fn;
  const int64_t helpers = std::min<int64_t>(n - 1, std::max<int64_t>(0, pool.num_threads()));
  // Helpers hold the shared counters alive; they touch fn only after claiming an item, which can only
  // happen while the caller is still waiting below.
  for (int64_t h = 0; h < helpers; ++h) {
    auto task = [shared, fn_ptr, n]() {
      for (int64_t i = shared->next.fetch_add(1); i < n; i = shared->next.fetch_add(1)) {
        (*fn_ptr)(i);
        shared->done.fetch_add(1, std::memory_order_release);
      }
    };
    pool.Schedule(decltype(task)(task));
  }
  for (int64_t i = shared->next.fetch_add(1); i < n; i = shared->next.fetch_add(1)) {
    fn(i);
    shared->done.fetch_add(1, std::memory_order_release);
  }
  while (shared->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

ffi::Error PulsedUpdateImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w_in, ffi::Buffer<ffi::F32> p0,
                            ffi::Buffer<ffi::F32> p1, ffi::Buffer<ffi::F32> p2, ffi::Buffer<ffi::F32> p3,
                            ffi::Buffer<ffi::F32> p4, ffi::Buffer<ffi::F32> p5, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> d, ffi::Buffer<ffi::F32> lr,
                            ffi::Buffer<ffi::U32> key, ffi::Buffer<ffi::F32> table,
                            ffi::ResultBuffer<ffi::F32> w_out, ffi::ResultBuffer<ffi::U32> workspace,
                            ffi::Dictionary attrs) {
  DeviceConsts dev;
  UpdateConsts up;
  if (ffi::Error err = decode_attrs(attrs, dev, up); err.failure()) return err;

  const ffi::Buffer<ffi::F32>* params[kNumParams] = {&p0, &p1, &p2, &p3, &p4, &p5};
  const ffi::AnyBuffer::Dimensions param_dims[kNumParams] = {p0.dimensions(), p1.dimensions(), p2.dimensions(),
                                                             p3.dimensions(), p4.dimensions(), p5.dimensions()};
  UpdateShapes sh;
  const std::string err = check_update_shapes(w_in.dimensions(), param_dims, x.dimensions(), d.dimensions(),
                                               lr.dimensions(), key.dimensions(), table.dimensions(),
                                               workspace->element_count(), sh);
  if (!err.empty()) return ffi::Error::InvalidArgument(err);
  const int64_t S = sh.S, out_size = sh.out_size, in_size = sh.in_size, rows = sh.rows;
  const int64_t sp = sh.sp, sx = sh.sx, sd = sh.sd, sl = sh.sl, sk = sh.sk, st = sh.st;
  const int64_t n_el = out_size * in_size;
  float* w = w_out->typed_data();
  if (w != w_in.typed_data()) std::memcpy(w, w_in.typed_data(), sizeof(float) * S * n_el);
  if (S == 0 || rows == 0 || n_el == 0) return ffi::Error::Success();

  const float* x_all = x.typed_data();
  const float* d_all = d.typed_data();
  const int64_t stride = sh.stride();
  uint32_t* ws_all = workspace->typed_data();

  const bool flag = dev.kind == kExpStep ? dev.complex_noise : dev.mult_noise;
  const Kernels kernels = select_kernels(dev.kind, flag, up.has_noise, up.sum_pulses);

  // Phase 1: per (seed, row) update management and pulse lines.
  const int64_t t0 = now_ns();
  parallel_for(pool, S * rows, [&](int64_t sr) {
    const int64_t s = sr / rows, b = sr % rows;
    const float* xr = x_all + ((sx == 1 ? 0 : s) * rows + b) * in_size;
    const float* dr = d_all + ((sd == 1 ? 0 : s) * rows + b) * out_size;
    const uint32_t* kw = key.typed_data() + (sk == 1 ? 0 : s) * 2;
    float xm = 0, dm = 0;
    for (int64_t j = 0; j < in_size; ++j) xm = fmax_(xm, std::fabs(xr[j]));
    for (int64_t i = 0; i < out_size; ++i) dm = fmax_(dm, std::fabs(dr[i]));
    LineArgs la{&up, xr, dr, in_size, out_size, kw[0], kw[1], static_cast<uint32_t>(b), 0, 0.0f, 0.0f, nullptr};
    row_bl_and_scales(up, xm, dm, lr.typed_data()[sl == 1 ? 0 : s], la.bl, la.a, la.b);
    uint32_t* row_ws = ws_all + sr * stride;
    row_ws[0] = static_cast<uint32_t>(la.bl);
    row_noise_seed(kw[0], kw[1], static_cast<uint32_t>(b), row_ws[1], row_ws[2]);
    if (la.bl == 0) return;
    la.lines = row_ws + kRowHeader;
    if (!kernels.lines(la)) row_ws[0] = 0;  // nothing can pulse: phase 2 skips the row
  });

  const int64_t t1 = now_ns();

  // Phase 2: pulses, by blocks of weight rows; batch rows in order. A block of ~4096 crosspoints keeps its
  // weight and parameter rows (7 × 16 KiB) and the 256 KiB noise table in a 512 KiB L2 across batch rows.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(out_size, (1 << 12) / std::max<int64_t>(in_size, 1)));
  const int64_t n_blocks = (out_size + block - 1) / block;
  parallel_for(pool, S * n_blocks, [&](int64_t item) {
    const int64_t s = item / n_blocks, i0 = (item % n_blocks) * block, i1 = std::min(out_size, i0 + block);
    std::vector<int32_t> counts(static_cast<size_t>(2 * in_size));
    std::vector<uint32_t> hashes(static_cast<size_t>(in_size));
    std::vector<float> noise(static_cast<size_t>(2 * in_size));
    RowArgs ra;
    ra.dev = &dev;
    ra.up = &up;
    ra.table = table.typed_data() + (st == 1 ? 0 : s) * kNormalTableSize;
    ra.in_size = in_size;
    ra.counts = counts.data();
    ra.lanes = counts.data() + in_size;
    ra.hashes = hashes.data();
    ra.noise0 = noise.data();
    ra.noise1 = noise.data() + in_size;
    const float* ps[kNumParams];
    for (int k = 0; k < kNumParams; ++k) ps[k] = params[k]->typed_data() + (sp == 1 ? 0 : s) * n_el;
    for (int64_t b = 0; b < rows; ++b) {
      const uint32_t* row_ws = ws_all + (s * rows + b) * stride;
      ra.bl = static_cast<int>(row_ws[0]);
      if (ra.bl == 0) continue;
      ra.s0 = row_ws[1];
      ra.s1 = row_ws[2];
      ra.x_lines = row_ws + kRowHeader;
      ra.x = x_all + ((sx == 1 ? 0 : s) * rows + b) * in_size;
      const float* dr = d_all + ((sd == 1 ? 0 : s) * rows + b) * out_size;
      for (int64_t i = i0; i < i1; ++i) {
        if (dr[i] == 0.0f || ra.x_lines[in_size + i] == 0) continue;  // no d pulses, no coincidences
        ra.d_line = ra.x_lines[in_size + i];
        ra.d_pos = dr[i] > 0;
        ra.w = w + s * n_el + i * in_size;
        for (int k = 0; k < kNumParams; ++k) ra.params[k] = ps[k] + i * in_size;
        ra.element0 = static_cast<uint32_t>(i * in_size);
        kernels.row(ra);
      }
    }
  });
  g_phase_times.add(t1 - t0, now_ns() - t1);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace mrl

XLA_FFI_DEFINE_HANDLER_SYMBOL(MrlPulsedUpdateCpu, mrl::PulsedUpdateImpl,
                              xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::ThreadPool>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // weights
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // max_bound
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // min_bound
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // scale_up
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // scale_down
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // aux0
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // aux1
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // x
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // d
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // lr
                                  .Arg<xla::ffi::Buffer<xla::ffi::U32>>()  // key
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()  // noise table
                                  .Ret<xla::ffi::Buffer<xla::ffi::F32>>()  // weights
                                  .Ret<xla::ffi::Buffer<xla::ffi::U32>>()  // workspace
                                  .Attrs<xla::ffi::Dictionary>());
