"""The pulsed update ``W ← W − lr·dᵀx`` as a device would see it, with engine selection.

``pulsed_update`` applies one update cycle per row of ``x``/``d`` in order (AIHWKit's CPU semantics):
per-row update management, stochastic pulse trains, coincidence counting, and for every coincidence
one device pulse with its own cycle-to-cycle noise followed by the clip to the crosspoint's bounds
(or, with ``UpdateParameters.aggregate_pulses`` on a ConstantStep device, AIHWKit's CUDA form: the n
pulses of a row as one summed step).

Two engines compute the same numbers bit for bit:
  * ``"native"``: the C++ (CPU) / CUDA XLA FFI kernel (``mrl_jax._native``), the default when built;
  * ``"jnp"``: this module's pure-JAX reference, the test oracle and the fallback.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from mrl_jax import _native
from mrl_jax import pulses as P
from mrl_jax import rng
from mrl_jax.devices import ConstantStepDevice, DeviceParams, PulsedDevice

Engine = Literal["auto", "native", "jnp"]
MAX_SUMMED_STD = 0.33  # AIHWKit's CUDA kernel sums ConstantStep pulses up to this dw_min_std (3 sigma < 1)


def check_update_operands(weights, x, d, lr=None):
  """Trace-time shape/dtype checks shared by both engines; raises ``ValueError`` naming both shapes."""
  if weights.ndim != 2:
    raise ValueError(f"weights: expected float32[out, in], got shape {weights.shape}")
  out_size, in_size = weights.shape
  if x.ndim != 2 or d.ndim != 2:
    raise ValueError(f"x and d must be 2-D [rows, in] and [rows, out]; got x {x.shape} and d {d.shape}")
  if x.shape[1] != in_size or d.shape[1] != out_size or x.shape[0] != d.shape[0]:
    raise ValueError(f"shape mismatch: weights {weights.shape} needs x [rows, {in_size}] and d [rows, {out_size}] "
                     f"with equal rows; got x {x.shape} and d {d.shape}")
  for name, a in (("weights", weights), ("x", x), ("d", d)):
    if a.dtype != jnp.float32:
      raise ValueError(f"{name}: expected dtype float32, got {a.dtype} (shape {a.shape})")
  if x.shape[0] >= rng.MAX_ROWS:
    raise ValueError(f"x: at most {rng.MAX_ROWS - 1} rows per update call, got {x.shape[0]}")
  if out_size * in_size >= 1 << 28:
    raise ValueError(f"weights: at most 2**28 crosspoints per tile, got {weights.shape}")
  if lr is not None and jnp.shape(lr) != ():
    raise ValueError(f"lr: expected a scalar, got shape {jnp.shape(lr)}")


def check_update_configs(device: PulsedDevice, update: P.UpdateParameters):
  """Raises ``ValueError`` for a device/update combination the pulsed update does not model."""
  if update.aggregate_pulses and isinstance(device, ConstantStepDevice) and device.dw_min_std > MAX_SUMMED_STD:
    raise ValueError(f"UpdateParameters.aggregate_pulses needs ConstantStepDevice.dw_min_std <= {MAX_SUMMED_STD} "
                     f"(got {device.dw_min_std}): larger noise can reverse single pulses, which a summed step "
                     "cannot represent (AIHWKit's CUDA kernel pulses one by one there too)")


def pulsed_update_reference(weights, params: DeviceParams, x, d, lr, key, device: PulsedDevice,
                            update: P.UpdateParameters, dw: float | None = None):
  """Pure-jnp pulsed update (the oracle of the native kernel).

  Args:
    weights: ``float32[out, in]`` (persistent) weights.
    params: hidden device parameters (``device.init``).
    x: ``float32[rows, in]`` inputs; d: ``float32[rows, out]`` errors.
    lr: float32 scalar learning rate (a row with ``lr <= 0`` or non-finite values is skipped).
    key: Threefry key or its ``uint32[2]`` data.
    device, update: static configs.
    dw: granularity for update management (defaults to ``device.granularity``).

  Returns:
    the new ``float32[out, in]`` weights.
  """
  check_update_operands(weights, x, d, lr)
  check_update_configs(device, update)
  lr = skip_non_finite(lr, x, d)
  dw = device.granularity if dw is None else dw
  if not update.is_pulsed:
    return _float_update(weights, params, x, d, lr, update)
  kw = rng.key_words(key)
  table = jnp.asarray(rng.scaled_normal_table(device.dw_min_std))
  out_size, in_size = weights.shape
  element = (jnp.arange(out_size, dtype=jnp.uint32)[:, None] * jnp.uint32(in_size)
             + jnp.arange(in_size, dtype=jnp.uint32)[None, :])

  def one_row(w, row_data):
    row, xr, dr = row_data
    n, down = P.row_counts(update, kw, row, xr, dr, lr, dw)
    up = ~down
    s0, s1 = rng.row_noise_seed(kw, row)

    if P.sums_pulses(device, update):
      sxi = table[rng.pulse_noise_index(s0, s1, element, 0)] if device.dw_min_std > 0 else jnp.float32(0)
      return device.pulse_run(w, params, up, n, sxi), None

    def pulse(p, w):
      if device.dw_min_std > 0:
        sxi = table[rng.pulse_noise_index(s0, s1, element, p)]
      else:
        sxi = jnp.float32(0)
      return device.pulse_once(w, params, up, p < n, sxi)

    return jax.lax.fori_loop(0, jnp.max(n), pulse, w), None

  rows = jnp.arange(x.shape[0], dtype=jnp.uint32)
  weights, _ = jax.lax.scan(one_row, weights, (rows, x, d))
  return weights


def operands_finite(lr, x, d):
  """bool: ``lr``, ``x`` and ``d`` hold no NaN or inf.

  One max-reduction per operand (``max`` propagates NaN, ``|±inf|`` is inf) rather than an elementwise
  ``isfinite`` mask: XLA fused that mask into the im2col patches and materialised it, at 2–4x the cost of
  the convolution's own pulsed update rows.
  """
  amax = lambda a: jnp.max(jnp.abs(a)) if a.size else jnp.float32(0)
  return jnp.isfinite(jnp.asarray(lr, jnp.float32)) & jnp.isfinite(amax(x)) & jnp.isfinite(amax(d))


def skip_non_finite(lr, x, d):
  """The non-finite policy: an update whose lr, x or d holds NaN/inf is skipped (lr becomes 0)."""
  return jnp.where(operands_finite(lr, x, d), jnp.asarray(lr, jnp.float32), jnp.float32(0))


def _float_update(weights, params, x, d, lr, update):
  new = weights - lr * jnp.matmul(d.T, jnp.where(lr > 0, x, 0), precision=jax.lax.Precision.HIGHEST)
  if update.pulse_type == P.PulseType.NONE_WITH_DEVICE:
    new = jnp.minimum(jnp.maximum(new, params["min_bound"]), params["max_bound"])
  return jnp.where(lr > 0, new, weights)


def pulsed_update(weights, params: DeviceParams, x, d, lr, key, device: PulsedDevice, update: P.UpdateParameters,
                  dw: float | None = None, engine: Engine = "auto"):
  """Pulsed update of one tile; see ``pulsed_update_reference`` for the arguments.

  ``engine``: ``"native"`` (the XLA FFI kernel), ``"jnp"`` (reference) or ``"auto"`` (native when the
  extension is built, else jnp). Both give identical bits.
  """
  if engine not in ("auto", "native", "jnp"):
    raise ValueError(f"engine = {engine!r} is invalid: allowed range is 'auto', 'native', 'jnp'")
  if engine != "jnp" and update.is_pulsed:
    if _native.available():
      check_update_operands(weights, x, d, lr)
      check_update_configs(device, update)
      return _native.pulsed_update(weights, params, x, d, skip_non_finite(lr, x, d), key, device, update, dw)
    if engine == "native":
      raise RuntimeError("engine='native' but the native extension mrl_jax._mrl_cpu is not built: "
                         f"{_native.import_error()}")
  return pulsed_update_reference(weights, params, x, d, lr, key, device, update, dw)
