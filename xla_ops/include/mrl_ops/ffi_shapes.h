// Host-side operand checks shared by the CPU and CUDA handlers of mrl_pulsed_update.
#pragma once

#include <cstdint>
#include <string>

#include "mrl_ops/rng.h"
#include "mrl_ops/update.h"
#include "xla/ffi/api/ffi.h"

namespace mrl {

inline std::string dims_str(xla::ffi::AnyBuffer::Dimensions d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

// Product of the leading (batch) dims of an operand with `trailing` fixed dims; -1 if the rank is short.
inline int64_t leading(xla::ffi::AnyBuffer::Dimensions d, size_t trailing) {
  if (d.size() < trailing) return -1;
  int64_t n = 1;
  for (size_t i = 0; i + trailing < d.size(); ++i) n *= d[i];
  return n;
}

// Sizes of one mrl_pulsed_update call; s* are the leading counts (S or 1) of the shared-able operands.
struct UpdateShapes {
  int64_t S, out_size, in_size, rows, sp, sx, sd, sl, sk, st;
  MRL_HD int64_t n_el() const { return out_size * in_size; }
  MRL_HD int64_t stride() const { return kRowHeader + in_size + out_size; }
};

constexpr int kNumParams = 6;  // parameter planes: max/min bound, up/down scale, two device-specific

inline std::string check_update_shapes(xla::ffi::AnyBuffer::Dimensions wd,
                                       const xla::ffi::AnyBuffer::Dimensions (&pd)[kNumParams],
                                       xla::ffi::AnyBuffer::Dimensions xd, xla::ffi::AnyBuffer::Dimensions dd,
                                       xla::ffi::AnyBuffer::Dimensions ld, xla::ffi::AnyBuffer::Dimensions kd,
                                       xla::ffi::AnyBuffer::Dimensions td, int64_t workspace_count,
                                       UpdateShapes& sh) {
  std::string all = "weights " + dims_str(wd) + ", params";
  for (const auto& p : pd) all += " " + dims_str(p);
  all += ", x " + dims_str(xd) + ", d " + dims_str(dd) + ", lr " + dims_str(ld) + ", key " + dims_str(kd) +
         ", noise_table " + dims_str(td);
  bool ranks = wd.size() >= 2 && xd.size() >= 2 && dd.size() >= 2 && kd.size() >= 1 && td.size() >= 1;
  for (const auto& p : pd) ranks = ranks && p.size() >= 2;
  if (!ranks) return "mrl_pulsed_update: operand rank too small: " + all;
  sh.out_size = wd[wd.size() - 2];
  sh.in_size = wd[wd.size() - 1];
  sh.S = leading(wd, 2);
  sh.rows = xd[xd.size() - 2];
  sh.sp = leading(pd[0], 2);
  sh.sx = leading(xd, 2);
  sh.sd = leading(dd, 2);
  sh.sl = leading(ld, 0);
  sh.sk = leading(kd, 1);
  sh.st = leading(td, 1);
  bool params_ok = true;
  for (const auto& p : pd)
    params_ok = params_ok && leading(p, 2) == sh.sp && p[p.size() - 2] == sh.out_size && p[p.size() - 1] == sh.in_size;
  auto ok = [&sh](int64_t n) { return n == sh.S || n == 1; };
  const bool good = params_ok && xd[xd.size() - 1] == sh.in_size && dd[dd.size() - 1] == sh.out_size &&
                    dd[dd.size() - 2] == sh.rows && kd.back() == 2 && td.back() == kNormalTableSize && ok(sh.sp) &&
                    ok(sh.sx) && ok(sh.sd) && ok(sh.sl) && ok(sh.sk) && ok(sh.st);
  if (!good) return "mrl_pulsed_update: inconsistent operand shapes: " + all;
  if (sh.rows >= (int64_t(1) << 24) || sh.n_el() >= (int64_t(1) << 28))
    return "mrl_pulsed_update: at most 2^24 - 1 rows and 2^28 - 1 crosspoints: " + all;
  if (workspace_count != sh.S * sh.rows * sh.stride())
    return "mrl_pulsed_update: workspace has " + std::to_string(workspace_count) + " elements, expected " +
           std::to_string(sh.S * sh.rows * sh.stride());
  return "";
}

}  // namespace mrl
