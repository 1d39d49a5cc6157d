"""An analog tile as a pure state PyTree: weights, hidden device parameters, and the MVM with its VJP.

``TileState`` holds what a crossbar holds; functions map it to a new state. Nothing is mutable, so
states ``jit``, ``vmap`` (e.g. over device seeds) and checkpoint like any other PyTree.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from mrl_jax.analog_state import path_str, weight_states
from mrl_jax.devices import DeviceParams, PulsedDevice
from mrl_jax.io import IOParameters, analog_mvm
from mrl_jax.pulses import UpdateParameters
from mrl_jax.update import Engine, operands_finite, pulsed_update


class TileState(NamedTuple):
  """State of one analog tile.

  Attributes:
    weights: ``float32[out, in]`` weights the MVM reads (the apparent weights under write noise).
    params: hidden per-crosspoint device parameters (``PulsedDevice.init``).
    persistent: ``float32[out, in]`` persistent weights the pulses act on; ``None`` unless the
      device has ``write_noise_std > 0``, in which case ``weights = persistent + noise``.
    skipped: int32 number of updates skipped by the non-finite policy (``lr``, ``x`` or ``d`` held a
      NaN or inf, so the tile was left unchanged).
  """

  weights: jax.Array
  params: DeviceParams
  persistent: Optional[jax.Array] = None
  skipped: Optional[jax.Array] = None


def _write_noise(device: PulsedDevice, persistent, key):
  """Apparent weights ``persistent + write_noise_std·dw_min·ξ``."""
  noise = jax.random.normal(key, persistent.shape, jnp.float32)
  return persistent + jnp.float32(device.write_noise_std * device.dw_min) * noise


def clip_to_bounds(weights, params: DeviceParams):
  """Clips weights to each crosspoint's ``[min_bound, max_bound]``."""
  return jnp.minimum(jnp.maximum(weights, params["min_bound"]), params["max_bound"])


def set_weights(state: TileState, device: PulsedDevice, weights, key=None) -> TileState:
  """Programs ``weights`` exactly, clipped per crosspoint (AIHWKit ``set_weights``, not realistic).

  For ``SoftBoundsReferenceDevice`` the clip applies to ``w`` itself, as in AIHWKit. With write noise
  the apparent weights are redrawn (needs ``key``).
  """
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != state.weights.shape:
    raise ValueError(f"weights: expected shape {state.weights.shape}, got {weights.shape}")
  persistent = clip_to_bounds(weights, state.params)
  if device.write_noise_std > 0:
    if key is None:
      raise ValueError("key: a PRNG key is needed to draw write noise (device.write_noise_std > 0)")
    return state._replace(weights=_write_noise(device, persistent, key), persistent=persistent)
  return state._replace(weights=persistent)



def reset_columns(state: TileState, device: PulsedDevice, columns, key) -> TileState:
  """Resets every crosspoint of the chosen columns (AIHWKit ``resetCols`` with probability 1).

  Each crosspoint becomes its reset value plus ``device.reset_std`` Gaussian noise, clipped to its bounds; under
  write noise the reset crosspoints get fresh apparent weights (the convention of ``tile_update``).

  Args:
    state: the tile, ``[out, in]``.
    device: its device config.
    columns: ``bool[in]``, the columns to reset.
    key: PRNG key.
  """
  k_value, k_wn = jax.random.split(key)
  noise = jnp.float32(device.reset_std) * jax.random.normal(k_value, state.weights.shape, jnp.float32)
  value = clip_to_bounds(state.params["reset_bias"] + noise, state.params)
  chosen = jnp.broadcast_to(columns[None, :], state.weights.shape)
  if device.write_noise_std > 0:
    persistent = jnp.where(chosen, value, state.persistent)
    return state._replace(weights=jnp.where(chosen, _write_noise(device, persistent, k_wn), state.weights),
                          persistent=persistent)
  return state._replace(weights=jnp.where(chosen, value, state.weights))

def init_tile(key, device: PulsedDevice, shape: tuple[int, int], weights=None) -> TileState:
  """Draws a tile's device parameters and programs ``weights`` (zeros by default).

  Args:
    key: PRNG key (construction seed of the device parameters, and write noise).
    device: device config.
    shape: ``(out, in)``.
    weights: optional initial ``float32[out, in]`` weights.
  """
  k_dev, k_wn = jax.random.split(key)
  params = device.init(k_dev, shape)
  zeros = jnp.zeros(tuple(shape), jnp.float32)
  state = TileState(weights=zeros, params=params, persistent=zeros if device.write_noise_std > 0 else None,
                    skipped=jnp.int32(0))
  return set_weights(state, device, zeros if weights is None else weights, k_wn)


def tile_update(state: TileState, device: PulsedDevice, update: UpdateParameters, x, d, lr, key,
                engine: Engine = "auto", dw: float | None = None) -> TileState:
  """Pulsed update ``W −= lr·dᵀx`` of one tile (one cycle per row of ``x``/``d``).

  With write noise, every crosspoint whose persistent weight changed gets a fresh apparent weight
  (AIHWKit's GPU convention: once per touched element and update).
  """
  k_up, k_wn = jax.random.split(key)
  state = count_skipped(state, operands_finite(lr, x, d))
  if device.write_noise_std > 0:
    new = pulsed_update(state.persistent, state.params, x, d, lr, k_up, device, update, dw, engine)
    noisy = _write_noise(device, new, k_wn)
    return state._replace(weights=jnp.where(new != state.persistent, noisy, state.weights), persistent=new)
  new = pulsed_update(state.weights, state.params, x, d, lr, k_up, device, update, dw, engine)
  return state._replace(weights=new)


def count_skipped(state: TileState, finite) -> TileState:
  """Adds one to the tile's skip counter unless ``finite`` (the non-finite policy skipped an update)."""
  return state._replace(skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32))


def skipped_updates(tree) -> dict:
  """``{path: int32 count}`` of the updates the non-finite policy skipped, for every tile of every analog weight
  in ``tree`` (an optimizer or training state; batched counts under vmap).

  ``path`` is the weight's params path as ``jax.tree_util.keystr`` writes it, then the tile's place in the
  weight's device state: ``"['l1']['weight'].tiles[0]"`` (``analog_state.weight_states``).
  """
  out = {}
  for path, leaf in weight_states(tree).items():
    for tile_path, node in jax.tree_util.tree_flatten_with_path(leaf, is_leaf=_is_tile)[0]:
      if _is_tile(node):
        out[path_str(path) + jax.tree_util.keystr(tile_path)] = node.skipped
  return out


def _is_tile(node) -> bool:
  return isinstance(node, TileState)


def post_update_step(state: TileState, device: PulsedDevice, key) -> TileState:
  """Diffusion and decay once per optimizer step (AIHWKit ``post_update_step``)."""
  if device.diffusion <= 0 and device.lifetime <= 0:
    return state
  p = state.params
  w = state.weights if state.persistent is None else state.persistent
  k_diff, k_wn = jax.random.split(key)
  if device.diffusion > 0:
    w = clip_to_bounds(w + p["diffusion_rates"] * jax.random.normal(k_diff, w.shape, jnp.float32), p)
  if device.lifetime > 0:
    w = clip_to_bounds((w - p["reset_bias"]) * p["decay_scales"] + p["reset_bias"], p)
  if state.persistent is None:
    return state._replace(weights=w)
  return state._replace(weights=_write_noise(device, w, k_wn), persistent=w)


# ---- the MVM with its VJP ---------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def analog_matmul(weights, x, key, forward_io: IOParameters, backward_io: IOParameters):
  """``y = x Wᵀ`` through the forward I/O; its VJP runs ``g W`` through the backward I/O.

  Args:
    weights: ``float32[out, in]`` visible weights.
    x: ``float32[rows, in]``.
    key: PRNG key for forward and backward noise.
    forward_io, backward_io: static I/O parameters.

  Returns:
    ``float32[rows, out]``. The cotangent of ``weights`` is the dense ``gᵀx`` (what a floating-point
    optimizer needs); analog optimizers use ``x`` and ``g`` themselves.
  """
  _check_mvm(weights, x)
  return analog_mvm(weights, x, forward_io, jax.random.fold_in(key, 0))


def _check_mvm(weights, x):
  if weights.ndim != 2 or x.ndim != 2 or x.shape[1] != weights.shape[1]:
    raise ValueError(f"analog_matmul: weights {weights.shape} need x of shape [rows, {weights.shape[-1]}], "
                     f"got x {x.shape}")


def _matmul_fwd(weights, x, key, forward_io, backward_io):
  y = analog_matmul(weights, x, key, forward_io, backward_io)
  return y, (weights, x, key)


def _matmul_bwd(forward_io, backward_io, res, g):
  weights, x, key = res
  grad_x = analog_mvm(weights, g, backward_io, jax.random.fold_in(key, 1), transposed=True)
  grad_w = jnp.matmul(g.T, x, precision=jax.lax.Precision.HIGHEST)
  return grad_w, grad_x, None


analog_matmul.defvjp(_matmul_fwd, _matmul_bwd)
