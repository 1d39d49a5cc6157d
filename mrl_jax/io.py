"""I/O-managed analog matrix-vector products (AIHWKit ``ForwardBackwardPassIOManaged``).

``analog_mvm`` reproduces AIHWKit 1.1.0's per-sample algorithm: noise management (input scaling),
DAC quantization and clipping, the MVM, weight-dependent read noise, additive output noise, ADC
quantization and clipping, and iterative bound management (forward only). All scale factors are
computed in float32 in AIHWKit's order so that noise-free results match to float32 round-off.
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
import numpy as np

from mrl_jax import _checks as C


class NoiseManagement(str, enum.Enum):
  """Input scaling before the DAC (AIHWKit ``NoiseManagementType``)."""

  NONE = "none"
  ABS_MAX = "abs_max"
  MAX = "max"
  CONSTANT = "constant"


class BoundManagement(str, enum.Enum):
  """Output-saturation handling (AIHWKit ``BoundManagementType``)."""

  NONE = "none"
  ITERATIVE = "iterative"


class WeightNoiseType(str, enum.Enum):
  """Weight-dependent read noise (AIHWKit ``WeightNoiseType``)."""

  NONE = "none"
  ADDITIVE_CONSTANT = "additive_constant"
  PCM_READ = "pcm_read"


def _float32_step(res: float, bound: float) -> float:
  """AIHWKit's quantization step ``checkRes(res)·2·bound``, evaluated in float32 as AIHWKit does.

  ``checkRes``: a resolution > 1 is a number of levels. float32 matters: the quantized levels are then
  the very numbers AIHWKit produces.
  """
  r = np.float32(max(res, 0.0))
  r = np.float32(1.0) / r if r > 1 else r
  return float(np.float32(r * np.float32(2.0 * bound)))


@dataclasses.dataclass(frozen=True)
class IOParameters:
  """Peripheral I/O of a tile (AIHWKit ``IOParameters``, Python defaults).

  Attributes:
    is_perfect: exact MVM (no quantization, noise or management).
    inp_bound: DAC range (normalized units); inp_res: DAC resolution (fraction of the full range
      ``2·inp_bound``, or a number of levels if > 1); inp_sto_round: stochastic DAC rounding;
      inp_noise: additive input noise std; inp_asymmetry: gain loss of negative inputs.
    out_bound, out_res, out_sto_round: ADC range, resolution and rounding; out_noise: additive
      output noise std (normalized units); out_asymmetry: gain loss of negative outputs;
      out_scale: digital output scale.
    noise_management: input scaling rule; nm_thres: its threshold.
    bound_management: ``ITERATIVE`` halves the input until no output saturates (forward only);
      max_bm_factor, max_bm_res: limits of that reduction; bm_test_negative_bound: also test
      negative saturation.
    w_noise, w_noise_type: weight-dependent read noise.
  """

  is_perfect: bool = False
  inp_bound: float = 1.0
  inp_res: float = 1 / 126
  inp_sto_round: bool = False
  inp_noise: float = 0.0
  inp_asymmetry: float = 0.0
  out_bound: float = 12.0
  out_res: float = 1 / 510
  out_sto_round: bool = False
  out_noise: float = 0.06
  out_asymmetry: float = 0.0
  out_scale: float = 1.0
  noise_management: NoiseManagement = NoiseManagement.ABS_MAX
  nm_thres: float = 0.0
  bound_management: BoundManagement = BoundManagement.ITERATIVE
  max_bm_factor: int = 1000
  max_bm_res: float = 0.25
  bm_test_negative_bound: bool = True
  w_noise: float = 0.0
  w_noise_type: WeightNoiseType = WeightNoiseType.NONE

  def __post_init__(self):
    for name, enum_cls in (("noise_management", NoiseManagement), ("bound_management", BoundManagement),
                           ("w_noise_type", WeightNoiseType)):
      value = getattr(self, name)
      C.choice("IOParameters", name, value, list(enum_cls) + [e.value for e in enum_cls])
      object.__setattr__(self, name, enum_cls(value))
    C.check_fields(self, {
        "is_perfect": C.boolean, "inp_bound": C.positive, "inp_res": C.non_negative, "inp_sto_round": C.boolean,
        "inp_noise": C.non_negative, "inp_asymmetry": lambda o, n, v: C.in_range(o, n, v, -1.0, 1.0),
        "out_bound": C.positive, "out_res": C.non_negative, "out_sto_round": C.boolean,
        "out_noise": C.non_negative, "out_asymmetry": lambda o, n, v: C.in_range(o, n, v, -1.0, 1.0),
        "out_scale": C.finite, "nm_thres": C.non_negative,
        "max_bm_factor": lambda o, n, v: C.integer(o, n, v, 1), "max_bm_res": C.positive,
        "bm_test_negative_bound": C.boolean, "w_noise": C.non_negative})
    if self.noise_management != NoiseManagement.NONE and self.inp_bound != 1.0 and not self.is_perfect:
      raise ValueError(f"IOParameters.inp_bound = {self.inp_bound} is invalid: allowed range is 1.0 when "
                       f"noise_management is {self.noise_management.value!r} (AIHWKit requires it)")

  @property
  def r_in(self) -> float:
    """DAC step in normalized input units."""
    return _float32_step(self.inp_res, self.inp_bound)

  @property
  def r_out(self) -> float:
    """ADC step in normalized output units."""
    return _float32_step(self.out_res, self.out_bound)

  def bm_rounds(self) -> int:
    """Number of MVM rounds iterative bound management can take (static)."""
    if self.bound_management == BoundManagement.NONE:
      return 1
    red, rounds = 1.0, 1
    while not (int(red) > self.max_bm_factor or (self.r_in > 0 and red > self.max_bm_res / self.r_in)):
      red *= 2
      rounds += 1
    return rounds

  def for_backward(self) -> "IOParameters":
    """The backward pass ignores bound management (AIHWKit forces it off)."""
    return dataclasses.replace(self, bound_management=BoundManagement.NONE)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


PERFECT_IO = IOParameters(is_perfect=True)


def _discretize(v, res: float, sto_round: bool, key):
  if res <= 0:
    return v
  res = jnp.float32(res)
  if sto_round:
    v = v / res + (jax.random.uniform(key, v.shape, jnp.float32) - jnp.float32(0.5))
    return jnp.round(v) * res
  return jnp.round(v / res) * res


def _noise_scale(io: IOParameters, v):
  """Per-row noise-management value of ``v: [rows, n]``."""
  nm = io.noise_management
  thres = jnp.float32(io.nm_thres)
  if nm == NoiseManagement.NONE:
    return jnp.ones(v.shape[:1], jnp.float32)
  if nm == NoiseManagement.CONSTANT:
    return jnp.full(v.shape[:1], io.nm_thres if io.nm_thres > 0 else 1.0, jnp.float32)
  value = jnp.max(jnp.abs(v), axis=-1) if nm == NoiseManagement.ABS_MAX else jnp.max(v, axis=-1)
  return jnp.minimum(value, thres) if io.nm_thres > 0 else value


def _one_pass(weights, v, scale, io: IOParameters, key, transposed: bool):
  """DAC → MVM → noise → ADC for all rows; returns ``(y, saturated)`` in normalized units."""
  k_in, k_inoise, k_w, k_out, k_osr = jax.random.split(key, 5)
  f32 = jnp.float32
  xq = v * scale[:, None]
  xq = _discretize(xq, io.r_in, io.inp_sto_round, k_in)
  bound = f32(io.inp_bound)
  xq = jnp.minimum(jnp.maximum(xq, -bound), bound)
  if io.inp_noise > 0:
    xq = xq + f32(io.inp_noise) * jax.random.normal(k_inoise, xq.shape, f32)
  if io.inp_asymmetry != 0:
    xq = jnp.where(xq < 0, xq * f32(1 - io.inp_asymmetry), xq)
  mat = weights if transposed else weights.T  # y = xq @ mat
  y = jnp.matmul(xq, mat, precision=jax.lax.Precision.HIGHEST)
  if io.w_noise_type != WeightNoiseType.NONE and io.w_noise > 0:
    xi = jax.random.normal(k_w, y.shape, f32)
    if io.w_noise_type == WeightNoiseType.ADDITIVE_CONSTANT:
      std = f32(io.w_noise) * jnp.sqrt(jnp.sum(xq * xq, axis=-1, keepdims=True))
    else:
      std = f32(io.w_noise) * jnp.sqrt(jnp.matmul(xq * xq, jnp.abs(mat), precision=jax.lax.Precision.HIGHEST))
    y = y + std * xi
  if io.out_asymmetry != 0:
    y = jnp.where(y < 0, y * f32(1 - io.out_asymmetry), y)
  if io.out_noise > 0:
    y = y + f32(io.out_noise) * jax.random.normal(k_out, y.shape, f32)
  y = _discretize(y, io.r_out, io.out_sto_round, k_osr)
  ob = f32(io.out_bound)
  saturated = jnp.any(y > ob, axis=-1)
  if io.bm_test_negative_bound:
    saturated = saturated | jnp.any(y < -ob, axis=-1)
  return jnp.minimum(jnp.maximum(y, -ob), ob), saturated


def analog_mvm(weights, v, io: IOParameters, key, *, transposed: bool = False, alpha: float = 1.0):
  """One I/O-managed analog MVM per row of ``v``.

  Args:
    weights: ``float32[out, in]`` (visible) tile weights.
    v: ``float32[rows, in]`` inputs (forward) or ``float32[rows, out]`` errors (``transposed``).
    io: I/O parameters. For ``transposed=True`` bound management is ignored, as in AIHWKit.
    key: PRNG key for the noise sources (unused when noise-free).
    transposed: backward pass ``v @ W`` instead of forward ``v @ Wᵀ``.
    alpha: extra digital output factor (AIHWKit's ``alpha``).

  Returns:
    ``float32[rows, out]`` (forward) or ``float32[rows, in]`` (backward).
  """
  f32 = jnp.float32
  v = jnp.asarray(v, f32)
  if io.is_perfect:
    mat = weights if transposed else weights.T
    return jnp.matmul(v, mat, precision=jax.lax.Precision.HIGHEST) * (f32(io.out_scale) * f32(alpha))
  io_used = io.for_backward() if transposed else io
  nm_on = io.noise_management != NoiseManagement.NONE
  bm_on = io_used.bound_management != BoundManagement.NONE
  nm = _noise_scale(io, v)
  out_scale = f32(io.out_scale) * f32(alpha)
  inv_nm = jnp.where(nm_on & (nm > 0), f32(1) / jnp.where(nm > 0, nm, 1), f32(1))
  zero_rows = (nm <= 0) & nm_on if transposed else (nm <= 0) & nm_on & (io.inp_noise <= 0)

  if not bm_on:
    y, _ = _one_pass(weights, v, inv_nm, io_used, key, transposed)
    if transposed:
      scaling = nm_on & (nm > 0)
      factor = jnp.where(scaling | (out_scale != 1), out_scale * jnp.where(nm_on, nm, 1), f32(1))
    else:
      scaling = nm_on & (nm > 0)
      factor = jnp.where(scaling | (out_scale != 1), out_scale / inv_nm, f32(1))
    return jnp.where(zero_rows[:, None], f32(0), y * factor[:, None])

  rounds = io_used.bm_rounds()
  rows = v.shape[0]

  def body(carry):
    r, done, red, y_acc, red_acc = carry
    scale = inv_nm / red
    y, sat = _one_pass(weights, v, scale, io_used, jax.random.fold_in(key, r), transposed)
    finish = ~done & (~sat | (r == rounds - 1))
    y_acc = jnp.where(finish[:, None], y, y_acc)
    red_acc = jnp.where(finish, red, red_acc)
    return r + 1, done | finish, red * 2, y_acc, red_acc

  init = (jnp.int32(0), zero_rows, jnp.ones((rows,), f32), jnp.zeros((rows, weights.shape[0]), f32),
          jnp.ones((rows,), f32))
  _, _, _, y, red = jax.lax.while_loop(lambda c: (c[0] < rounds) & ~jnp.all(c[1]), body, init)
  scale = inv_nm / red
  return jnp.where(zero_rows[:, None], f32(0), y * (out_scale / scale)[:, None])
