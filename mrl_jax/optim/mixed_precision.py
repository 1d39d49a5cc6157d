"""Mixed precision (AIHWKit ``MixedPrecisionCompound``): a digital accumulator χ of the SGD increment,
committed to the analog tile through a stochastic pulse train, as AIHWKit 1.1.0 does it.

Per step ``χ += −lr·dᵀx`` (digital, float32). At every commit each crosspoint gets
``n = trunc(χ/ε)`` (``ε = granularity·dw_min``), χ keeps the remainder ``χ − n·ε``, and row i of the tile
receives one pulsed update with ``x = n_i`` (the row's counts), ``d = e_i`` (one-hot) and learning rate ε,
with update management and bit-length management forced on (AIHWKit ``MixedPrecRPUDeviceBase::setUpPar``,
``transfer``, ``MixedPrecRPUDevice::forwardUpdate``). The bit length of row i is then ``min(max_j |n_ij|, BL)``
and crosspoint j fires ``Binomial(BL_i, |n_ij|/max_j |n_ij|)`` pulses: exactly ``|n|`` when every non-zero count
of the row has the same magnitude (e.g. all ±1), a random count with mean ``|n|`` otherwise, and at most BL
(default 31) pulses; the excess of a count above BL is lost, as in AIHWKit. Each pulse has the device's
response, cycle-to-cycle noise and clipping.

Schedule: AIHWKit's CUDA path (which the reference scripts ran) adds the whole mini-batch to χ and commits when
its update counter, advanced by the batch size after the check, is a positive multiple of
``transfer_every·batch``: the first commit follows the second mini-batch (``transfer_every = 1``), then one per
``transfer_every`` mini-batches. (AIHWKit's CPU path checks row by row, so there the commit comes after the
first row of the next mini-batch.)
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mrl_jax import _checks as C
from mrl_jax import fmath
from mrl_jax.devices import PulsedDevice
from mrl_jax.optim import base
from mrl_jax.pulses import UpdateParameters
from mrl_jax.tile import TileState, count_skipped, init_tile, post_update_step, tile_update


@dataclasses.dataclass(frozen=True)
class MixedPrecision:
  """Mixed-precision settings.

  Attributes:
    device: analog device.
    granularity: threshold ε in units of the device's ``dw_min`` (AIHWKit ``granularity = 0``: ε = dw_min).
    transfer_every: commit χ every this many mini-batches, after updates ``k·transfer_every`` (k ≥ 1, counting
      from 0): AIHWKit never commits after the first one (module docstring).
    update: pulse parameters of the commit (AIHWKit takes the tile's ``UpdateParameters``); update management
      and bit-length management are forced on, as AIHWKit does.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (identical bits).
  """

  device: PulsedDevice
  granularity: float = 1.0
  transfer_every: int = 1
  update: UpdateParameters = UpdateParameters()
  engine: str = "auto"

  def __post_init__(self):
    C.check_fields(self, {"granularity": C.positive, "transfer_every": lambda o, n, v: C.integer(o, n, v, 1)})
    if not isinstance(self.update, UpdateParameters):
      raise TypeError(f"MixedPrecision.update must be UpdateParameters, got {type(self.update).__name__}")
    C.choice("MixedPrecision", "engine", self.engine, ("auto", "native", "jnp"))

  @property
  def commit_update(self) -> UpdateParameters:
    """The pulse parameters of a commit: ``update`` with UM and UBLM on."""
    return self.update.replace(update_management=True, update_bl_management=True)

  def replace(self, **changes) -> "MixedPrecision":
    return dataclasses.replace(self, **changes)


class MixedPrecisionLeafState(NamedTuple):
  """Device state of one analog weight ``[out, in]`` under mixed precision.

  Attributes:
    tile: the analog ``TileState`` (its weights are the visible ones).
    chi: ``float32[out, in]`` digital accumulator χ of ``−lr·dᵀx`` not yet committed, in weight units
      (AIHWKit's ``hidden_weights_chi`` with the opposite sign: AIHWKit accumulates ``+lr·dᵀx``).
  """

  tile: TileState
  chi: jax.Array


def commit_counts(chi, eps):
  """AIHWKit's split of χ into whole steps: ``(n, χ')`` with ``n = trunc(χ/ε)`` and ``χ' = χ − n·ε``.

  Args:
    chi: float32 accumulator ``[out, in]``.
    eps: float32 threshold ε (weight units).

  Returns:
    ``n`` (float32, integral values) and the remainder, as float32 operations without contraction (AIHWKit
    ``truncf(value / granularity)``, ``value − dw·granularity``).
  """
  fence = fmath.fence_from(chi)
  n = jnp.trunc(chi / fence(jnp.full(chi.shape, eps, jnp.float32)))
  return n, chi - fence(n * eps)


def commit(config: MixedPrecision, tile: TileState, n, key) -> TileState:
  """Commits counts ``n [out, in]`` through one pulse train per row (x = the row's counts, d = one-hot, lr = ε).

  The rows are one batch of the pulsed update: batch row i has ``d = −e_i`` (``W −= lr·dᵀx`` then moves row i
  by ``+n_i·ε`` on average) and touches weight row i only, so the rows' order is immaterial.
  """
  eps = jnp.float32(config.granularity * config.device.dw_min)
  out = n.shape[0]
  d = -jnp.eye(out, dtype=jnp.float32)
  return tile_update(tile, config.device, config.commit_update, n, d, eps, key, engine=config.engine)


def mixed_precision(config: MixedPrecision, learning_rate: base.ScalarOrSchedule, key=0):
  """Mixed-precision training of every analog weight (see the module docstring).

  Returns:
    ``optax.GradientTransformationExtraArgs`` over ``base.AnalogState`` (leaves ``MixedPrecisionLeafState``).
  """
  eps = jnp.float32(config.granularity * config.device.dw_min)

  def step_leaf(leaf: MixedPrecisionLeafState, g, info: base.StepInfo, k) -> MixedPrecisionLeafState:
    lr = info.lr
    # AIHWKit (CUDA): checked before the counter advances (info.step − 1 updates before this one), never at 0.
    done = info.step - 1
    do_commit = (done > 0) & (done % config.transfer_every == 0)
    finite = jnp.all(jnp.isfinite(g.x)) & jnp.all(jnp.isfinite(g.d)) & jnp.isfinite(lr)
    # Non-finite operands are zeroed as well as the rate: 0·inf would still poison χ.
    chi = leaf.chi - jnp.where(finite, lr, 0) * jnp.matmul(
        jnp.where(finite, g.d, 0).T, jnp.where(finite, g.x, 0), precision=jax.lax.Precision.HIGHEST)
    k_pulse, k_post = jax.random.split(k)

    def do(args):
      tile, chi = args
      n, chi = commit_counts(chi, eps)
      return commit(config, tile, n, k_pulse), chi

    tile, chi = jax.lax.cond(do_commit, do, lambda a: a, (count_skipped(leaf.tile, finite), chi))
    return MixedPrecisionLeafState(post_update_step(tile, config.device, k_post), chi)

  init_leaf = lambda w, k: MixedPrecisionLeafState(init_tile(k, config.device, w.shape, w),
                                                   jnp.zeros(w.shape, jnp.float32))
  return base.per_weight("mixed_precision", learning_rate, key, init_leaf=init_leaf, step_leaf=step_leaf,
                         visible=visible_leaf)


def visible_leaf(leaf: MixedPrecisionLeafState) -> jax.Array:
  """The visible weight of one analog weight: its tile's weights (χ is digital, not part of it)."""
  return leaf.tile.weights


def visible_weights(config: MixedPrecision, state: base.AnalogState):
  """The visible weights of every analog weight of a ``mixed_precision`` state (a tree shaped like the params)."""
  del config  # one tile per weight: its weights are the visible ones
  return base.map_leaves(visible_leaf, state)
