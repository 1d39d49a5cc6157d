"""Mixed precision (AIHWKit ``MixedPrecisionCompound``): a digital accumulator χ of the SGD increment,
committed to the analog tile in whole device pulses.

Per step ``χ += −lr·dᵀx`` (digital, float32). Every ``transfer_every`` steps, each crosspoint with
``|χ| ≥ ε`` (``ε = granularity·dw_min``) receives ``n = ⌊|χ|/ε⌋`` pulses in the direction of ``χ``
(device response, cycle-to-cycle noise and clipping per pulse), and ``χ −= sign(χ)·n·ε``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mrl_jax import _checks as C
from mrl_jax import rng
from mrl_jax.devices import PulsedDevice
from mrl_jax.optim import base
from mrl_jax.tile import TileState, count_skipped, init_tile, post_update_step


@dataclasses.dataclass(frozen=True)
class MixedPrecision:
  """Mixed-precision settings.

  Attributes:
    device: analog device.
    granularity: threshold ε in units of the device's ``dw_min``.
    transfer_every: commit χ every this many steps.
    max_pulses: cap on pulses per crosspoint and commit (bounds the pulse loop).
  """

  device: PulsedDevice
  granularity: float = 1.0
  transfer_every: int = 1
  max_pulses: int = 255

  def __post_init__(self):
    C.check_fields(self, {"granularity": C.positive, "transfer_every": lambda o, n, v: C.integer(o, n, v, 1),
                          "max_pulses": lambda o, n, v: C.integer(o, n, v, 1, 1 << 16)})


class MixedPrecisionLeafState(NamedTuple):
  tile: TileState
  chi: jax.Array


class MixedPrecisionState(NamedTuple):
  count: jax.Array
  key: jax.Array
  leaves: object


def apply_pulse_counts(device: PulsedDevice, tile: TileState, n, up, key) -> TileState:
  """Applies ``n[i, j]`` pulses (direction ``up[i, j]``) to each crosspoint, one noisy pulse at a time."""
  table = jnp.asarray(rng.scaled_normal_table(device.dw_min_std))
  w0 = tile.weights if tile.persistent is None else tile.persistent

  def pulse(p, w):
    idx = jax.random.randint(jax.random.fold_in(key, p), w.shape, 0, rng.NORMAL_TABLE_SIZE)
    sxi = table[idx] if device.dw_min_std > 0 else jnp.float32(0)
    return device.pulse_once(w, tile.params, up, p < n, sxi)

  w = jax.lax.fori_loop(0, jnp.max(n), pulse, w0)
  if tile.persistent is None:
    return tile._replace(weights=w)
  noisy = w + jnp.float32(device.write_noise_std * device.dw_min) * jax.random.normal(
      jax.random.fold_in(key, -1), w.shape)
  return tile._replace(weights=jnp.where(w != w0, noisy, tile.weights), persistent=w)


def mixed_precision(config: MixedPrecision, learning_rate: base.ScalarOrSchedule, key=0):
  """Mixed-precision training of every analog weight (see the module docstring)."""
  base.check_learning_rate(learning_rate, "mixed_precision")
  key = base.as_key(key)
  eps = jnp.float32(config.granularity * config.device.dw_min)

  def init_fn(params):
    k_run, leaves = base.init_leaves(key, params, lambda w, k: MixedPrecisionLeafState(
        init_tile(k, config.device, w.shape, w), jnp.zeros(w.shape, jnp.float32)))
    return MixedPrecisionState(jnp.int32(0), k_run, leaves)

  def update_fn(updates, state, params=None, *, count=None, **extra):
    del extra
    lr = base.learning_rate_at(learning_rate, state.count)
    keys = base.leaf_keys(jax.random.fold_in(state.key, state.count), params)
    commit = (base.schedule_count(state.count, count) + 1) % config.transfer_every == 0

    def one(g, leaf: MixedPrecisionLeafState, w, k):
      base.check_analog_gradient(g, w.shape)
      finite = jnp.all(jnp.isfinite(g.x)) & jnp.all(jnp.isfinite(g.d)) & jnp.isfinite(lr)
      chi = leaf.chi - jnp.where(finite, lr, 0) * jnp.matmul(g.d.T, jnp.where(finite, g.x, 0),
                                                              precision=jax.lax.Precision.HIGHEST)
      k_pulse, k_post = jax.random.split(k)

      def do_commit(args):
        tile, chi = args
        n = jnp.minimum(jnp.floor(jnp.abs(chi) / eps), config.max_pulses)
        tile = apply_pulse_counts(config.device, tile, n.astype(jnp.int32), chi > 0, k_pulse)
        return tile, chi - jnp.sign(chi) * n * eps

      tile, chi = jax.lax.cond(commit, do_commit, lambda a: a, (count_skipped(leaf.tile, finite), chi))
      tile = post_update_step(tile, config.device, k_post)
      return tile.weights - w, MixedPrecisionLeafState(tile, chi)

    new_updates, leaves = base.map_analog_leaves(one, updates, state.leaves, params, keys)
    return new_updates, MixedPrecisionState(state.count + 1, state.key, leaves)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
