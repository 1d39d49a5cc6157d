"""Resistive device models: configs, per-crosspoint hidden parameters and the one-pulse response.

Each device is a frozen, hashable dataclass (a static argument under ``jit``) with AIHWKit 1.1.0's
*Python* defaults and parameter names. ``device.init(key, shape)`` draws the per-crosspoint hidden
parameters (device-to-device variation) into a dict of ``float32[out, in]`` arrays named like AIHWKit's
hidden parameters (``max_bound``, ``min_bound``, ``dwmin_up``, ``dwmin_down``, …).

``pulse_once`` applies one up or down pulse with its cycle-to-cycle noise and the clip to the
crosspoint's bounds. It is the jnp twin of ``xla_ops/include/mrl_ops/devices.h``: both evaluate the
same float32 expressions in the same order; ``fence`` (``fmath.fence_from``) guards every product that
feeds an addition and every divisor against XLA's rewrites.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Dict

import jax
import jax.numpy as jnp

from mrl_jax import _checks as C
from mrl_jax import fmath

DeviceParams = Dict[str, jax.Array]
"""Per-crosspoint hidden parameters: name → ``float32[out, in]``."""



@dataclasses.dataclass(frozen=True)
class PulsedDevice:
  """Common parameters of every pulsed resistive device (AIHWKit ``PulsedDevice``).

  Attributes:
    dw_min: mean weight change of one pulse at w = 0 (weight units).
    dw_min_dtod: device-to-device spread of ``dw_min`` (relative std).
    dw_min_dtod_log_normal: draw the ``dw_min`` gain log-normally instead of normally.
    dw_min_std: cycle-to-cycle noise of each pulse (relative std).
    up_down: systematic up/down asymmetry (relative).
    up_down_dtod: device-to-device spread of the up/down asymmetry.
    w_max, w_min: mean upper/lower conductance bounds (weight units).
    w_max_dtod, w_min_dtod: relative device-to-device spread of the bounds.
    enforce_consistency: make scales positive and bounds ordered (w_min_b ≤ 0 ≤ w_max_b).
    reset, reset_dtod, reset_std: reset value, its additive dtod spread and its per-reset noise.
    lifetime, lifetime_dtod: weight decay time constant in optimizer steps (0 = no decay).
    diffusion, diffusion_dtod: per-step random-walk std (weight units) and its relative spread.
    corrupt_devices_prob, corrupt_devices_range: probability of a stuck crosspoint and its range.
    write_noise_std: std of the apparent-weight noise in units of ``dw_min`` (devices with
      persistent weights only; see ``supports_write_noise``).
  """

  dw_min: float = 0.001
  dw_min_dtod: float = 0.3
  dw_min_dtod_log_normal: bool = False
  dw_min_std: float = 0.3
  up_down: float = 0.0
  up_down_dtod: float = 0.01
  w_max: float = 0.6
  w_min: float = -0.6
  w_max_dtod: float = 0.3
  w_min_dtod: float = 0.3
  enforce_consistency: bool = True
  reset: float = 0.0
  reset_dtod: float = 0.0
  reset_std: float = 0.01
  lifetime: float = 0.0
  lifetime_dtod: float = 0.0
  diffusion: float = 0.0
  diffusion_dtod: float = 0.0
  corrupt_devices_prob: float = 0.0
  corrupt_devices_range: float = 0.1
  write_noise_std: float = 0.0

  kind: ClassVar[int] = -1  # device id shared with the native kernels
  supports_write_noise: ClassVar[bool] = False
  aux_keys: ClassVar[tuple] = ()

  def __post_init__(self):
    C.check_fields(self, {
        "dw_min": C.positive, "dw_min_dtod": C.non_negative, "dw_min_dtod_log_normal": C.boolean,
        "dw_min_std": C.non_negative, "up_down": C.finite, "up_down_dtod": C.non_negative,
        "w_max": C.finite, "w_min": C.finite, "w_max_dtod": C.non_negative, "w_min_dtod": C.non_negative,
        "enforce_consistency": C.boolean, "reset": C.finite, "reset_dtod": C.non_negative,
        "reset_std": C.non_negative, "lifetime": C.non_negative, "lifetime_dtod": C.non_negative,
        "diffusion": C.non_negative, "diffusion_dtod": C.non_negative,
        "corrupt_devices_prob": lambda o, n, v: C.in_range(o, n, v, 0.0, 1.0),
        "corrupt_devices_range": C.non_negative, "write_noise_std": C.non_negative,
    })
    if self.w_min >= self.w_max:
      raise ValueError(f"{type(self).__name__}.w_min = {self.w_min} must be < w_max = {self.w_max}")
    if self.write_noise_std > 0 and not self.supports_write_noise:
      raise ValueError(f"{type(self).__name__}.write_noise_std = {self.write_noise_std}: allowed range is 0 "
                       "(write noise exists only for LinearStep, SoftBounds, SoftBoundsReference, ExpStep, "
                       "PowStep and PiecewiseStep)")

  # ---- derived quantities -------------------------------------------------------------------

  @property
  def n_states(self) -> float:
    """Number of states ``(w_max − w_min) / dw_min`` (AIHWKit's ``calcNumStates``)."""
    return (self.w_max - self.w_min) / self.dw_min

  def with_n_states(self, n_states: float):
    """Returns a copy whose ``dw_min = (w_max − w_min) / n_states`` (e.g. 4 states on ±1 → 0.5)."""
    C.finite("n_states", "n_states", n_states)
    if n_states < 2:
      raise ValueError(f"{type(self).__name__}.n_states = {n_states!r} is invalid: allowed range is >= 2")
    return dataclasses.replace(self, dw_min=(self.w_max - self.w_min) / n_states)

  @property
  def granularity(self) -> float:
    """Weight granularity used by update management (AIHWKit ``calcWeightGranularity``)."""
    return self.dw_min

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  # ---- hidden parameters --------------------------------------------------------------------

  def init(self, key: jax.Array, shape: tuple[int, int]) -> DeviceParams:
    """Draws the per-crosspoint hidden parameters (AIHWKit ``populate``).

    Args:
      key: a JAX PRNG key (the construction seed).
      shape: ``(out, in)`` of the tile.

    Returns:
      dict of ``float32[out, in]`` arrays; keys are AIHWKit's hidden-parameter names.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
      raise ValueError(f"shape = {shape!r} is invalid: expected (out, in) with both >= 1")
    keys = iter(jax.random.split(key, 16))
    normal = lambda: jax.random.normal(next(keys), shape, jnp.float32)
    f32 = jnp.float32
    w_max_b = f32(self.w_max) * (1 + f32(self.w_max_dtod) * normal())
    w_min_b = f32(self.w_min) * (1 + f32(self.w_min_dtod) * normal())
    xi = normal()
    gain = jnp.exp(f32(self.dw_min_dtod) * xi) if self.dw_min_dtod_log_normal else 1 + f32(self.dw_min_dtod) * xi
    r = f32(self.up_down_dtod) * normal()
    up_bias = 0.0 if self.up_down > 0 else self.up_down
    down_bias = -self.up_down if self.up_down > 0 else 0.0
    scale_up = (f32(up_bias) + gain + r) * f32(self.dw_min)
    scale_down = (f32(down_bias) + gain - r) * f32(self.dw_min)
    if self.enforce_consistency:
      scale_up, scale_down = jnp.abs(scale_up), jnp.abs(scale_down)
      lo, hi = jnp.minimum(w_min_b, w_max_b), jnp.maximum(w_min_b, w_max_b)
      w_max_b, w_min_b = jnp.abs(hi), -jnp.abs(lo)
    else:
      mid = (w_min_b + w_max_b) / 2
      dead = w_min_b > w_max_b
      w_max_b, w_min_b = jnp.where(dead, mid, w_max_b), jnp.where(dead, mid, w_min_b)
    if self.corrupt_devices_prob > 0:
      stuck = jax.random.uniform(next(keys), shape) < self.corrupt_devices_prob
      value = jax.random.uniform(next(keys), shape, minval=-self.corrupt_devices_range,
                                 maxval=self.corrupt_devices_range)
      w_max_b, w_min_b = jnp.where(stuck, value, w_max_b), jnp.where(stuck, value, w_min_b)
      scale_up, scale_down = jnp.where(stuck, 0.0, scale_up), jnp.where(stuck, 0.0, scale_down)
    else:
      next(keys), next(keys)
    diffusion = jnp.abs(f32(self.diffusion) * (1 + f32(self.diffusion_dtod) * normal()))
    reset_bias = f32(self.reset) + f32(self.reset_dtod) * normal()
    if self.lifetime == 0:
      decay = jnp.ones(shape, jnp.float32)
    else:
      life = f32(self.lifetime) * (1 + f32(self.lifetime_dtod) * normal())
      decay = jnp.where(life > 1, 1 - 1 / jnp.where(life > 1, life, 2.0), 0.0)
    params = dict(max_bound=w_max_b, min_bound=w_min_b, dwmin_up=scale_up, dwmin_down=scale_down,
                  decay_scales=decay.astype(f32), diffusion_rates=diffusion, reset_bias=reset_bias)
    params.update(self._init_extra(jax.random.fold_in(key, 7), params, shape))
    return {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}

  def _init_extra(self, key, params: DeviceParams, shape) -> DeviceParams:
    return {}

  # ---- one pulse ----------------------------------------------------------------------------

  def pulse_once(self, w, p: DeviceParams, up, active, sxi):
    """Applies one pulse to every active crosspoint.

    Args:
      w: ``float32[...]`` current (persistent) weights.
      p: hidden parameters broadcastable to ``w``.
      up: bool, True for an up (increase) pulse, False for a down pulse.
      active: bool mask; inactive elements are returned unchanged.
      sxi: ``float32`` cycle-to-cycle noise ``dw_min_std · ξ`` for this pulse.

    Returns:
      the new weights, clipped to ``[min_bound, max_bound]`` where active.
    """
    fence = fmath.fence_from(w)
    new = self._step(w, p, up, sxi, fence)
    new = jnp.minimum(jnp.maximum(new, p["min_bound"]), p["max_bound"])
    return jnp.where(active, new, w)

  def _step(self, w, p, up, sxi, fence):
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ConstantStepDevice(PulsedDevice):
  """Constant step: ``w ± scale·(1 + σξ)`` (AIHWKit ``ConstantStepDevice``)."""

  kind: ClassVar[int] = 0

  def _step(self, w, p, up, sxi, fence):
    factor = jnp.float32(1) + sxi
    delta = jnp.where(up, p["dwmin_up"] * factor, -(p["dwmin_down"] * factor))
    return w + fence(delta)

  def pulse_run(self, w, p: DeviceParams, up, n, sxi):
    """Applies ``n`` pulses of one direction as one summed step (``UpdateParameters.aggregate_pulses``).

    Args:
      w: ``float32[...]`` current weights.
      p: hidden parameters broadcastable to ``w``.
      up: bool, True for up pulses.
      n: ``int32`` pulse counts broadcastable to ``w``; elements with ``n == 0`` are returned unchanged.
      sxi: ``float32`` noise ``dw_min_std · ξ``, one draw per element.

    Returns:
      ``clip(w ± n·scale·(1 + sxi/√n))``; for ``n == 1`` the bits of ``pulse_once``.
    """
    fence = fmath.fence_from(w)
    nf = n.astype(jnp.float32)
    # The fence keeps XLA from rewriting a / sqrt(b) into an (inexact) a * rsqrt(b).
    factor = jnp.float32(1) + sxi / fence(jnp.sqrt(jnp.maximum(nf, jnp.float32(1))))
    delta = jnp.where(up, (p["dwmin_up"] * nf) * factor, -((p["dwmin_down"] * nf) * factor))
    new = jnp.minimum(jnp.maximum(w + fence(delta), p["min_bound"]), p["max_bound"])
    return jnp.where(n > 0, new, w)


@dataclasses.dataclass(frozen=True)
class LinearStepDevice(PulsedDevice):
  """Step linear in w: up ``(slope_up·w + scale_up)·(1+σξ)`` (AIHWKit ``LinearStepDevice``).

  Attributes:
    gamma_up, gamma_down: relative step decrease at the (reference) bound.
    gamma_up_dtod, gamma_down_dtod: their device-to-device spread (absolute).
    allow_increasing: keep negative gammas (steps that grow towards the bound).
    mean_bound_reference: slopes refer to the mean bounds ``w_max``/``w_min`` instead of the
      crosspoint's own bounds.
    mult_noise: multiplicative cycle-to-cycle noise; additive on the constant part otherwise.
  """

  gamma_up: float = 0.0
  gamma_down: float = 0.0
  gamma_up_dtod: float = 0.05
  gamma_down_dtod: float = 0.05
  allow_increasing: bool = False
  mean_bound_reference: bool = True
  mult_noise: bool = True

  kind: ClassVar[int] = 1
  supports_write_noise: ClassVar[bool] = True
  aux_keys: ClassVar[tuple] = ("slope_up", "slope_down")

  def __post_init__(self):
    super().__post_init__()
    C.check_fields(self, {"gamma_up": C.finite, "gamma_down": C.finite, "gamma_up_dtod": C.non_negative,
                          "gamma_down_dtod": C.non_negative, "allow_increasing": C.boolean,
                          "mean_bound_reference": C.boolean, "mult_noise": C.boolean})

  def _init_extra(self, key, params, shape):
    k1, k2 = jax.random.split(key)
    g_up = jnp.float32(self.gamma_up) + jnp.float32(self.gamma_up_dtod) * jax.random.normal(k1, shape)
    g_down = jnp.float32(self.gamma_down) + jnp.float32(self.gamma_down_dtod) * jax.random.normal(k2, shape)
    if not self.allow_increasing:
      g_up, g_down = jnp.abs(g_up), jnp.abs(g_down)
    if self.mean_bound_reference:
      ref_up = jnp.full(shape, self.w_max, jnp.float32)
      ref_down = jnp.full(shape, self.w_min, jnp.float32)
    else:
      ref_up, ref_down = params["max_bound"], params["min_bound"]
    safe = lambda r: jnp.where(r != 0, r, 1.0)
    slope_up = jnp.where(ref_up != 0, -g_up * params["dwmin_up"] / safe(ref_up), 0.0)
    slope_down = jnp.where(ref_down != 0, -g_down * params["dwmin_down"] / safe(ref_down), 0.0)
    return dict(slope_up=slope_up, slope_down=slope_down)

  def _step(self, w, p, up, sxi, fence):
    slope = jnp.where(up, p["slope_up"], p["slope_down"])
    scale = jnp.where(up, p["dwmin_up"], p["dwmin_down"])
    factor = jnp.float32(1) + sxi
    if self.mult_noise:
      delta = (fence(slope * w) + scale) * factor
    else:
      delta = fence(slope * w) + fence(scale * factor)
    return w + fence(jnp.where(up, delta, -delta))


@dataclasses.dataclass(frozen=True)
class SoftBoundsDevice(LinearStepDevice):
  """Soft bounds: up step ``scale_up·(1 − w/w_max_b)`` (AIHWKit ``SoftBoundsDevice``).

  A ``LinearStepDevice`` with ``gamma = 1``, no gamma spread and slopes referred to each
  crosspoint's own bounds.
  """

  gamma_up: float = 1.0
  gamma_down: float = 1.0
  gamma_up_dtod: float = 0.0
  gamma_down_dtod: float = 0.0
  mean_bound_reference: bool = False


@dataclasses.dataclass(frozen=True)
class SoftBoundsReferenceDevice(PulsedDevice):
  """Soft bounds around a per-crosspoint reference (AIHWKit ``SoftBoundsReferenceDevice``).

  Attributes:
    mult_noise: multiplicative noise (default False: additive, ``scale·(1 − a + σξ)``).
    slope_up_dtod, slope_down_dtod: device-to-device spread of the slopes (rescales the bounds).
    reference_mean, reference_std: the reference conductance subtracted from the weight.
    subtract_symmetry_point: add each crosspoint's symmetry point to its reference (and reset).
  """

  mult_noise: bool = False
  slope_up_dtod: float = 0.0
  slope_down_dtod: float = 0.0
  reference_mean: float = 0.0
  reference_std: float = 0.0
  subtract_symmetry_point: bool = False

  kind: ClassVar[int] = 2
  supports_write_noise: ClassVar[bool] = True
  aux_keys: ClassVar[tuple] = ("reference",)

  def __post_init__(self):
    super().__post_init__()
    C.check_fields(self, {"mult_noise": C.boolean, "slope_up_dtod": C.non_negative,
                          "slope_down_dtod": C.non_negative, "reference_mean": C.finite,
                          "reference_std": C.non_negative, "subtract_symmetry_point": C.boolean})

  def _init_extra(self, key, params, shape):
    k1, k2, k3 = jax.random.split(key, 3)
    w_max, w_min = params["max_bound"], params["min_bound"]
    s_up, s_down = params["dwmin_up"], params["dwmin_down"]
    ok = (w_max > 0) & (w_min < 0)
    safe_max, safe_min = jnp.where(ok, w_max, 1.0), jnp.where(ok, w_min, -1.0)
    slope_down = -s_down / safe_min * jnp.abs(1 + jnp.float32(self.slope_down_dtod) * jax.random.normal(k1, shape))
    slope_up = s_up / safe_max * jnp.abs(1 + jnp.float32(self.slope_up_dtod) * jax.random.normal(k2, shape))
    new_max = jnp.where(ok, s_up / jnp.where(slope_up != 0, slope_up, 1.0), w_max)
    new_min = jnp.where(ok, -s_down / jnp.where(slope_down != 0, slope_down, 1.0), w_min)
    reference = jnp.float32(self.reference_mean) + jnp.float32(self.reference_std) * jax.random.normal(k3, shape)
    extra = dict(max_bound=new_max, min_bound=new_min)
    if self.subtract_symmetry_point:
      sp = (s_up - s_down) / (s_up / jnp.where(ok, new_max, 1.0) - s_down / jnp.where(ok, new_min, -1.0))
      sp = jnp.where(ok, sp, 0.0)
      reference = reference + sp
      extra["reset_bias"] = params["reset_bias"] + sp
    extra["reference"] = reference
    return extra

  def pulse_once(self, w, p, up, active, sxi):
    # AIHWKit clips the referenced conductance v = w + ref, not w.
    fence = fmath.fence_from(w)
    ref = p["reference"]
    v = w + ref
    w_max, w_min = p["max_bound"], p["min_bound"]
    bound = jnp.where(up, w_max, w_min)
    has_bound = jnp.where(up, w_max > 0, w_min < 0)
    a = jnp.where(has_bound, v / fence(jnp.where(has_bound, bound, 1.0)), jnp.float32(0))
    scale = jnp.where(up, p["dwmin_up"], p["dwmin_down"])
    one = jnp.float32(1)
    if self.mult_noise:
      step = scale * (one - a) * (one + sxi)
    else:
      step = scale * ((one - a) + sxi)
    v = v + fence(jnp.where(up, step, -step))
    v = jnp.minimum(jnp.maximum(v, w_min), w_max)
    return jnp.where(active, v - ref, w)


@dataclasses.dataclass(frozen=True)
class ExpStepDevice(PulsedDevice):
  """Exponential step (AIHWKit ``ExpStepDevice``): ``y = max(1 − A·e^{±γ z}, 0)``.

  With ``z = 2a·w/(w_max_b − w_min_b) + b``. ``dw_min_std_add``/``dw_min_std_slope`` switch on the
  "complex" noise ``σ·(|dw| + add + slope·|w|)·ξ``.
  """

  A_up: float = 0.00081
  A_down: float = 0.36833
  gamma_up: float = 12.44625
  gamma_down: float = 12.78785
  a: float = 0.244
  b: float = 0.2425
  dw_min_std_add: float = 0.0
  dw_min_std_slope: float = 0.0

  kind: ClassVar[int] = 3
  supports_write_noise: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    C.check_fields(self, {"A_up": C.finite, "A_down": C.finite, "gamma_up": C.finite, "gamma_down": C.finite,
                          "a": C.finite, "b": C.finite, "dw_min_std_add": C.non_negative,
                          "dw_min_std_slope": C.non_negative})

  @property
  def complex_noise(self) -> bool:
    return self.dw_min_std > 0 and (self.dw_min_std_add != 0 or self.dw_min_std_slope != 0)

  @property
  def granularity(self) -> float:
    # AIHWKit averages the down step at w = 0 with itself (a typo for up + down); kept for parity.
    z = self.b
    down = max(1 - self.A_down * math.exp(-self.gamma_down * z), 0.0) * self.dw_min
    return down if down > 0 else self.dw_min

  def _step(self, w, p, up, sxi, fence):
    f32 = jnp.float32
    diff = p["max_bound"] - p["min_bound"]
    valid = diff > 0
    z = fence(f32(2) * w / fence(jnp.where(valid, diff, 1.0)) * f32(self.a)) + f32(self.b)
    arg = jnp.where(up, f32(self.gamma_up) * z, f32(self.gamma_down) * (-z))
    amp = jnp.where(up, f32(self.A_up), f32(self.A_down))
    y = jnp.maximum(f32(1) - fence(amp * fmath.exp(arg, fence)), f32(0))
    scale = jnp.where(up, p["dwmin_up"], p["dwmin_down"])
    if self.complex_noise:
      dw = jnp.where(up, y * scale, -(y * scale))
      spread = jnp.abs(dw) + f32(self.dw_min_std_add) + fence(f32(self.dw_min_std_slope) * jnp.abs(w))
      new = w + (fence(dw) + fence(spread * sxi))
    else:
      step = y * (f32(1) + sxi) * scale
      new = w + fence(jnp.where(up, step, -step))
    return jnp.where(valid, new, w)

  def pulse_once(self, w, p, up, active, sxi):
    fence = fmath.fence_from(w)
    new = self._step(w, p, up, sxi, fence)
    new = jnp.maximum(jnp.minimum(new, p["max_bound"]), p["min_bound"])
    return jnp.where(active & (p["max_bound"] > p["min_bound"]), new, w)


@dataclasses.dataclass(frozen=True)
class PowStepDevice(PulsedDevice):
  """Power-law step (AIHWKit ``PowStepDevice``): up ``scale_up·((w_max_b − w)/R)^γ⁺``.

  Attributes:
    pow_gamma: mean exponent; pow_gamma_dtod: its relative spread.
    pow_up_down: up/down asymmetry of the exponent; pow_up_down_dtod: its spread.
  """

  pow_gamma: float = 1.0
  pow_gamma_dtod: float = 0.1
  pow_up_down: float = 0.0
  pow_up_down_dtod: float = 0.0

  kind: ClassVar[int] = 4
  supports_write_noise: ClassVar[bool] = True
  aux_keys: ClassVar[tuple] = ("gamma_up", "gamma_down")

  def __post_init__(self):
    super().__post_init__()
    C.check_fields(self, {"pow_gamma": C.finite, "pow_gamma_dtod": C.non_negative, "pow_up_down": C.finite,
                          "pow_up_down_dtod": C.non_negative})

  @property
  def granularity(self) -> float:
    return self.dw_min * 0.5**self.pow_gamma

  def _init_extra(self, key, params, shape):
    k1, k2 = jax.random.split(key)
    gain = 1 + jnp.float32(self.pow_gamma_dtod) * jax.random.normal(k1, shape)
    r = jnp.float32(self.pow_up_down_dtod) * jax.random.normal(k2, shape)
    up_bias = 0.0 if self.pow_up_down > 0 else self.pow_up_down
    down_bias = -self.pow_up_down if self.pow_up_down > 0 else 0.0
    g_up = (jnp.float32(up_bias) + gain + r) * jnp.float32(self.pow_gamma)
    g_down = (jnp.float32(down_bias) + gain - r) * jnp.float32(self.pow_gamma)
    if self.enforce_consistency:
      g_up, g_down = jnp.abs(g_up), jnp.abs(g_down)
    return dict(gamma_up=g_up, gamma_down=g_down)

  def _step(self, w, p, up, sxi, fence):
    w_max, w_min = p["max_bound"], p["min_bound"]
    rng = w_max - w_min
    valid = rng != 0
    safe = fence(jnp.where(valid, rng, 1.0))
    base = jnp.where(up, (w_max - w) / safe, (w - w_min) / safe)
    gamma = jnp.where(up, p["gamma_up"], p["gamma_down"])
    scale = jnp.where(up, p["dwmin_up"], p["dwmin_down"])
    step = scale * fmath.pow(base, gamma, fence) * (jnp.float32(1) + sxi)
    return jnp.where(valid, w + fence(jnp.where(up, step, -step)), w)


@dataclasses.dataclass(frozen=True)
class PiecewiseStepDevice(PulsedDevice):
  """Piecewise-linear step-size profile (AIHWKit ``PiecewiseStepDevice``).

  Attributes:
    piecewise_up, piecewise_down: relative step sizes at equidistant nodes from w_min_b to w_max_b.
  """

  piecewise_up: tuple = (1.0,)
  piecewise_down: tuple = (1.0,)

  kind: ClassVar[int] = 5
  supports_write_noise: ClassVar[bool] = True

  def __post_init__(self):
    object.__setattr__(self, "piecewise_up", tuple(float(v) for v in self.piecewise_up))
    object.__setattr__(self, "piecewise_down", tuple(float(v) for v in self.piecewise_down))
    super().__post_init__()
    for name in ("piecewise_up", "piecewise_down"):
      vec = getattr(self, name)
      if not 1 <= len(vec) <= 64 or not all(math.isfinite(v) and v >= 0 for v in vec):
        raise ValueError(f"PiecewiseStepDevice.{name} = {vec!r} is invalid: allowed range is 1 to 64 finite "
                         "values >= 0")
    if len(self.piecewise_up) != len(self.piecewise_down):
      raise ValueError(f"PiecewiseStepDevice.piecewise_down has {len(self.piecewise_down)} values but "
                       f"piecewise_up has {len(self.piecewise_up)}: they must have the same length")

  @property
  def granularity(self) -> float:
    return self.dw_min * self.piecewise_up[len(self.piecewise_up) // 2]

  def _step(self, w, p, up, sxi, fence):
    f32 = jnp.float32
    n = len(self.piecewise_up) - 1
    vec_up = jnp.asarray(self.piecewise_up, f32)
    vec_down = jnp.asarray(self.piecewise_down, f32)
    w_max, w_min = p["max_bound"], p["min_bound"]
    scale = jnp.where(up, p["dwmin_up"], p["dwmin_down"])
    if n == 0:
      rel = jnp.where(up, vec_up[0], vec_down[0])
      step = scale * rel
    else:
      valid = w_max > w_min
      ws = jnp.maximum((w - w_min) / fence(jnp.where(valid, w_max - w_min, 1.0)) * f32(n), f32(0))
      idx = jnp.minimum(jnp.floor(ws), f32(n - 1))
      t = jnp.minimum(ws - idx, f32(1))
      t1 = f32(1) - t
      k = idx.astype(jnp.int32)
      v0 = jnp.where(up, vec_up[k], vec_down[k])
      v1 = jnp.where(up, vec_up[k + 1], vec_down[k + 1])
      interp = scale * (fence(t1 * v0) + fence(t * v1))
      step = jnp.where(valid, interp, scale * jnp.where(up, vec_up[0], vec_down[0]))
    step = step * (f32(1) + sxi)
    return w + fence(jnp.where(up, step, -step))


DEVICE_TYPES = (ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice, ExpStepDevice,
                PowStepDevice, PiecewiseStepDevice)


# ---- presets (AIHWKit ``simulator/presets/devices.py``) -------------------------------------------

def ReRamESPresetDevice(**kw) -> ExpStepDevice:
  """ReRAM, exponential step (AIHWKit ``ReRamESPresetDevice``)."""
  base = dict(dw_min=0.00135, up_down=0.259359, w_max=1.0, w_min=-1.0, a=-0.5, b=-0.5, gamma_up=5.0,
              gamma_down=5.0, A_up=-1.18445, A_down=-0.081404, dw_min_dtod=0.2, up_down_dtod=0.05,
              w_max_dtod=0.3, w_min_dtod=0.3, dw_min_std=5.0, write_noise_std=75.0)
  return ExpStepDevice(**{**base, **kw})


def ReRamSBPresetDevice(**kw) -> SoftBoundsReferenceDevice:
  """ReRAM, soft bounds with reference (AIHWKit ``ReRamSBPresetDevice``)."""
  base = dict(dw_min=0.002, up_down=0.0, w_max=1.25, w_min=-0.75, mult_noise=False, dw_min_dtod=0.3,
              up_down_dtod=0.01, w_max_dtod=0.24, w_min_dtod=0.4, dw_min_std=3.75, write_noise_std=56.0)
  return SoftBoundsReferenceDevice(**{**base, **kw})


def CapacitorPresetDevice(**kw) -> LinearStepDevice:
  """Capacitor cell (AIHWKit ``CapacitorPresetDevice``)."""
  base = dict(dw_min=0.005, up_down=0.0, w_max=1.0, w_min=-1.0, gamma_up=0.05, gamma_down=0.05,
              gamma_up_dtod=0.01, gamma_down_dtod=0.01, mult_noise=False, mean_bound_reference=True,
              dw_min_dtod=0.1, up_down_dtod=0.06, w_max_dtod=0.07, w_min_dtod=0.07, dw_min_std=0.3,
              lifetime=1e6, lifetime_dtod=0.3)
  return LinearStepDevice(**{**base, **kw})


def EcRamPresetDevice(**kw) -> LinearStepDevice:
  """ECRAM (AIHWKit ``EcRamPresetDevice``)."""
  base = dict(dw_min=0.002, up_down=0.0, w_max=1.1724, w_min=-0.8276, gamma_up=0.1153, gamma_down=0.5085,
              gamma_up_dtod=0.05, gamma_down_dtod=0.05, mult_noise=True, dw_min_dtod=0.1, up_down_dtod=0.01,
              w_max_dtod=0.05, w_min_dtod=0.05, dw_min_std=0.3)
  return LinearStepDevice(**{**base, **kw})


def EcRamMOPresetDevice(**kw) -> LinearStepDevice:
  """Metal-oxide ECRAM (AIHWKit ``EcRamMOPresetDevice``)."""
  base = dict(dw_min=2.8214e-4, up_down=0.0, w_max=1.1714, w_min=-0.8286, gamma_up=0.4152, gamma_down=0.7342,
              gamma_up_dtod=0.05, gamma_down_dtod=0.05, mult_noise=True, dw_min_dtod=0.1, up_down_dtod=0.01,
              w_max_dtod=0.05, w_min_dtod=0.05, dw_min_std=2.0)
  return LinearStepDevice(**{**base, **kw})


def IdealizedPresetDevice(**kw) -> ConstantStepDevice:
  """Idealized symmetric device (AIHWKit ``IdealizedPresetDevice``)."""
  base = dict(dw_min=2e-4, up_down=0.0, w_max=1.0, w_min=-1.0, dw_min_dtod=0.3, up_down_dtod=0.0,
              w_max_dtod=0.3, w_min_dtod=0.3, dw_min_std=0.3)
  return ConstantStepDevice(**{**base, **kw})


def GokmenVlasovPresetDevice(**kw) -> ConstantStepDevice:
  """Device of Gokmen & Vlasov 2016 (AIHWKit ``GokmenVlasovPresetDevice``)."""
  base = dict(dw_min=0.0016, up_down=0.0, w_max=1.0, w_min=-1.0, dw_min_dtod=0.3, up_down_dtod=0.01,
              w_max_dtod=0.3, w_min_dtod=0.3, dw_min_std=0.3)
  return ConstantStepDevice(**{**base, **kw})


def PCMPresetDevice(**kw) -> ExpStepDevice:
  """Phase-change memory, one-sided (AIHWKit ``PCMPresetDevice``)."""
  base = dict(dw_min=0.01, up_down=0.0, w_max=2.0, w_min=0.0, a=-1.0, b=0.0, gamma_up=2.5, gamma_down=2.5,
              A_up=-27.235, A_down=-2.235, dw_min_dtod=0.2, up_down_dtod=0.05, w_max_dtod=0.1, w_min_dtod=0.0,
              dw_min_std=0.6, dw_min_std_add=0.042, dw_min_std_slope=0.108, reset=0.01, reset_dtod=0.02)
  return ExpStepDevice(**{**base, **kw})


def limited_state_soft_bounds(n_states: float, **kw) -> SoftBoundsDevice:
  """The MRL paper's limited-state device: ``SoftBoundsDevice`` on ±1 with ``dw_min = 2/n_states``.

  4 states → ``dw_min = 0.5``; 10 states → ``dw_min = 0.2``. Other AIHWKit defaults (30 % spreads,
  30 % cycle-to-cycle noise) unless overridden in ``kw``.
  """
  return SoftBoundsDevice(**{"w_max": 1.0, "w_min": -1.0, **kw}).with_n_states(n_states)
