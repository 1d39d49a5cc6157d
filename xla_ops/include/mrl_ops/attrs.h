// Decoding of mrl_pulsed_update's named attributes (host side, shared by the CPU and CUDA handlers), as jax's
// examples/ffi reads a dictionary of attributes (ffi::Dictionary): every member of MRL_DEVICE_ATTRS and
// MRL_UPDATE_ATTRS is read by its name, so mrl_jax._native.kernel_attrs and C++ agree on names, not positions.
#pragma once

#include <cstddef>
#include <string>

#include "mrl_ops/update.h"
#include "xla/ffi/api/ffi.h"

namespace mrl {

inline xla::ffi::Error attr_error(const char* name, const std::string& what) {
  return xla::ffi::Error::InvalidArgument(std::string("mrl_pulsed_update: attribute ") + name + ": " + what);
}

template <typename T>
xla::ffi::Error read_attr(const xla::ffi::Dictionary& attrs, const char* name, T& member) {
  xla::ffi::ErrorOr<T> value = attrs.get<T>(name);
  if (value.has_error()) return attr_error(name, value.error().message());
  member = *value;
  return xla::ffi::Error::Success();
}

// PiecewiseStep's step-size table of one direction: a float array of at most kMaxPiecewise points, zero-padded.
inline xla::ffi::Error read_table(const xla::ffi::Dictionary& attrs, const char* name, float* table, int32_t& n) {
  xla::ffi::ErrorOr<xla::ffi::Span<const float>> values = attrs.get<xla::ffi::Span<const float>>(name);
  if (values.has_error()) return attr_error(name, values.error().message());
  if (values->size() > static_cast<size_t>(kMaxPiecewise)) {
    return attr_error(name, std::to_string(values->size()) + " points, at most " + std::to_string(kMaxPiecewise));
  }
  n = static_cast<int32_t>(values->size());
  for (int i = 0; i < kMaxPiecewise; ++i) table[i] = i < n ? (*values)[i] : 0.0f;
  return xla::ffi::Error::Success();
}

// Fills dev and up from the call's attributes; an error names the attribute that is missing or mistyped.
inline xla::ffi::Error decode_attrs(const xla::ffi::Dictionary& attrs, DeviceConsts& dev, UpdateConsts& up) {
#define MRL_COUNT(type, name) +1
  constexpr size_t kExpected = 2 MRL_DEVICE_ATTRS(MRL_COUNT) MRL_UPDATE_ATTRS(MRL_COUNT);  // + the two tables
#undef MRL_COUNT
  if (attrs.size() != kExpected) {  // a name on one side only: the extension and the Python package differ
    return xla::ffi::Error::InvalidArgument("mrl_pulsed_update: " + std::to_string(attrs.size()) +
                                            " attributes, expected " + std::to_string(kExpected) +
                                            " (mrl_jax._native.kernel_attrs and mrl_ops/*.h out of step)");
  }
#define MRL_READ_DEVICE(type, name) \
  if (xla::ffi::Error err = read_attr(attrs, #name, dev.name); err.failure()) return err;
#define MRL_READ_UPDATE(type, name) \
  if (xla::ffi::Error err = read_attr(attrs, #name, up.name); err.failure()) return err;
  MRL_DEVICE_ATTRS(MRL_READ_DEVICE)
  MRL_UPDATE_ATTRS(MRL_READ_UPDATE)
#undef MRL_READ_DEVICE
#undef MRL_READ_UPDATE
  int32_t n_down = 0;
  if (xla::ffi::Error err = read_table(attrs, "piecewise_up", dev.pw_up, dev.n_piecewise); err.failure()) return err;
  return read_table(attrs, "piecewise_down", dev.pw_down, n_down);
}

}  // namespace mrl
