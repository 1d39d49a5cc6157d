"""Transfer compounds as optax transformations: TT-v1, multi-tile residual learning (MRL) with warm
start, and the buffered TT-v2 — AIHWKit's ``TransferCompound`` / ``BufferedTransferCompound``.

Tile index 0 is the least significant ("fast") tile that receives the gradient; tile ``K − 1`` is the
most significant. (The MRL paper numbers tiles the other way: paper tile ``n = K − 1 − k``.) The visible
weight is ``W̄ = Σ_k γ_k W_k`` with ``γ_k = γ^(K−1−k)``; ``γ = 0`` gives AIHWKit's "fully hidden" TT-v1
where ``W̄ = W_{K−1}``.

Per mini-batch (``step`` counts mini-batches; AIHWKit counts rows and converts):
  1. pulsed gradient write ``W_0 −= pc_lr·dᵀx``, one cycle per row, ``pc_lr = fast_lr`` (absolute, as in
     AIHWKit 1.1.0; ``scale_fast_lr`` multiplies it by the SGD lr as in 1.2.0);
  2. transfers: the warm-start hop while the warm-start target is ≥ 0, afterwards the cascade
     ``k → k+1`` every ``transfer_every[k]`` mini-batches at rate ``transfer_lr[k]`` (× SGD lr when
     ``scale_transfer_lr``). ``_warm_hop`` states the warm-start modes; ``expected_schedule`` in
     ``tests/test_algorithms.py`` writes the whole schedule out as plain Python.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mrl_jax import _checks as C
from mrl_jax.analog_state import analog_states, map_analog_states
from mrl_jax.devices import PulsedDevice
from mrl_jax.io import IOParameters, analog_mvm
from mrl_jax.optim import base
from mrl_jax.optim.plateau import MNIST_RULE, PlateauRule, PlateauState, plateau_init, plateau_update
from mrl_jax.pulses import UpdateParameters
from mrl_jax.tile import init_tile, post_update_step, tile_update
from mrl_jax.transfer import one_hot_lines, transfer, transfer_read_io
from mrl_jax.update import Engine

WARM_START_MODES = ("none", "direct", "via_tile1", "cuda_exact")


@dataclasses.dataclass(frozen=True)
class BufferSettings:
  """TT-v2 digital transfer buffer (AIHWKit ``BufferedTransferCompound``, Python defaults).

  Attributes:
    thres_scale: threshold in units of the destination's granularity.
    step: pulse size of a committed transfer in units of the destination's granularity.
    momentum: fraction of the buffer kept after a commit.
    forget_buffer: after a commit keep ``momentum·H`` (True) or subtract the committed amount.
  """

  thres_scale: float = 1.0
  step: float = 1.0
  momentum: float = 0.1
  forget_buffer: bool = True

  def __post_init__(self):
    C.check_fields(self, {"thres_scale": C.positive, "step": C.positive,
                          "momentum": lambda o, n, v: C.in_range(o, n, v, 0.0, 1.0), "forget_buffer": C.boolean})


@dataclasses.dataclass(frozen=True)
class TransferCompound:
  """Configuration of a K-tile transfer compound (static under ``jit``).

  Attributes:
    device: device of every tile (``fast_device`` overrides tile 0).
    n_tiles: K ≥ 2.
    gamma: geometric significance; ``gamma_vec[k] = gamma**(K−1−k)`` unless ``gamma_vec`` is given.
    transfer_every: K periods T_k in mini-batches (the last belongs to the top tile and is unused).
    transfer_lr: K transfer rates η_k, indexed by the source tile.
    scale_transfer_lr: multiply η_k by the current SGD learning rate.
    fast_lr: rate of the gradient write onto tile 0 (absolute); None means "use the SGD lr" (AIHWKit's 0,
      which is stored as None).
    scale_fast_lr: multiply ``fast_lr`` by the SGD learning rate (AIHWKit ≥ 1.2 behaviour).
    n_reads_per_transfer: columns (rows) moved per transfer event.
    transfer_columns: read columns (forward pass) rather than rows (backward pass).
    update, transfer_update: pulse parameters of the gradient write and of transfer writes.
    transfer_io: I/O of the transfer read (noise and bound management are forced off).
    warm_start: ``none`` | ``direct`` | ``via_tile1`` | ``cuda_exact``.
    plateau: rule of the warm-start switch trigger.
    buffer: ``BufferSettings`` for TT-v2 (buffered, thresholded transfers), else None.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp``.
  """

  device: PulsedDevice
  n_tiles: int = 2
  gamma: float = 0.0
  gamma_vec: Optional[tuple] = None
  transfer_every: tuple = (1.0, 0.0)
  transfer_lr: tuple = (1.0, 1.0)
  scale_transfer_lr: bool = True
  fast_lr: Optional[float] = 1.0
  scale_fast_lr: bool = False
  n_reads_per_transfer: int = 1
  transfer_columns: bool = True
  update: UpdateParameters = UpdateParameters()
  transfer_update: UpdateParameters = UpdateParameters()
  transfer_io: IOParameters = IOParameters()
  warm_start: str = "none"
  plateau: PlateauRule = MNIST_RULE
  buffer: Optional[BufferSettings] = None
  fast_device: Optional[PulsedDevice] = None
  engine: str = "auto"

  def __post_init__(self):
    owner = "TransferCompound"
    C.integer(owner, "n_tiles", self.n_tiles, 2, 32)
    C.finite(owner, "gamma", self.gamma)
    if not 0 <= self.gamma <= 1:
      raise ValueError(f"{owner}.gamma = {self.gamma} is invalid: allowed range is [0, 1]")
    K = self.n_tiles
    for name in ("transfer_every", "transfer_lr") + (("gamma_vec",) if self.gamma_vec is not None else ()):
      vec = tuple(float(v) for v in getattr(self, name))
      object.__setattr__(self, name, vec)
      if len(vec) != K:
        raise ValueError(f"{owner}.{name} has {len(vec)} entries: allowed is exactly n_tiles = {K}")
      for v in vec:
        C.non_negative(owner, name, v)
    for k, t in enumerate(self.transfer_every[:-1]):
      if t != int(t) or t < 1:
        raise ValueError(f"{owner}.transfer_every[{k}] = {t} is invalid: allowed range is whole mini-batches >= 1")
    C.check_fields(self, {"scale_transfer_lr": C.boolean, "fast_lr": C.optional_rate, "scale_fast_lr": C.boolean,
                          "n_reads_per_transfer": lambda o, n, v: C.integer(o, n, v, 1),
                          "transfer_columns": C.boolean,
                          "warm_start": lambda o, n, v: C.choice(o, n, v, WARM_START_MODES),
                          "engine": lambda o, n, v: C.choice(o, n, v, ("auto", "native", "jnp"))})
    if self.fast_lr == 0:
      object.__setattr__(self, "fast_lr", None)
    if self.warm_start != "none" and K < 3:
      raise ValueError(f"{owner}.warm_start = {self.warm_start!r} needs n_tiles >= 3, got {K}")
    if self.buffer is not None and self.n_reads_per_transfer != 1:
      raise ValueError(f"{owner}.n_reads_per_transfer = {self.n_reads_per_transfer}: allowed is 1 with a buffer")
    for name in ("device", "fast_device"):
      dev = getattr(self, name)
      if dev is not None and not isinstance(dev, PulsedDevice):
        raise TypeError(f"{owner}.{name} must be a PulsedDevice, got {type(dev).__name__}")

  @property
  def gammas(self) -> tuple:
    """``gamma_vec`` (least significant first)."""
    if self.gamma_vec is not None:
      return self.gamma_vec
    return tuple(float(self.gamma) ** (self.n_tiles - 1 - k) for k in range(self.n_tiles))

  def device_of(self, k: int) -> PulsedDevice:
    return self.fast_device if (k == 0 and self.fast_device is not None) else self.device

  @property
  def gradient_granularity(self) -> float:
    """Granularity of the gradient write's update management: the mean over all K tiles' devices.

    AIHWKit's meta parameter (``TransferRPUDeviceMetaParameter::calcWeightGranularity``) names the fast device's,
    but ``VectorRPUDevice::populate`` then sets the compound's granularity to the mean over its devices, and the
    pulsed update reads that value (CUDA copies it). Measured against AIHWKit 1.1.0 with a fast device that
    differs from the others: ``tests/fixtures/aihwkit_compound_granularity.npz``.
    """
    return sum(self.device_of(k).granularity for k in range(self.n_tiles)) / self.n_tiles

  @property
  def cuda_like(self) -> bool:
    return self.warm_start in ("via_tile1", "cuda_exact")

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


class CompoundLeafState(NamedTuple):
  """Device state of one analog weight under a transfer compound.

  Attributes:
    tiles: list of K ``TileState`` (index 0 = fast tile).
    ptr: int32[K] next line to read from each source tile.
    buffer: float32[K−1, out, in] TT-v2 buffers (``None`` without a buffer).
  """

  tiles: list
  ptr: jax.Array
  buffer: Optional[jax.Array]


class WarmStartState(NamedTuple):
  """The warm-start phase of a transfer compound: one for all of its weights (``AnalogState.shared``).

  Attributes:
    target: int32 warm-start target tile; −1 once warm start is over (or disabled).
    pending: bool, a switch requested (``request_switch``) for the next update.
    plateau: the controller that requests switches from the epoch losses.
  """

  target: jax.Array
  pending: jax.Array
  plateau: PlateauState


def init_warm_start(cfg: TransferCompound) -> WarmStartState:
  """Target the most significant tile (no target without a warm start), nothing pending."""
  return WarmStartState(target=jnp.int32(cfg.n_tiles - 1 if cfg.warm_start != "none" else -1),
                        pending=jnp.bool_(False), plateau=plateau_init(cfg.plateau))


def step_warm_start(cfg: TransferCompound, state: WarmStartState, epoch_loss) -> WarmStartState:
  """Moves the target down one tile when a switch is pending or the plateau controller requests one."""
  switch, plateau = plateau_update(cfg.plateau, state.plateau, epoch_loss)
  pending = state.pending | switch
  target = jnp.where(pending & (state.target >= 0), state.target - 1, state.target)
  return WarmStartState(target=target, pending=jnp.bool_(False), plateau=plateau)


def visible_leaf(cfg: TransferCompound, leaf: CompoundLeafState) -> jax.Array:
  """The visible weight of one analog weight, ``W̄ = Σ_k γ_k W_k`` from the apparent tile weights."""
  out = None
  for k, g in enumerate(cfg.gammas):
    if g == 0:
      continue
    term = leaf.tiles[k].weights if g == 1 else jnp.float32(g) * leaf.tiles[k].weights
    out = term if out is None else out + term
  return out if out is not None else jnp.zeros_like(leaf.tiles[0].weights)


def init_leaf(cfg: TransferCompound, key, weights) -> CompoundLeafState:
  """Programs ``weights`` into the most significant tile (clipped per crosspoint), others zero."""
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim != 2:
    raise ValueError(f"analog weights must be [out, in], got shape {weights.shape}")
  K = cfg.n_tiles
  keys = jax.random.split(key, K)
  top = weights / jnp.float32(cfg.gammas[-1]) if cfg.gammas[-1] not in (0.0, 1.0) else weights
  tiles = [init_tile(keys[k], cfg.device_of(k), weights.shape, top if k == K - 1 else None) for k in range(K)]
  buffer = jnp.zeros((K - 1,) + weights.shape, jnp.float32) if cfg.buffer is not None else None
  return CompoundLeafState(tiles=tiles, ptr=jnp.zeros((K,), jnp.int32), buffer=buffer)


# ---- transfers ------------------------------------------------------------------------------------

def _line_count(cfg: TransferCompound, shape) -> int:
  return shape[1] if cfg.transfer_columns else shape[0]


def _plain_transfer(cfg, leaf, src: int, dst: int, lr_t, key):
  size = _line_count(cfg, leaf.tiles[src].weights.shape)
  start = leaf.ptr[src]
  new_dst = transfer(leaf.tiles[src], leaf.tiles[dst], start, lr_t, key, n_reads=cfg.n_reads_per_transfer,
                     columns=cfg.transfer_columns, read_io=cfg.transfer_io, device=cfg.device_of(dst),
                     update=cfg.transfer_update, engine=cfg.engine)
  tiles = list(leaf.tiles)
  tiles[dst] = new_dst
  ptr = leaf.ptr.at[src].set((start + cfg.n_reads_per_transfer) % size)
  return leaf._replace(tiles=tiles, ptr=ptr)


def _buffered_transfer(cfg, leaf, src: int, dst: int, lr_t, key):
  """TT-v2: accumulate the read in the buffer H_src; commit whole device steps of the destination."""
  buf = cfg.buffer
  dst_dev = cfg.device_of(dst)
  k_read, k_write = jax.random.split(key)
  w_src = leaf.tiles[src].weights
  size = _line_count(cfg, w_src.shape)
  c = leaf.ptr[src]
  g_from, g_to = cfg.gammas[src], cfg.gammas[dst]
  lr_t = lr_t * jnp.float32(g_from / g_to if (g_from > 0 and g_to > 0) else 1.0)
  probe = one_hot_lines(c, 1, size)
  io = transfer_read_io(cfg.transfer_io)
  y = analog_mvm(w_src, probe, io, k_read, transposed=not cfg.transfer_columns)[0]  # +W[:, c]
  thr = jnp.float32(buf.thres_scale * dst_dev.granularity)
  max_n = jnp.float32(cfg.transfer_update.desired_bl)
  h = leaf.buffer[src]
  h_line = h[:, c] if cfg.transfer_columns else h[c, :]
  omega = h_line + y * jnp.abs(lr_t)
  n = jnp.clip(jnp.trunc(omega / thr), -max_n, max_n)
  kept = omega * jnp.float32(buf.momentum) if buf.forget_buffer else omega - jnp.float32(1 - buf.momentum) * n * thr
  h_line = jnp.where(n != 0, kept, omega)
  h = h.at[:, c].set(h_line) if cfg.transfer_columns else h.at[c, :].set(h_line)
  d = -n
  x, dd = (probe, d[None, :]) if cfg.transfer_columns else (d[None, :], probe)
  write = lambda t: tile_update(t, dst_dev, cfg.transfer_update, x, dd, jnp.float32(buf.step * dst_dev.granularity),
                                k_write, engine=cfg.engine)
  new_dst = jax.lax.cond(jnp.any(n != 0), write, lambda t: t, leaf.tiles[dst])
  tiles = list(leaf.tiles)
  tiles[dst] = new_dst
  return leaf._replace(tiles=tiles, ptr=leaf.ptr.at[src].set((c + 1) % size), buffer=leaf.buffer.at[src].set(h))


def _transfer(cfg, leaf, src: int, dst: int, lr_t, key):
  if src == dst:
    return leaf  # self transfers are skipped (AIHWKit CPU)
  if cfg.buffer is not None:
    return _buffered_transfer(cfg, leaf, src, dst, lr_t, key)
  return _plain_transfer(cfg, leaf, src, dst, lr_t, key)


def _self_transfer_quirk(cfg, leaf, src: int, lr_t, key):
  """The reference CUDA code's unguarded 1 → 1 transfer (``cuda_exact`` only)."""
  return _plain_transfer(cfg, leaf, src, src, lr_t, key)


def _written(leaf: CompoundLeafState, writes: tuple) -> tuple:
  """What a transfer into the tiles ``writes`` may change: their weights and skip counters, pointers, buffers."""
  return [(leaf.tiles[k].weights, leaf.tiles[k].persistent, leaf.tiles[k].skipped) for k in writes], leaf.ptr, leaf.buffer


def _with_written(leaf: CompoundLeafState, writes: tuple, parts) -> CompoundLeafState:
  changed, ptr, buffer = parts
  tiles = list(leaf.tiles)
  for k, (weights, persistent, skipped) in zip(writes, changed):
    tiles[k] = tiles[k]._replace(weights=weights, persistent=persistent, skipped=skipped)
  return leaf._replace(tiles=tiles, ptr=ptr, buffer=buffer)


def _when(pred, fn, leaf):
  return jax.lax.cond(pred, fn, lambda l: l, leaf)


def _masked(active, fn, leaf: CompoundLeafState, writes: tuple) -> CompoundLeafState:
  """``fn(leaf)`` where ``active``, else ``leaf``: a select of what a transfer into ``writes`` changes.

  The warm-start phase differs per seed under vmap, so a phase-dependent ``lax.cond`` would become a select
  over all of its operands (every tile's device parameters included) in every step. Transfers are rare, so
  computing one and selecting only the written tiles, pointers and buffers is far cheaper.
  """
  new, old = _written(fn(leaf), writes), _written(leaf, writes)
  pick = lambda n, o: None if o is None else jnp.where(active, n, o)
  return _with_written(leaf, writes, jax.tree.map(pick, new, old, is_leaf=lambda x: x is None))


def _warm_hop(cfg: TransferCompound, leaf: CompoundLeafState, src: int, rate, key, target) -> CompoundLeafState:
  """The warm-start transfer from ``src`` into the ``target`` tile (none once the target is −1).

  Targets ``lo … K−1``: ``lo`` = 1 for ``direct``, 2 for ``via_tile1`` and 0 for ``cuda_exact`` (the
  reference CUDA code hops from tile 1 into any target, 1 → 1 being its unguarded self transfer). At target 0,
  ``direct`` writes nothing but still moves tile 0's read pointer, as the fork's CPU code does: its
  ``transfer(0, 0)`` returns before reading (``readAndUpdate``'s self-transfer guard) but ``transfer`` then
  advances ``current_slice_indices_[0]`` (``rpu_transfer_device.cpp`` lines 444–447 and 511), so the cascade's
  first 0 → 1 read starts at a shifted column.
  """
  lo = {"direct": 1, "via_tile1": 2, "cuda_exact": 0}[cfg.warm_start]
  for dst in range(lo, cfg.n_tiles):
    hop = (lambda l: _self_transfer_quirk(cfg, l, src, rate, key)) if dst == src else \
          (lambda l, dst=dst: _transfer(cfg, l, src, dst, rate, key))
    leaf = _masked(target == dst, hop, leaf, (dst,))
  if cfg.warm_start == "direct":
    size = _line_count(cfg, leaf.tiles[0].weights.shape)
    moved = leaf.ptr.at[0].set((leaf.ptr[0] + min(cfg.n_reads_per_transfer, size)) % size)
    leaf = leaf._replace(ptr=jnp.where(target == 0, moved, leaf.ptr))
  return leaf



def _rates(cfg: TransferCompound, sgd_lr):
  scale = sgd_lr if cfg.scale_transfer_lr else jnp.float32(1)
  return [jnp.float32(eta) * scale for eta in cfg.transfer_lr]


def step_leaf(cfg: TransferCompound, leaf: CompoundLeafState, grad: base.AnalogGradient, sgd_lr, target, key, step):
  """One mini-batch of a transfer compound for one analog weight.

  Args:
    leaf: the weight's device state.
    grad: its ``AnalogGradient``.
    sgd_lr: float32 current SGD learning rate.
    target: int32 warm-start target of this step (``WarmStartState.target`` after ``step_warm_start``).
    key: PRNG key of this step and weight.
    step: int32 number of this mini-batch (1 for the first); drives the transfer schedule.

  Returns:
    the new leaf state.
  """
  K = cfg.n_tiles
  keys = iter(jax.random.split(key, 2 * K + 4))
  if cfg.fast_lr is None:
    pc_lr = sgd_lr
  else:
    pc_lr = jnp.float32(cfg.fast_lr) * (sgd_lr if cfg.scale_fast_lr else jnp.float32(1))
  tiles = list(leaf.tiles)
  tiles[0] = tile_update(tiles[0], cfg.device_of(0), cfg.update, grad.x, grad.d, pc_lr, next(keys),
                         engine=cfg.engine, dw=cfg.gradient_granularity)
  leaf = leaf._replace(tiles=tiles)
  eta = _rates(cfg, sgd_lr)
  period = [int(t) for t in cfg.transfer_every]
  due = lambda k: (step % period[k]) == 0

  if cfg.cuda_like:  # CUDA reference: 0 → 1 every T_0, in both phases
    leaf = _when(due(0), lambda l: _transfer(cfg, l, 0, 1, eta[0], next(keys)), leaf)

  if cfg.warm_start == "none":
    for k in range(K - 1):
      leaf = _when(due(k), lambda l, k=k: _transfer(cfg, l, k, k + 1, eta[k], next(keys)), leaf)
    return post_update(cfg, leaf, next(keys))

  # Both phases are written as masked transfers so that a phase differing per vmapped seed stays cheap.
  warm = target >= 0
  src, rate = (0, eta[0]) if cfg.warm_start == "direct" else (1, eta[1])
  k_hop = next(keys)
  leaf = _when(due(1), lambda l: _warm_hop(cfg, l, src, rate, k_hop, target), leaf)
  keys_c = jax.random.split(next(keys), K)
  for k in range(1 if cfg.cuda_like else 0, K - 1):
    transfer_k = lambda x, k=k: _transfer(cfg, x, k, k + 1, eta[k], keys_c[k])
    leaf = _when(due(k), lambda l, k=k, fn=transfer_k: _masked(~warm, fn, l, (k + 1,)), leaf)
  return post_update(cfg, leaf, next(keys))


def post_update(cfg: TransferCompound, leaf: CompoundLeafState, key) -> CompoundLeafState:
  """Diffusion and decay of every tile once per step (AIHWKit ``post_update_step``)."""
  keys = jax.random.split(key, cfg.n_tiles)
  return leaf._replace(tiles=[post_update_step(t, cfg.device_of(k), keys[k]) for k, t in enumerate(leaf.tiles)])


def transfer_compound(config: TransferCompound, learning_rate: base.ScalarOrSchedule = 1.0, *, key,
                      engine: Optional[Engine] = None) -> optax.GradientTransformationExtraArgs:
  """An optax transformation running ``config`` on every analog weight.

  Args:
    config: the compound configuration.
    learning_rate: SGD learning rate or schedule (scales transfers when ``scale_transfer_lr``, and the
      gradient write when ``fast_lr`` is None or ``scale_fast_lr``).
    key: PRNG key or integer seed of the device parameters (construction) and of all pulses.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (None: ``config.engine``).

  Returns:
    ``optax.GradientTransformationExtraArgs`` over ``base.AnalogState`` (leaves ``CompoundLeafState``, shared
    ``WarmStartState``). ``update(grads, state, params, epoch_loss=nan, count=None)``:
    pass the previous epoch's mean training loss on the first step of each epoch (NaN otherwise) to drive
    the warm-start plateau controller. ``count`` (see ``base.schedule_count``) is the number of updates
    before this one, shared by all instances when vmapping over device seeds.
  """
  if engine is not None:
    config = config.replace(engine=engine)

  def step_shared(warm: WarmStartState, extra: dict):
    warm = step_warm_start(config, warm, extra.get("epoch_loss", jnp.nan))
    return warm, warm.target

  return base.per_weight(
      "transfer_compound", learning_rate, key, init_leaf=lambda w, k: init_leaf(config, k, w),
      step_leaf=lambda leaf, g, info, k: step_leaf(config, leaf, g, info.lr, info.phase, k, info.step),
      visible=lambda leaf: visible_leaf(config, leaf), init_shared=lambda: init_warm_start(config),
      step_shared=step_shared)


def visible_weights(config: TransferCompound, state: base.AnalogState):
  """The visible weights of every analog weight of a ``transfer_compound`` state (a tree shaped like the params)."""
  return base.map_leaves(lambda leaf: visible_leaf(config, leaf), state)


def warm_start(opt_state) -> Optional[WarmStartState]:
  """The warm-start phase of the first transfer compound in ``opt_state`` (any optimizer or training state:
  ``optax.partition``, ``chain``, vmapped seeds), or None when it holds none."""
  found = [s.shared for s in analog_states(opt_state) if isinstance(s.shared, WarmStartState)]
  return found[0] if found else None


def warm_start_target(opt_state) -> Optional[jax.Array]:
  """The warm-start target tile of the first transfer compound in ``opt_state`` (−1 in the cascade or without a
  warm start; one per seed under vmap), or None when it holds none."""
  warm = warm_start(opt_state)
  return None if warm is None else warm.target


def request_switch(opt_state, requested: bool = True):
  """Sets the pending warm-start switch of every transfer compound in ``opt_state``: True moves the target down
  one tile in the next update, False cancels a pending request.

  The host-side alternative to passing ``epoch_loss`` to ``update`` (e.g. a custom plateau rule), with the
  reference's ``tile.set_flags`` semantics: the flag is overwritten, so ``False`` after ``True`` (before the next
  update) cancels, several ``True`` are one switch, and once the cascade runs (target −1) requests do nothing.

  Args:
    opt_state: an optimizer state holding ``transfer_compound`` states, at any depth (``nnx.Optimizer.opt_state``,
      an ``optax.partition`` state, a training state).
    requested: the flag to store.

  Returns:
    ``opt_state`` with the flag set; everything else unchanged.
  """
  C.boolean("request_switch", "requested", requested)

  def one(state):
    if not isinstance(state.shared, WarmStartState):
      return state
    # full_like keeps what holds the flag: a batch of seeds, or the mutable array of an nnx.Optimizer's state.
    pending = jax.tree.map(lambda p: jnp.full_like(p, requested), state.shared.pending)
    return state._replace(shared=state.shared._replace(pending=pending))

  return map_analog_states(one, opt_state)
