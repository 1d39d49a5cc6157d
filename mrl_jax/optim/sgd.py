"""Analog SGD: the gradient is pulsed straight into one tile (AIHWKit ``SingleRPUConfig`` + ``AnalogSGD``)."""

from __future__ import annotations

from typing import Optional

import jax
import optax

from mrl_jax.devices import PulsedDevice
from mrl_jax.optim import base
from mrl_jax.pulses import UpdateParameters
from mrl_jax.tile import TileState, init_tile, post_update_step, tile_update
from mrl_jax.update import Engine


def analog_sgd(device: PulsedDevice, learning_rate: base.ScalarOrSchedule, update: UpdateParameters = UpdateParameters(),
               *, key, engine: Optional[Engine] = None) -> optax.GradientTransformationExtraArgs:
  """Pulsed SGD ``W −= lr·dᵀx`` on one tile per analog weight, one update cycle per row.

  Args:
    device: the device of every tile.
    learning_rate: SGD learning rate or schedule (the pulse learning rate).
    update: pulse parameters.
    key: PRNG key or integer seed of the device parameters and pulses (no default: say which).
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (None: ``auto``).

  Returns:
    ``optax.GradientTransformationExtraArgs`` over ``base.AnalogState``; every weight's leaf is its ``TileState``.
  """
  if not isinstance(device, PulsedDevice):
    raise TypeError(f"analog_sgd: device must be a PulsedDevice, got {type(device).__name__}")
  base.check_engine("analog_sgd", engine)
  engine = engine or "auto"

  def step_leaf(tile: TileState, g, info: base.StepInfo, key) -> TileState:
    k_up, k_post = jax.random.split(key)
    tile = tile_update(tile, device, update, g.x, g.d, info.lr, k_up, engine=engine)
    return post_update_step(tile, device, k_post)

  return base.per_weight("analog_sgd", learning_rate, key, init_leaf=lambda w, k: init_tile(k, device, w.shape, w),
                         step_leaf=step_leaf, visible=visible_leaf)


def visible_leaf(tile: TileState) -> jax.Array:
  """The visible weight of one analog weight: its tile's weights."""
  return tile.weights


def visible_weights(device: PulsedDevice, state: base.AnalogState):
  """The visible weights of every analog weight of an ``analog_sgd`` state (a tree shaped like the params)."""
  del device  # one tile per weight: its weights are the visible ones
  return base.map_leaves(visible_leaf, state)
