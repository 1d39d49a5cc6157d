// CUDA XLA FFI handler of the pulsed update: mrl_pulsed_update (same operands, results and attributes
// as the CPU handler in cpu/pulsed_update.cc, same device math from mrl_ops/*.h).
//
// Kernel 1: one block per (seed, row) computes update management and writes the row's pulse lines into
// the workspace. Kernel 2: one thread per (seed, crosspoint) walks the rows in order and applies the
// pulses, so rows are applied sequentially per crosspoint as on the CPU.

#include <cuda_runtime.h>

#include <cstring>
#include <string>

#include "mrl_ops/attrs.h"
#include "mrl_ops/ffi_shapes.h"
#include "mrl_ops/update.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace mrl {
namespace {

struct Consts {
  DeviceConsts dev;
  UpdateConsts up;
};

__global__ void RowsKernel(Consts c, UpdateShapes sh, const float* x, const float* d, const float* lr,
                           const uint32_t* key, uint32_t* ws) {
  const int64_t sr = blockIdx.x;
  const int64_t s = sr / sh.rows, b = sr % sh.rows;
  const float* xr = x + ((sh.sx == 1 ? 0 : s) * sh.rows + b) * sh.in_size;
  const float* dr = d + ((sh.sd == 1 ? 0 : s) * sh.rows + b) * sh.out_size;
  const uint32_t* kw = key + (sh.sk == 1 ? 0 : s) * 2;
  __shared__ float smax[2][256];
  float xm = 0, dm = 0;
  for (int64_t j = threadIdx.x; j < sh.in_size; j += blockDim.x) xm = fmax_(xm, fabsf(xr[j]));
  for (int64_t i = threadIdx.x; i < sh.out_size; i += blockDim.x) dm = fmax_(dm, fabsf(dr[i]));
  smax[0][threadIdx.x] = xm;
  smax[1][threadIdx.x] = dm;
  __syncthreads();
  for (int off = blockDim.x / 2; off > 0; off /= 2) {
    if (threadIdx.x < off) {
      smax[0][threadIdx.x] = fmax_(smax[0][threadIdx.x], smax[0][threadIdx.x + off]);
      smax[1][threadIdx.x] = fmax_(smax[1][threadIdx.x], smax[1][threadIdx.x + off]);
    }
    __syncthreads();
  }
  int bl;
  float a, bs;
  row_bl_and_scales(c.up, smax[0][0], smax[1][0], lr[sh.sl == 1 ? 0 : s], bl, a, bs);
  uint32_t* row_ws = ws + sr * sh.stride();
  if (threadIdx.x == 0) {
    row_ws[0] = static_cast<uint32_t>(bl);
    row_noise_seed(kw[0], kw[1], static_cast<uint32_t>(b), row_ws[1], row_ws[2]);
  }
  if (bl == 0) return;
  uint32_t* xl = row_ws + kRowHeader;
  uint32_t* dl = xl + sh.in_size;
  for (int64_t j = threadIdx.x; j < sh.in_size; j += blockDim.x)
    xl[j] = line_value(c.up, kw[0], kw[1], kStreamXPulses, b, j, fabsf(xr[j]), bs, bl,
                       c.up.x_res_implicit);
  for (int64_t i = threadIdx.x; i < sh.out_size; i += blockDim.x)
    dl[i] = line_value(c.up, kw[0], kw[1], kStreamDPulses, b, i, fabsf(dr[i]), a, bl,
                       c.up.d_res_implicit);
}

struct ParamPlanes {
  const float* p[kNumParams];
};

__global__ void PulsesKernel(Consts c, UpdateShapes sh, const float* x, const float* d, ParamPlanes params,
                             const float* table, const uint32_t* ws, float* w) {
  const int64_t n_el = sh.n_el();
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= sh.S * n_el) return;
  const int64_t s = idx / n_el, e = idx % n_el;
  const int64_t i = e / sh.in_size, j = e % sh.in_size;
  const int64_t pe = (sh.sp == 1 ? 0 : s) * n_el + e;
  const CrossPoint cp{params.p[0][pe], params.p[1][pe], params.p[2][pe], params.p[3][pe], params.p[4][pe],
                      params.p[5][pe]};
  const float* tab = table + (sh.st == 1 ? 0 : s) * kNormalTableSize;
  float wv = w[idx];
  for (int64_t b = 0; b < sh.rows; ++b) {
    const uint32_t* row_ws = ws + (s * sh.rows + b) * sh.stride();
    const int bl = static_cast<int>(row_ws[0]);
    if (bl == 0) continue;
    const float xv = x[((sh.sx == 1 ? 0 : s) * sh.rows + b) * sh.in_size + j];
    const float dv = d[((sh.sd == 1 ? 0 : s) * sh.rows + b) * sh.out_size + i];
    if (xv == 0.0f || dv == 0.0f) continue;
    const int n = coincidences(c.up, row_ws[kRowHeader + sh.in_size + i], row_ws[kRowHeader + j], bl);
    if (n <= 0) continue;
    wv = apply_pulses(c.dev, c.up, tab, wv, cp, n, (dv > 0) != (xv > 0), row_ws[1], row_ws[2],
                      static_cast<uint32_t>(e));
  }
  w[idx] = wv;
}

ffi::Error PulsedUpdateCuda(cudaStream_t stream, ffi::Buffer<ffi::F32> w_in, ffi::Buffer<ffi::F32> p0,
                            ffi::Buffer<ffi::F32> p1, ffi::Buffer<ffi::F32> p2, ffi::Buffer<ffi::F32> p3,
                            ffi::Buffer<ffi::F32> p4, ffi::Buffer<ffi::F32> p5, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> d, ffi::Buffer<ffi::F32> lr,
                            ffi::Buffer<ffi::U32> key, ffi::Buffer<ffi::F32> table,
                            ffi::ResultBuffer<ffi::F32> w_out, ffi::ResultBuffer<ffi::U32> workspace,
                            ffi::Dictionary attrs) {
  Consts c;
  if (ffi::Error err = decode_attrs(attrs, c.dev, c.up); err.failure()) return err;
  const ffi::AnyBuffer::Dimensions param_dims[kNumParams] = {p0.dimensions(), p1.dimensions(), p2.dimensions(),
                                                             p3.dimensions(), p4.dimensions(), p5.dimensions()};
  UpdateShapes sh;
  const std::string err = check_update_shapes(w_in.dimensions(), param_dims, x.dimensions(), d.dimensions(),
                                               lr.dimensions(), key.dimensions(), table.dimensions(),
                                               workspace->element_count(), sh);
  if (!err.empty()) return ffi::Error::InvalidArgument(err);
  float* w = w_out->typed_data();
  const int64_t total = sh.S * sh.n_el();
  if (w != w_in.typed_data())
    cudaMemcpyAsync(w, w_in.typed_data(), sizeof(float) * total, cudaMemcpyDeviceToDevice, stream);
  if (total == 0 || sh.rows == 0) return ffi::Error::Success();
  RowsKernel<<<static_cast<unsigned>(sh.S * sh.rows), 256, 0, stream>>>(c, sh, x.typed_data(), d.typed_data(),
                                                                         lr.typed_data(), key.typed_data(),
                                                                         workspace->typed_data());
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  const ParamPlanes planes{{p0.typed_data(), p1.typed_data(), p2.typed_data(), p3.typed_data(), p4.typed_data(),
                             p5.typed_data()}};
  PulsesKernel<<<blocks, threads, 0, stream>>>(c, sh, x.typed_data(), d.typed_data(), planes, table.typed_data(),
                                               workspace->typed_data(), w);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    return ffi::Error::Internal(std::string("mrl_pulsed_update: CUDA launch failed: ") + cudaGetErrorString(status));
  return ffi::Error::Success();
}

}  // namespace
}  // namespace mrl

XLA_FFI_DEFINE_HANDLER_SYMBOL(MrlPulsedUpdateCuda, mrl::PulsedUpdateCuda,
                              xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::U32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Ret<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Ret<xla::ffi::Buffer<xla::ffi::U32>>()
                                  .Attrs<xla::ffi::Dictionary>(),
                              {xla::ffi::Traits::kCmdBufferCompatible});
