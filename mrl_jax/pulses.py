"""Update parameters, per-row update management and coincidence counts (AIHWKit's pulsed update).

One update cycle per row ``b`` of ``x`` (``[B, in]``) and ``d`` (``[B, out]``): the row's bit length
``BL`` and probability scales ``A`` (for d) and ``B`` (for x) follow from update management (UM) and
update bit-length management (UBLM), computed in float32 in AIHWKit's order
(``PulsedUpdateMetaParameter::performUpdateManagement``). Each input line j fires in time slot t with
probability ``|x_j|·B`` and each output line i with ``|d_i|·A``; element (i, j) receives one pulse per
slot in which both fire, in the direction ``−sign(d_i)·sign(x_j)``.
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp

from mrl_jax import _checks as C
from mrl_jax import fmath, rng
from mrl_jax.devices import ConstantStepDevice, PulsedDevice

MAX_BL = 31  # pulses per row and element: one uint32 bit line per line and row


class PulseType(str, enum.Enum):
  """How pulse trains are formed (AIHWKit ``PulseType``)."""

  STOCHASTIC_COMPRESSED = "stochastic_compressed"
  STOCHASTIC = "stochastic"  # same distribution as compressed; AIHWKit only orders pulses differently
  MEAN_COUNT = "mean_count"
  DETERMINISTIC_IMPLICIT = "deterministic_implicit"
  NONE = "none"  # exact floating-point update W −= lr·dᵀx
  NONE_WITH_DEVICE = "none_with_device"  # exact update, then clip to the device bounds


@dataclasses.dataclass(frozen=True)
class UpdateParameters:
  """Pulsed-update parameters (AIHWKit ``UpdateParameters``, Python defaults).

  Attributes:
    desired_bl: bit length (max pulses per row); 1 to 31.
    update_management: balance the x and d probabilities per row (UM).
    update_bl_management: choose the per-row bit length from the update size (UBLM; implies UM).
    fixed_bl: keep ``desired_bl`` when UBLM is off even if ``lr > dw·desired_bl``.
    pulse_type: a ``PulseType`` or its value string.
    res: resolution of the pulse probabilities (fraction in [0, 1]; 0 = continuous).
    x_res_implicit, d_res_implicit: resolutions for ``DETERMINISTIC_IMPLICIT``.
    um_grad_scale: scales max|d| in update management.
    aggregate_pulses: ``ConstantStepDevice`` only: apply the n coincidences of one batch row at a
      crosspoint as one summed step ``n·dw·(1 + σξ/√n)``, clipped once, with one normal draw instead of
      n. This is AIHWKit's CUDA kernel (``UpdateFunctorConstantStep``, which it uses whenever
      ``dw_min_std ≤ 0.33``); AIHWKit's CPU pulses one by one (the default here). Same mean and
      variance away from the bounds; requires ``dw_min_std ≤ 0.33``. Other devices always pulse one by
      one (AIHWKit has no summed form for them).
  """

  desired_bl: int = 31
  update_management: bool = True
  update_bl_management: bool = True
  fixed_bl: bool = True
  pulse_type: PulseType = PulseType.STOCHASTIC_COMPRESSED
  res: float = 0.0
  x_res_implicit: float = 0.0
  d_res_implicit: float = 0.0
  um_grad_scale: float = 1.0
  aggregate_pulses: bool = False

  def __post_init__(self):
    C.choice("UpdateParameters", "pulse_type", self.pulse_type, list(PulseType) + [p.value for p in PulseType])
    object.__setattr__(self, "pulse_type", PulseType(self.pulse_type))
    unit = lambda o, n, v: C.in_range(o, n, v, 0.0, 1.0)
    C.check_fields(self, {
        "desired_bl": lambda o, n, v: C.integer(o, n, v, 1, MAX_BL), "update_management": C.boolean,
        "update_bl_management": C.boolean, "fixed_bl": C.boolean, "res": unit, "x_res_implicit": unit,
        "d_res_implicit": unit, "um_grad_scale": C.positive,
        "aggregate_pulses": C.boolean})

  @property
  def uses_um(self) -> bool:
    return self.update_management or self.update_bl_management

  @property
  def is_pulsed(self) -> bool:
    return self.pulse_type not in (PulseType.NONE, PulseType.NONE_WITH_DEVICE)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


SINGLE_PULSE_UPDATE = UpdateParameters(desired_bl=1, update_management=False, update_bl_management=False)
"""One deterministic pulse per ±1 (BL 1, no update management): AIHWKit's default ``transfer_update`` of the
buffered, chopped and dynamic transfer compounds, whose writes commit whole device steps."""


def row_bl_and_scales(up: UpdateParameters, x_amax, d_amax, lr, dw: float):
  """Per-row bit length and probability scales.

  Args:
    up: update parameters.
    x_amax, d_amax: ``float32`` max |x| and max |d| of the row.
    lr: ``float32`` learning rate (> 0 to update).
    dw: weight granularity of the written device.

  Returns:
    ``(bl, a, b)``: int32 bit length (0 = skip the row), float32 scales for d and for x.
  """
  f32 = jnp.float32
  fence = fmath.fence_from(x_amax)  # divisors must not be constant-folded into reciprocals
  lr = jnp.asarray(lr, f32)
  dw = fence(f32(dw))
  bld = f32(up.desired_bl)
  sqrt_scale = lambda bl: jnp.sqrt(lr / fence(dw * bl))
  if up.fixed_bl or up.update_bl_management:
    bl = jnp.full((), up.desired_bl, jnp.int32)
    a = sqrt_scale(bld)
  else:
    big = dw * bld < lr
    bl_big = jnp.clip(jnp.ceil(lr / dw), 1, MAX_BL).astype(jnp.int32)  # AIHWKit: unbounded (CPU)
    bl = jnp.where(big, bl_big, up.desired_bl)
    a = jnp.where(big, f32(1), sqrt_scale(bld))
  b = a
  if up.uses_um:
    x_val = x_amax
    d_val = f32(up.um_grad_scale) * d_amax
    k = lr * x_val * d_val / dw
    if up.update_bl_management:
      bl = jnp.minimum(jnp.ceil(k), bld).astype(jnp.int32)
      a = sqrt_scale(jnp.maximum(bl, 1).astype(f32))
      b = a
    if up.update_management:
      d_val = jnp.where(k > bld, d_val * (bld / k), d_val)
      a = a * jnp.sqrt(x_val / d_val)
      b = b * jnp.sqrt(d_val / x_val)
  skip = (x_amax == 0) | (d_amax == 0) | ~(lr > 0) | ~jnp.isfinite(k if up.uses_um else lr)
  bl = jnp.where(skip, 0, bl)
  return bl, a, b


def _disc(v, res: float):
  if res <= 0:
    return v
  res = fmath.fence_from(v)(jnp.float32(res))
  return jnp.round(v / res) * res


def _bit_lines(kw, stream: int, row, prob, bl, n_slots: int):
  """uint32 bit line per line: bit t set when slot t < bl fires (``prob > U``)."""
  y0, y1 = rng.line_seed(kw, stream, row, jnp.arange(prob.shape[-1], dtype=jnp.uint32))
  t = jnp.arange(n_slots, dtype=jnp.uint32)[:, None]
  u = rng.uniform24(rng.slot_bits(y0[None, :], y1[None, :], t))
  fire = (prob[None, :] > u) & (t < bl.astype(jnp.uint32))
  return jnp.sum(jnp.where(fire, jnp.uint32(1) << t, jnp.uint32(0)), axis=0, dtype=jnp.uint32)


def row_counts(up: UpdateParameters, kw, row, x, d, lr, dw: float):
  """Coincidence counts of one row.

  Args:
    up: update parameters (a pulsed ``pulse_type``).
    kw: ``uint32[2]`` key data.
    row: row index (uint32) inside the update call; selects the random numbers.
    x: ``float32[in]``; d: ``float32[out]``; lr: float32 scalar; dw: granularity.

  Returns:
    ``(n, down)``: int32 ``[out, in]`` pulse counts (0 … 31) and bool ``[out, in]`` direction
    (True = decrease), i.e. ``sign(d_i)·sign(x_j) > 0``.
  """
  x_abs, d_abs = jnp.abs(x), jnp.abs(d)
  bl, a, b = row_bl_and_scales(up, jnp.max(x_abs), jnp.max(d_abs), lr, dw)
  down = (d[:, None] > 0) == (x[None, :] > 0)
  if up.pulse_type in (PulseType.STOCHASTIC_COMPRESSED, PulseType.STOCHASTIC):
    px = _disc(x_abs * b, up.res)
    pd = _disc(d_abs * a, up.res)
    slots = up.desired_bl if (up.fixed_bl or up.update_bl_management) else MAX_BL  # BL may exceed desired_bl
    xl = _bit_lines(kw, rng.STREAM_X_PULSES, row, px, bl, slots)
    dl = _bit_lines(kw, rng.STREAM_D_PULSES, row, pd, bl, slots)
    n = jax.lax.population_count(dl[:, None] & xl[None, :]).astype(jnp.int32)
  elif up.pulse_type == PulseType.MEAN_COUNT:
    blf = bl.astype(jnp.float32)
    cx = jnp.clip(jnp.round(blf * _disc(x_abs * b, up.res)), 0, blf)
    cd = jnp.clip(jnp.round(blf * _disc(d_abs * a, up.res)), 0, blf)
    # XLA rewrites a division by a broadcast scalar into a multiplication by its reciprocal, which is not exact
    # (21/28·22 gave 16.500002, so 17 pulses where the kernel's cd / bl · cx = 16.5 gives 16): a divisor fenced
    # with a full-shape anchor is no broadcast.
    fence = fmath.fence_from(cd[:, None])
    n = jnp.round(cd[:, None] / fence(jnp.maximum(blf, 1)) * cx[None, :]).astype(jnp.int32)
  elif up.pulse_type == PulseType.DETERMINISTIC_IMPLICIT:
    px = jnp.clip(_disc(x_abs * b, up.x_res_implicit), 0, 1)
    pd = jnp.clip(_disc(d_abs * a, up.d_res_implicit), 0, 1)
    n = jnp.round(bl.astype(jnp.float32) * pd[:, None] * px[None, :]).astype(jnp.int32)
  else:
    raise ValueError(f"row_counts: pulse_type {up.pulse_type} has no pulse trains")
  n = jnp.where((x[None, :] == 0) | (d[:, None] == 0) | (bl == 0), 0, n)
  return n, down


def sums_pulses(device: PulsedDevice, update: UpdateParameters) -> bool:
  """True when the n pulses of a row are applied as one summed step (``aggregate_pulses``): ConstantStep only."""
  return update.aggregate_pulses and isinstance(device, ConstantStepDevice)
