"""Analog SGD: the gradient is pulsed straight into one tile (AIHWKit ``SingleRPUConfig`` + ``AnalogSGD``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mrl_jax.devices import PulsedDevice
from mrl_jax.optim import base
from mrl_jax.pulses import UpdateParameters
from mrl_jax.tile import TileState, init_tile, post_update_step, tile_update


class AnalogSGDState(NamedTuple):
  count: jax.Array
  key: jax.Array
  tiles: object  # a TileState per analog weight


def analog_sgd(device: PulsedDevice, learning_rate: base.ScalarOrSchedule, update: UpdateParameters = UpdateParameters(),
               key=0, engine: str = "auto") -> optax.GradientTransformationExtraArgs:
  """Pulsed SGD ``W −= lr·dᵀx`` on one tile per analog weight, one update cycle per row.

  Args:
    device: the device of every tile.
    learning_rate: SGD learning rate or schedule (the pulse learning rate).
    update: pulse parameters.
    key: PRNG key or int seed (device parameters and pulses).
    engine: pulsed-update engine (``auto``, ``native``, ``jnp``).
  """
  if not isinstance(device, PulsedDevice):
    raise TypeError(f"analog_sgd: device must be a PulsedDevice, got {type(device).__name__}")
  base.check_learning_rate(learning_rate, "analog_sgd")
  key = base.as_key(key)

  def init_fn(params):
    k_run, tiles = base.init_leaves(key, params, lambda w, k: init_tile(k, device, w.shape, w))
    return AnalogSGDState(jnp.int32(0), k_run, tiles)

  def update_fn(updates, state, params=None, **extra):
    del extra
    lr = base.learning_rate_at(learning_rate, state.count)
    keys = base.leaf_keys(jax.random.fold_in(state.key, state.count), params)

    def one(g, tile: TileState, w, k):
      base.check_analog_gradient(g, w.shape)
      k_up, k_post = jax.random.split(k)
      tile = tile_update(tile, device, update, g.x, g.d, lr, k_up, engine=engine)
      tile = post_update_step(tile, device, k_post)
      return tile.weights - w, tile

    new_updates, tiles = base.map_analog_leaves(one, updates, state.tiles, params, keys)
    return new_updates, AnalogSGDState(state.count + 1, state.key, tiles)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
