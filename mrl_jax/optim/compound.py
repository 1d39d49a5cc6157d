"""Transfer compounds as optax transformations: TT-v1, multi-tile residual learning (MRL) with warm
start, and the buffered TT-v2 — AIHWKit's ``TransferCompound`` / ``BufferedTransferCompound``.

Tile index 0 is the least significant ("fast") tile that receives the gradient; tile ``K − 1`` is the
most significant. (The MRL paper numbers tiles the other way: paper tile ``n = K − 1 − k``.) The visible
weight is ``W̄ = Σ_k γ_k W_k`` with ``γ_k = γ^(K−1−k)``; ``γ = 0`` gives AIHWKit's "fully hidden" TT-v1
where ``W̄ = W_{K−1}``.

Per mini-batch (periods in mini-batches; with ``units_in_mbatch=False`` in rows, transfers inside the
mini-batch right after their row: ``_step_rows``):
  1. pulsed gradient write ``W_0 −= pc_lr·dᵀx``, one cycle per row, ``pc_lr = fast_lr`` (absolute, as in
     AIHWKit 1.1.0; ``scale_fast_lr`` multiplies it by the SGD lr as in 1.2.0);
  2. transfers: the warm-start hop while the warm-start target is ≥ 0, afterwards the cascade
     ``k → k+1`` every ``transfer_every[k]`` mini-batches at rate ``transfer_lr[k]`` (× SGD lr when
     ``scale_transfer_lr``). ``_warm_hop`` states the warm-start modes; ``expected_schedule`` in
     ``tests/test_algorithms.py`` writes the whole schedule out as plain Python.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mrl_jax import _checks as C
from mrl_jax.analog_state import analog_states, map_analog_states
from mrl_jax.devices import PulsedDevice
from mrl_jax.io import IOParameters, analog_mvm
from mrl_jax.optim import base
from mrl_jax.optim.plateau import MNIST_RULE, PlateauRule, PlateauState, plateau_init, plateau_update
from mrl_jax.pulses import SINGLE_PULSE_UPDATE, UpdateParameters
from mrl_jax.tile import count_skipped, init_tile, post_update_step, reset_columns, tile_update
from mrl_jax.transfer import one_hot_lines, transfer, transfer_read_io
from mrl_jax.update import Engine, operands_finite

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

  Defaults are AIHWKit 1.1.0's ``TransferCompound`` Python defaults, and with a ``buffer`` its
  ``BufferedTransferCompound`` ones.

  Attributes:
    device: one device for every tile, or a sequence of K devices, least significant first (AIHWKit's
      ``unit_cell_devices``; 1.1.0 itself uses only the first two and replicates the second).
    n_tiles: K ≥ 2; None takes the length of a device sequence, else 2.
    gamma: geometric significance; ``gamma_vec[k] = gamma**(K−1−k)`` unless ``gamma_vec`` is given.
    gamma_vec: K significances, least significant first.
    transfer_every: K periods T_k (the last belongs to the top tile and is never used), or one number T for
      AIHWKit's default ``T·q^k`` with ``q = out_size / n_reads_per_transfer`` per weight of shape
      ``[out_size, in_size]`` (so ``T`` alone for two tiles). Mini-batches when ``units_in_mbatch``, else rows.
    units_in_mbatch: count ``transfer_every`` in mini-batches (whole ones); False counts rows of the update
      (AIHWKit rounds to whole rows), so a transfer fires right after its row, inside the mini-batch. For a
      convolution the rows are its patches. The gradient is then written in chunks of the periods' greatest
      common divisor (one chunk when every period is a multiple of the rows per update).
    transfer_lr: K transfer rates η_k, indexed by the source tile, or one rate for every tile.
    scale_transfer_lr: multiply η_k by the current SGD learning rate.
    fast_lr: rate of the gradient write onto tile 0 (absolute); None means "use the SGD lr" (AIHWKit's 0,
      which is stored as None).
    scale_fast_lr: multiply ``fast_lr`` by the SGD learning rate (AIHWKit ≥ 1.2 behaviour).
    n_reads_per_transfer: columns (rows) moved per transfer event.
    transfer_columns: read columns (forward pass) rather than rows (backward pass).
    random_selection: read a uniformly random column (row) at every transfer instead of cycling through them.
    with_reset_prob: probability that the source column is reset after it was read (each crosspoint to its
      reset value plus ``reset_std`` noise, clipped to its bounds); columns only, one read per transfer,
      no buffer (AIHWKit's buffered compound ignores it).
    update: pulse parameters of the gradient write.
    transfer_update: pulse parameters of transfer writes; None is AIHWKit's default, ``UpdateParameters()``
      (BL 31 with update management), or one pulse per device step (``SINGLE_PULSE_UPDATE``) with a buffer.
    transfer_io: I/O of the transfer read (noise and bound management are forced off).
    warm_start: ``none`` | ``direct`` | ``via_tile1`` | ``cuda_exact`` (periods in mini-batches only).
    plateau: rule of the warm-start switch trigger.
    buffer: ``BufferSettings`` for TT-v2 (buffered, thresholded transfers), else None.
    fast_device: overrides tile 0's device when ``device`` is a single device.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp``.

  AIHWKit's ``no_self_transfer`` has no counterpart: the top tile never transfers (its transfer to itself
  returns before reading in AIHWKit 1.1.0, so the flag changes nothing there either).
  """

  device: Union[PulsedDevice, Sequence[PulsedDevice]]
  n_tiles: Optional[int] = None
  gamma: float = 0.0
  gamma_vec: Optional[tuple] = None
  transfer_every: Union[float, tuple] = 1.0
  units_in_mbatch: bool = True
  transfer_lr: Union[float, tuple] = 1.0
  scale_transfer_lr: bool = True
  fast_lr: Optional[float] = 1.0
  scale_fast_lr: bool = False
  n_reads_per_transfer: int = 1
  transfer_columns: bool = True
  random_selection: bool = False
  with_reset_prob: float = 0.0
  update: UpdateParameters = UpdateParameters()
  transfer_update: Optional[UpdateParameters] = None
  transfer_io: IOParameters = IOParameters()
  warm_start: str = "none"
  plateau: PlateauRule = MNIST_RULE
  buffer: Optional[BufferSettings] = None
  fast_device: Optional[PulsedDevice] = None
  engine: str = "auto"

  def __post_init__(self):
    owner = "TransferCompound"
    self._check_devices(owner)
    K = self.n_tiles
    C.finite(owner, "gamma", self.gamma)
    if not 0 <= self.gamma <= 1:
      raise ValueError(f"{owner}.gamma = {self.gamma} is invalid: allowed range is [0, 1]")
    for name in ("transfer_every", "transfer_lr", "gamma_vec"):
      value = getattr(self, name)
      if value is None:
        continue
      if isinstance(value, (int, float)) and name != "gamma_vec":
        C.non_negative(owner, name, value)
        if name == "transfer_lr":
          value = (float(value),) * K
        elif K == 2:  # the shorthand's periods depend on the weight's shape only from the third tile on
          value = (float(value), 0.0)
        object.__setattr__(self, name, value if isinstance(value, tuple) else float(value))
        continue
      vec = tuple(float(v) for v in value)
      object.__setattr__(self, name, vec)
      if len(vec) != K:
        raise ValueError(f"{owner}.{name} has {len(vec)} entries: allowed is exactly n_tiles = {K}"
                         + ("" if name == "gamma_vec" else " (or one number)"))
      for v in vec:
        C.non_negative(owner, name, v)
    C.check_fields(self, {"units_in_mbatch": C.boolean, "scale_transfer_lr": C.boolean,
                          "fast_lr": C.optional_rate, "scale_fast_lr": C.boolean,
                          "n_reads_per_transfer": lambda o, n, v: C.integer(o, n, v, 1),
                          "transfer_columns": C.boolean, "random_selection": C.boolean,
                          "with_reset_prob": lambda o, n, v: C.in_range(o, n, v, 0.0, 1.0),
                          "warm_start": lambda o, n, v: C.choice(o, n, v, WARM_START_MODES),
                          "engine": lambda o, n, v: C.choice(o, n, v, ("auto", "native", "jnp"))})
    if isinstance(self.transfer_every, tuple) and self.units_in_mbatch:
      for k, t in enumerate(self.transfer_every[:-1]):
        _check_whole_batches(k, t)
    if self.fast_lr == 0:
      object.__setattr__(self, "fast_lr", None)
    if self.warm_start != "none" and K < 3:
      raise ValueError(f"{owner}.warm_start = {self.warm_start!r} needs n_tiles >= 3, got {K}")
    if self.warm_start != "none" and not self.units_in_mbatch:
      raise ValueError(f"{owner}.units_in_mbatch = False is invalid with warm_start = {self.warm_start!r}: the warm "
                       "start's periods count mini-batches, allowed is True")
    if self.buffer is not None and self.n_reads_per_transfer != 1:
      raise ValueError(f"{owner}.n_reads_per_transfer = {self.n_reads_per_transfer}: allowed is 1 with a buffer")
    if self.with_reset_prob > 0:
      for name, ok, allowed in (("transfer_columns", self.transfer_columns, "True (AIHWKit resets columns only)"),
                                ("n_reads_per_transfer", self.n_reads_per_transfer == 1, "1"),
                                ("buffer", self.buffer is None, "None (AIHWKit's buffered compound ignores resets)")):
        if not ok:
          raise ValueError(f"{owner}.{name} = {getattr(self, name)!r} is invalid with with_reset_prob = "
                           f"{self.with_reset_prob}: allowed is {allowed}")
    if self.transfer_update is None:
      object.__setattr__(self, "transfer_update", UpdateParameters() if self.buffer is None else SINGLE_PULSE_UPDATE)
    for name in ("update", "transfer_update"):
      if not isinstance(getattr(self, name), UpdateParameters):
        raise TypeError(f"{owner}.{name} must be UpdateParameters, got {type(getattr(self, name)).__name__}")

  def _check_devices(self, owner: str):
    devices = self.device
    if isinstance(devices, PulsedDevice):
      if self.n_tiles is None:
        object.__setattr__(self, "n_tiles", 2)
      C.integer(owner, "n_tiles", self.n_tiles, 2, 32)
      devices = (devices, self.fast_device)
    else:
      if not isinstance(devices, Sequence) or isinstance(devices, str):
        raise TypeError(f"{owner}.device must be a PulsedDevice or a sequence of them, got {type(devices).__name__}")
      devices = tuple(devices)
      object.__setattr__(self, "device", devices)
      if self.n_tiles is None:
        object.__setattr__(self, "n_tiles", len(devices))
      C.integer(owner, "n_tiles", self.n_tiles, 2, 32)
      if len(devices) != self.n_tiles:
        raise ValueError(f"{owner}.device has {len(devices)} devices: allowed is exactly n_tiles = {self.n_tiles} "
                         "(or one device for every tile)")
      if self.fast_device is not None:
        raise ValueError(f"{owner}.fast_device = {self.fast_device!r} is invalid with a device sequence: allowed is "
                         "None (the sequence's first device is the fast tile's)")
    for k, dev in enumerate(devices):
      if dev is not None and not isinstance(dev, PulsedDevice):
        name = "fast_device" if (k == 1 and isinstance(self.device, PulsedDevice)) else f"device[{k}]"
        raise TypeError(f"{owner}.{name} must be a PulsedDevice, got {type(dev).__name__}")

  @property
  def gammas(self) -> tuple:
    """``gamma_vec`` (least significant first)."""
    if self.gamma_vec is not None:
      return self.gamma_vec
    return tuple(float(self.gamma) ** (self.n_tiles - 1 - k) for k in range(self.n_tiles))

  def device_of(self, k: int) -> PulsedDevice:
    """The device of tile ``k`` (0 = the fast tile)."""
    if not isinstance(self.device, PulsedDevice):
      return self.device[k]
    return self.fast_device if (k == 0 and self.fast_device is not None) else self.device

  def transfer_periods(self, shape) -> tuple:
    """AIHWKit's ``transfer_every_vec`` for a weight of shape ``[out, in]``: ``transfer_every`` when it is a
    sequence, else ``T·q^k`` with ``q = out / n_reads_per_transfer``, multiplied up in float32 as AIHWKit does, and
    0 for the top tile."""
    if isinstance(self.transfer_every, tuple):
      return self.transfer_every
    t, q = np.float32(self.transfer_every), np.float32(shape[0]) / np.float32(self.n_reads_per_transfer)
    periods = []
    for _ in range(self.n_tiles - 1):
      periods.append(float(t))
      t = np.float32(t * q)
    return tuple(periods) + (0.0,)

  def batch_periods(self, shape) -> tuple:
    """Mini-batches between the transfers out of tiles ``0 … K−2`` (``units_in_mbatch``; 0 = never)."""
    periods = self.transfer_periods(shape)[:-1]
    for k, t in enumerate(periods):
      _check_whole_batches(k, t, f" (transfer_every = {self.transfer_every} for a weight of shape {tuple(shape)})")
    return tuple(int(t) for t in periods)

  def row_periods(self, shape) -> tuple:
    """Rows between the transfers out of tiles ``0 … K−2`` (not ``units_in_mbatch``; 0 = never), rounded half away
    from zero as AIHWKit's ``getTransferEvery``."""
    return tuple(int(math.floor(t + 0.5)) for t in self.transfer_periods(shape)[:-1])

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


def _check_whole_batches(k: int, t: float, where: str = ""):
  if t != int(t):
    raise ValueError(f"TransferCompound.transfer_every[{k}] = {t} is invalid{where}: allowed are whole mini-batches "
                     "(0 = never) with units_in_mbatch=True; count rows with units_in_mbatch=False")


class CompoundLeafState(NamedTuple):
  """Device state of one analog weight under a transfer compound.

  Attributes:
    tiles: list of K ``TileState`` (index 0 = fast tile).
    ptr: int32[K] next line to read from each source tile.
    buffer: float32[K−1, out, in] TT-v2 buffers (``None`` without a buffer).
    rows: int32[K−1] rows since each source tile's last transfer (``None`` unless periods count rows).
  """

  tiles: list
  ptr: jax.Array
  buffer: Optional[jax.Array]
  rows: Optional[jax.Array] = None


class WarmStartNotFedWarning(UserWarning):
  """A warm start that is still running got no epoch loss for a long time (it stays on its target tile)."""


class WarmStartState(NamedTuple):
  """The warm-start phase of a transfer compound: one for all of its weights (``AnalogState.shared``).

  Attributes:
    target: int32 warm-start target tile; −1 once warm start is over (or disabled).
    pending: bool, a switch requested (``request_switch``) for the next update.
    plateau: the controller that requests switches from the epoch losses.
    feed_due_in: int32 updates left before the controller counts as not fed: reset to
      ``PlateauRule.warn_after_updates`` by every epoch loss (``epoch_loss=``, ``end_epoch``) or switch request,
      down by one per update, 0 when overdue (−1: never, without a warm start or a limit).
  """

  target: jax.Array
  pending: jax.Array
  plateau: PlateauState
  feed_due_in: jax.Array


def feed_limit(cfg: TransferCompound) -> int:
  """``WarmStartState.feed_due_in`` after an epoch loss: ``PlateauRule.warn_after_updates``, −1 for never."""
  limit = cfg.plateau.warn_after_updates
  return -1 if (cfg.warm_start == "none" or limit is None) else limit


def init_warm_start(cfg: TransferCompound) -> WarmStartState:
  """Target the most significant tile (no target without a warm start), nothing pending."""
  return WarmStartState(target=jnp.int32(cfg.n_tiles - 1 if cfg.warm_start != "none" else -1),
                        pending=jnp.bool_(False), plateau=plateau_init(cfg.plateau),
                        feed_due_in=jnp.int32(feed_limit(cfg)))


def step_warm_start(cfg: TransferCompound, state: WarmStartState, epoch_loss) -> WarmStartState:
  """Moves the target down one tile when a switch is pending or the plateau controller requests one."""
  switch, plateau = plateau_update(cfg.plateau, state.plateau, epoch_loss)
  pending = state.pending | switch
  target = jnp.where(pending & (state.target >= 0), state.target - 1, state.target)
  fed = jnp.isfinite(epoch_loss) | state.pending
  due_in = jnp.where(fed, feed_limit(cfg), jnp.maximum(state.feed_due_in - 1, jnp.minimum(state.feed_due_in, 0)))
  return WarmStartState(target=target, pending=jnp.bool_(False), plateau=plateau,
                        feed_due_in=due_in.astype(jnp.int32))


def _local_values(x) -> np.ndarray:
  """The values of ``x`` this process holds: all of them, or of an array spread over several processes (a
  multi-process sweep) its addressable shards, flattened."""
  if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and not x.is_fully_addressable:
    return np.concatenate([np.ravel(np.asarray(shard.data)) for shard in x.addressable_shards])
  return np.asarray(x)


def warn_if_not_fed(warm: WarmStartState) -> None:
  """Warns (``WarmStartNotFedWarning``) when a running warm start has gone ``PlateauRule.warn_after_updates``
  updates without an epoch loss. Host side, on concrete values (does nothing under tracing): the transformation
  cannot warn from inside ``jit``, where a host callback in every step could stall asynchronous dispatch."""
  try:
    overdue = _local_values(warm.feed_due_in) == 0
    running = _local_values(warm.target) >= 0
  except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return
  if np.any(overdue & running):
    warnings.warn(f"the MRL warm start got no epoch loss for PlateauRule.warn_after_updates updates and stays on "
                  f"tile {int(np.max(_local_values(warm.target)))}: pass epoch_loss=<previous epoch's mean training "
                  "loss> to tx.update on the first step of each epoch, or call optim.end_epoch(config, opt_state, "
                  "loss) after each epoch", WarmStartNotFedWarning, stacklevel=3)


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
  if cfg.units_in_mbatch:
    cfg.batch_periods(weights.shape)  # refuses fractional mini-batches here, not at the first step
  rows = None if cfg.units_in_mbatch else jnp.zeros((K - 1,), jnp.int32)
  return CompoundLeafState(tiles=tiles, ptr=jnp.zeros((K,), jnp.int32), buffer=buffer, rows=rows)


# ---- transfers ------------------------------------------------------------------------------------

def _line_count(cfg: TransferCompound, shape) -> int:
  return shape[1] if cfg.transfer_columns else shape[0]


def _first_line(cfg, leaf, src: int, key):
  """``(line, key)``: the source's next line, or a uniformly random one (``random_selection``, drawn from
  ``key``, of which the rest is returned)."""
  if not cfg.random_selection:
    return leaf.ptr[src], key
  key, k_line = jax.random.split(key)
  return jax.random.randint(k_line, (), 0, _line_count(cfg, leaf.tiles[src].weights.shape), jnp.int32), key


def _plain_transfer(cfg, leaf, src: int, dst: int, lr_t, key):
  size = _line_count(cfg, leaf.tiles[src].weights.shape)
  start, key = _first_line(cfg, leaf, src, key)
  tiles = list(leaf.tiles)
  if cfg.with_reset_prob > 0:
    key, k_draw, k_reset = jax.random.split(key, 3)
    reset = jax.random.uniform(k_draw) < jnp.float32(cfg.with_reset_prob)
    column = jax.nn.one_hot(start, size, dtype=jnp.bool_) & reset
    tiles[src] = reset_columns(tiles[src], cfg.device_of(src), column, k_reset)  # after the read, as AIHWKit
  tiles[dst] = transfer(leaf.tiles[src], leaf.tiles[dst], start, lr_t, key, n_reads=cfg.n_reads_per_transfer,
                        columns=cfg.transfer_columns, read_io=cfg.transfer_io, device=cfg.device_of(dst),
                        update=cfg.transfer_update, engine=cfg.engine)
  ptr = leaf.ptr.at[src].set((start + cfg.n_reads_per_transfer) % size)
  return leaf._replace(tiles=tiles, ptr=ptr)


def _buffered_transfer(cfg, leaf, src: int, dst: int, lr_t, key):
  """TT-v2: accumulate the read in the buffer H_src; commit whole device steps of the destination."""
  buf = cfg.buffer
  dst_dev = cfg.device_of(dst)
  c, key = _first_line(cfg, leaf, src, key)
  k_read, k_write = jax.random.split(key)
  w_src = leaf.tiles[src].weights
  size = _line_count(cfg, w_src.shape)
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
    leaf = _masked(target == dst, hop, leaf, _written_by(cfg, src, dst))
  if cfg.warm_start == "direct":
    size = _line_count(cfg, leaf.tiles[0].weights.shape)
    moved = leaf.ptr.at[0].set((leaf.ptr[0] + min(cfg.n_reads_per_transfer, size)) % size)
    leaf = leaf._replace(ptr=jnp.where(target == 0, moved, leaf.ptr))
  return leaf



def _rates(cfg: TransferCompound, sgd_lr):
  scale = sgd_lr if cfg.scale_transfer_lr else jnp.float32(1)
  return [jnp.float32(eta) * scale for eta in cfg.transfer_lr]


def _written_by(cfg: TransferCompound, src: int, dst: int) -> tuple:
  """The tiles a transfer ``src → dst`` writes: the destination, and the source when it may be reset."""
  return (dst, src) if cfg.with_reset_prob > 0 else (dst,)


def _gradient_rate(cfg: TransferCompound, sgd_lr):
  if cfg.fast_lr is None:
    return sgd_lr
  return jnp.float32(cfg.fast_lr) * (sgd_lr if cfg.scale_fast_lr else jnp.float32(1))


def _write_gradient(cfg: TransferCompound, leaf: CompoundLeafState, x, d, pc_lr, key) -> CompoundLeafState:
  tiles = list(leaf.tiles)
  tiles[0] = tile_update(tiles[0], cfg.device_of(0), cfg.update, x, d, pc_lr, key, engine=cfg.engine,
                         dw=cfg.gradient_granularity)
  return leaf._replace(tiles=tiles)


def step_leaf(cfg: TransferCompound, leaf: CompoundLeafState, grad: base.AnalogGradient, sgd_lr, target, key, step):
  """One mini-batch of a transfer compound for one analog weight.

  Args:
    leaf: the weight's device state.
    grad: its ``AnalogGradient``.
    sgd_lr: float32 current SGD learning rate.
    target: int32 warm-start target of this step (``WarmStartState.target`` after ``step_warm_start``).
    key: PRNG key of this step and weight.
    step: int32 number of this mini-batch (1 for the first); drives the transfer schedule in mini-batches.

  Returns:
    the new leaf state.
  """
  if not cfg.units_in_mbatch:
    return _step_rows(cfg, leaf, grad, sgd_lr, key)
  K = cfg.n_tiles
  keys = iter(jax.random.split(key, 2 * K + 4))
  leaf = _write_gradient(cfg, leaf, grad.x, grad.d, _gradient_rate(cfg, sgd_lr), next(keys))
  eta = _rates(cfg, sgd_lr)
  period = cfg.batch_periods(leaf.tiles[0].weights.shape)
  due = lambda k: (step % period[k]) == 0 if period[k] > 0 else jnp.bool_(False)

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
    leaf = _when(due(k), lambda l, k=k, fn=transfer_k: _masked(~warm, fn, l, _written_by(cfg, k, k + 1)), leaf)
  return post_update(cfg, leaf, next(keys))


def _step_rows(cfg: TransferCompound, leaf: CompoundLeafState, grad: base.AnalogGradient, sgd_lr, key):
  """One update call with periods in rows (``units_in_mbatch=False``): AIHWKit's row loop, in which the
  transfers ``k → k+1`` that are due after a row run right after it, in order of k.

  The row counters all advance together, so every transfer falls on a row that is a multiple of ``g``, the
  greatest common divisor of the periods, away from the last one. The rows are therefore written in chunks of
  ``g`` rows (one pulsed-update call each, rows still applied one by one inside it) with the transfers due after
  each chunk; when every period is a multiple of the rows per call, in one chunk. A batch with a non-finite value
  is skipped whole (counted once), as in mini-batch counting; its rows still count.
  """
  K, n_rows = cfg.n_tiles, grad.x.shape[0]
  every = cfg.row_periods(leaf.tiles[0].weights.shape)
  eta = _rates(cfg, sgd_lr)
  pc_lr = _gradient_rate(cfg, sgd_lr)
  k_batch, k_rows, k_post = jax.random.split(key, 3)
  sources = [k for k in range(K - 1) if every[k] > 0]

  def transfers_due(leaf, rows, keys):
    """Advances the row counters by ``rows`` (> 0) and runs the transfers that fall due."""
    counts = leaf.rows + rows
    wrapped = jnp.asarray([max(e, 1) for e in every], jnp.int32)
    leaf = leaf._replace(rows=jnp.where(jnp.asarray(every) > 0, counts % wrapped, 0))
    for k in sources:
      due = (leaf.rows[k] == 0) & (rows > 0)
      leaf = _when(due, lambda l, k=k: _transfer(cfg, l, k, k + 1, eta[k], keys[k]), leaf)
    return leaf

  if all(every[k] % n_rows == 0 for k in sources):
    leaf = _write_gradient(cfg, leaf, grad.x, grad.d, pc_lr, k_batch)
    leaf = transfers_due(leaf, jnp.int32(n_rows), jax.random.split(k_rows, K - 1))
    return post_update(cfg, leaf, k_post)

  finite = operands_finite(pc_lr, grad.x, grad.d)
  x, d, pc_lr = (jnp.where(finite, v, jnp.float32(0)) for v in (grad.x, grad.d, pc_lr))
  g = math.gcd(*(every[k] for k in sources))
  first = g - leaf.rows[sources[0]] % g  # rows up to the first possible transfer: 1 … g
  # Chunk j holds rows first − g + j·g … first − 1 + j·g (those outside 0 … n_rows − 1 are zeros, which pulse
  # nothing); the padding keeps every slice inside the array.
  pad = lambda a: jnp.pad(a, ((g, 2 * g), (0, 0)))
  x, d = pad(x), pad(d)
  n_chunks = -(-n_rows // g) + 1

  def chunk(leaf, inputs):
    j, k_chunk = inputs
    start = first + j * g
    rows = start - g + jnp.arange(g)
    live = (rows >= 0) & (rows < n_rows)
    take = lambda a: jnp.where(live[:, None], jax.lax.dynamic_slice_in_dim(a, start, g), jnp.float32(0))
    k_write, k_move = jax.random.split(k_chunk)
    leaf = _write_gradient(cfg, leaf, take(x), take(d), pc_lr, k_write)
    return transfers_due(leaf, jnp.sum(live, dtype=jnp.int32), jax.random.split(k_move, K - 1)), None

  leaf, _ = jax.lax.scan(chunk, leaf, (jnp.arange(n_chunks), jax.random.split(k_rows, n_chunks)))
  tiles = list(leaf.tiles)
  tiles[0] = count_skipped(tiles[0], finite)
  return post_update(cfg, leaf._replace(tiles=tiles), k_post)


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
  ``optax.partition``, ``chain``, vmapped seeds), or None when it holds none. Warns (``WarmStartNotFedWarning``)
  when that warm start has gone ``PlateauRule.warn_after_updates`` updates without an epoch loss."""
  found = [s.shared for s in analog_states(opt_state) if isinstance(s.shared, WarmStartState)]
  if not found:
    return None
  warn_if_not_fed(found[0])
  return found[0]


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
