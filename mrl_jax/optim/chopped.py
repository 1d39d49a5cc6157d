"""Chopped Tiki-Taka (TT-v3 / c-TTv2) and AGAD (TT-v4) as optax transformations — AIHWKit 1.1.0's
``ChoppedTransferCompound`` and ``DynamicTransferCompound`` (the plain-numpy model of both and the AIHWKit traces
in ``tests/test_chopped.py``, ``tests/fixtures/aihwkit_transfer.npz``).

Two tiles per analog weight: the fast tile A receives the gradient, the visible tile C receives whole
device steps from a digital buffer H (γ = 0, so the visible weight is C). Per row of the batch, in order:

  1. choppers: the gradient write onto A has the sign of pulse (i, j) flipped when
     ``in_chop[j] XOR out_chop[i]``; done here by flipping ``x_j`` (``in_chop``) and ``d_i``
     (``out_chop``) before the pulsed update, which flips exactly the product's sign;
  2. pulsed update of A at ``pc_lr`` (``fast_lr``, absolute as in 1.1.0, or the ``auto_scale`` rate
     ``fast_lr·BL·dw_A/(m_x·m_d)`` from running maxima of |x| and |d|);
  3. every ``transfer_every`` rows: read the next column c of A (one-hot forward, transfer I/O with
     noise and bound management off), de-chop it, add it to H[:, c] in units of the buffer
     granularity, and write ``n = clamp(trunc(H), ±desired_bl)`` pulses of ``step·dw_C`` into C[:, c]
     where ``|H| ≥ 1``; then switch the column's input chopper (randomly or periodically) and, after
     the last column, the output choppers.

AGAD (``DynamicTransfer``) replaces the read ``y`` by ``y − P`` where P is the running mean M of the
reads during the previous chopper phase, switches choppers every ``S = max(⌈1/in_chop_prob⌉, 2)``
full sweeps, and writes to C only after the first ``S`` sweeps.

Only column transfers (AIHWKit ``transfer_columns=True``, the default) are implemented.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mrl_jax import _checks as C
from mrl_jax.devices import PulsedDevice
from mrl_jax.fmath import fence_from
from mrl_jax.io import IOParameters, analog_mvm
from mrl_jax.optim import base
from mrl_jax.pulses import SINGLE_PULSE_UPDATE, UpdateParameters
from mrl_jax.tile import count_skipped, init_tile, post_update_step, tile_update
from mrl_jax.update import Engine, operands_finite
from mrl_jax.transfer import one_hot_lines, transfer_read_io

_f32 = np.float32
TRANSFER_UPDATE = SINGLE_PULSE_UPDATE
"""AIHWKit's default ``transfer_update`` of the chopped compounds: one deterministic pulse per ±1."""


def _unit(o, n, v):
  C.in_range(o, n, v, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ChoppedTransfer:
  """Configuration of a chopped transfer compound (AIHWKit ``ChoppedTransferCompound``; static under jit).

  Defaults are AIHWKit 1.1.0's Python defaults.

  Attributes:
    device: device of both tiles (``fast_device`` overrides tile A).
    in_chop_prob: input-chopper switching probability per column read (random), or the frequency
      ``1/period`` of the periodic switch (``in_chop_random=False``, period ``max(⌈1/p⌉, 2)`` sweeps).
    in_chop_random: switch input choppers randomly (True) or periodically.
    out_chop_prob: switching probability of each output chopper after a full sweep of the columns.
    buffer_granularity: buffer threshold in units of ``dw_A``.
    auto_granularity: if > 0, the buffer granularity is further scaled by
      ``auto_granularity / (in_size·|transfer_every|)``.
    step: pulse size of a committed transfer in units of ``dw_C``.
    momentum: fraction of the buffer kept after a commit.
    forget_buffer: after a commit keep ``momentum·H`` (True) or subtract ``(1 − momentum)·n``.
    no_buffer: do not accumulate (H restarts from 0 at every read).
    units_in_mbatch: ``transfer_every`` counts mini-batches (``⌈te·rows⌉`` rows) instead of rows.
    transfer_every: rows between column transfers; negative = automatic,
      ``max(1, round(n_states_A / in_size·|transfer_every|))``.
    auto_scale: gradient rate ``fast_lr·desired_bl·dw_A/(m_x·m_d)`` from running maxima of |x|, |d|.
    auto_momentum: momentum of those running maxima (per row ``τ = (1 − auto_momentum)/rows``).
    correct_gradient_magnitudes: divide the transfer scale by the pulse-count lr and use the
      granularity of C for the buffer.
    fast_lr: rate of the gradient write onto A (absolute, AIHWKit 1.1.0); None means "use the SGD lr"
      (AIHWKit's 0, which is stored as None).
    scale_fast_lr: multiply the gradient rate by the SGD lr (AIHWKit ≥ 1.2 option).
    transfer_lr: transfer rate (× SGD lr when ``scale_transfer_lr``).
    scale_transfer_lr: scale ``transfer_lr`` by the current SGD lr.
    update: pulse parameters of the gradient write onto A.
    transfer_update: pulse parameters of the writes into C (``desired_bl`` = max steps per commit).
    transfer_io: I/O of the transfer read (noise and bound management are forced off).
    fast_device: optional device of tile A.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp``.
  """

  device: PulsedDevice
  in_chop_prob: float = 0.1
  in_chop_random: bool = True
  out_chop_prob: float = 0.0
  buffer_granularity: float = 1.0
  auto_granularity: float = 0.0
  step: float = 1.0
  momentum: float = 0.0
  forget_buffer: bool = True
  no_buffer: bool = False
  units_in_mbatch: bool = False
  transfer_every: float = 1.0
  auto_scale: bool = False
  auto_momentum: float = 0.99
  correct_gradient_magnitudes: bool = False
  fast_lr: Optional[float] = 1.0
  scale_fast_lr: bool = False
  transfer_lr: float = 1.0
  scale_transfer_lr: bool = True
  update: UpdateParameters = UpdateParameters()
  transfer_update: UpdateParameters = TRANSFER_UPDATE
  transfer_io: IOParameters = IOParameters()
  fast_device: Optional[PulsedDevice] = None
  engine: str = "auto"

  dynamic: ClassVar[bool] = False

  def __post_init__(self):
    owner = type(self).__name__
    C.check_fields(self, {
        "in_chop_prob": _unit, "in_chop_random": C.boolean, "out_chop_prob": _unit,
        "buffer_granularity": C.positive, "auto_granularity": C.non_negative, "step": C.positive,
        "momentum": _unit, "forget_buffer": C.boolean, "no_buffer": C.boolean, "units_in_mbatch": C.boolean,
        "transfer_every": C.finite, "auto_scale": C.boolean, "auto_momentum": _unit,
        "correct_gradient_magnitudes": C.boolean, "fast_lr": C.optional_rate, "scale_fast_lr": C.boolean,
        "transfer_lr": C.non_negative, "scale_transfer_lr": C.boolean,
        "engine": lambda o, n, v: C.choice(o, n, v, ("auto", "native", "jnp"))})
    if self.fast_lr == 0:
      object.__setattr__(self, "fast_lr", None)
    te = self.transfer_every
    if te == 0:
      raise ValueError(f"{owner}.transfer_every = {te!r} is invalid: allowed range is != 0 "
                       "(> 0: period in rows or mini-batches, < 0: automatic)")
    if te < 0 and self.units_in_mbatch:
      raise ValueError(f"{owner}.transfer_every = {te!r} is invalid with units_in_mbatch=True: allowed range is "
                       "> 0 (the automatic period counts rows)")
    if te > 0 and not self.units_in_mbatch and math.floor(te + 0.5) < 1:
      raise ValueError(f"{owner}.transfer_every = {te!r} is invalid: allowed range is >= 0.5 rows "
                       "(AIHWKit rounds it to whole rows)")
    for name in ("device", "fast_device"):
      dev = getattr(self, name)
      if (dev is not None or name == "device") and not isinstance(dev, PulsedDevice):
        raise TypeError(f"{owner}.{name} must be a PulsedDevice, got {type(dev).__name__}")
    for name in ("update", "transfer_update"):
      if not isinstance(getattr(self, name), UpdateParameters):
        raise TypeError(f"{owner}.{name} must be UpdateParameters, got {type(getattr(self, name)).__name__}")
    if not self.transfer_update.is_pulsed:
      raise ValueError(f"{owner}.transfer_update.pulse_type = {self.transfer_update.pulse_type.value!r} is invalid: "
                       "allowed range is a pulsed type (the buffer commits whole device pulses)")
    if not isinstance(self.transfer_io, IOParameters):
      raise TypeError(f"{owner}.transfer_io must be IOParameters, got {type(self.transfer_io).__name__}")

  # ---- derived quantities (static, float32 like AIHWKit) ----------------------------------------

  def device_of(self, k: int) -> PulsedDevice:
    return self.fast_device if (k == 0 and self.fast_device is not None) else self.device

  @property
  def gradient_granularity(self) -> float:
    """AIHWKit uses the mean granularity of both devices for the gradient write onto A."""
    return (self.device_of(0).granularity + self.device_of(1).granularity) / 2

  def period(self, in_size: int, rows: int) -> int:
    """Rows between two column transfers for ``rows`` rows per update call."""
    te = self.transfer_every
    if te < 0:
      t = _f32(self.device_of(0).n_states) / _f32(in_size) * _f32(abs(te))
      return max(1, int(math.floor(float(t) + 0.5)))
    if self.units_in_mbatch:
      return max(int(math.ceil(te * rows)), 1)
    return int(math.floor(te + 0.5))

  def buffer_granularity_of(self, in_size: int) -> np.float32:
    """The buffer granularity ``bg`` (threshold of H), in float32 and AIHWKit's order."""
    dw_a = _f32(self.device_of(0).granularity)
    bg = _f32(self.buffer_granularity)
    if self.auto_granularity > 0:
      period = _f32(in_size) * _f32(abs(self.transfer_every))
      bg = bg * (dw_a * _f32(self.auto_granularity) / period)
    else:
      bg = bg * dw_a
    if self.correct_gradient_magnitudes:
      bg = bg * (_f32(self.device_of(1).granularity) / dw_a)
    return _f32(bg)

  @property
  def chop_period(self) -> int:
    """``S = max(⌈1/in_chop_prob⌉, 2)`` full sweeps (float32 as AIHWKit; 2 when the prob is 0)."""
    if self.in_chop_prob <= 0:
      return 2
    return max(int(np.ceil(_f32(1.0) / _f32(self.in_chop_prob))), 2)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DynamicTransfer(ChoppedTransfer):
  """AGAD (AIHWKit ``DynamicTransferCompound``): a chopped compound whose transfer writes the change of
  the read against the mean of the previous chopper phase.

  Attributes (in addition to ``ChoppedTransfer``'s):
    in_chop_random: False by default here: choppers switch every ``S = max(⌈1/in_chop_prob⌉, 2)``
      sweeps (True adds random switches with probability ``in_chop_prob`` per read).
    tail_weightening: the running mean M has momentum ``min(tail_weightening/S, 1)`` per read.
    buffer_cap: with ``forget_buffer=False`` clip H to ``±buffer_cap·desired_bl`` (0 = no cap).
    experimental_correct_accumulation: divide the transfer scale by ``min(cur, 1/dw_A)`` where
      ``cur`` is the read's index (1 … S) inside the chopper phase.
  """

  in_chop_random: bool = False
  tail_weightening: float = 5.0
  buffer_cap: float = 0.0
  experimental_correct_accumulation: bool = False

  dynamic: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    C.check_fields(self, {"tail_weightening": C.positive, "buffer_cap": C.non_negative,
                          "experimental_correct_accumulation": C.boolean})
    if not 0 < self.in_chop_prob <= 1:
      raise ValueError(f"{owner}.in_chop_prob = {self.in_chop_prob!r} is invalid: allowed range is (0, 1]")
    if not 0 < self.auto_momentum < 1:
      raise ValueError(f"{owner}.auto_momentum = {self.auto_momentum!r} is invalid: allowed range is (0, 1)")
    if self.out_chop_prob != 0:
      raise ValueError(f"{owner}.out_chop_prob = {self.out_chop_prob!r} is invalid: allowed range is 0 "
                       "(AIHWKit's AGAD never switches output choppers)")
    if self.no_buffer:
      raise ValueError(f"{owner}.no_buffer = True is invalid: allowed is False (AGAD always uses its buffer)")


# ---- state ----------------------------------------------------------------------------------------

class ChoppedLeafState(NamedTuple):
  """Device state of one analog weight ``[out, in]`` (AIHWKit hidden-parameter names in brackets).

  Attributes:
    tiles: ``[A, C]`` ``TileState`` (``hidden_weights_0``, ``hidden_weights_1``); C is the visible weight.
    buffer: float32[out, in] transfer buffer H (``buffered_FP_weight_0``; AGAD: ``buffered_FP_weight``),
      dimensionless, threshold 1.
    in_chop: bool[in] input choppers; out_chop: bool[out] output choppers.
    ptr: int32 next column to read.
    rows: int32 rows seen (AIHWKit ``current_update_idx``).
    transfer_counter: int32 full sweeps over the columns (AIHWKit ``transfer_counter``).
    m_x, m_d: float32 running maxima of |x| and |d| (``auto_scale``).
    running_mean: float32[out, in] AGAD running mean M of the reads (``running_mean_weight``), else None.
    past_mean: float32[out, in] AGAD reference P, M of the previous chopper phase (``past_mean_weight``).
    switched: bool[in] AGAD: the column's chopper switched at its last read.
  """

  tiles: list
  buffer: jax.Array
  in_chop: jax.Array
  out_chop: jax.Array
  ptr: jax.Array
  rows: jax.Array
  transfer_counter: jax.Array
  m_x: jax.Array
  m_d: jax.Array
  running_mean: Optional[jax.Array] = None
  past_mean: Optional[jax.Array] = None
  switched: Optional[jax.Array] = None


def init_leaf(cfg: ChoppedTransfer, key, weights) -> ChoppedLeafState:
  """Programs ``weights`` into C (clipped per crosspoint); A, H and the choppers start at zero/False."""
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim != 2:
    raise ValueError(f"analog weights must be [out, in], got shape {weights.shape}")
  out_size, in_size = weights.shape
  k_a, k_c = jax.random.split(key)
  tiles = [init_tile(k_a, cfg.device_of(0), weights.shape), init_tile(k_c, cfg.device_of(1), weights.shape, weights)]
  # One array per leaf: a training step that donates the state must not see the same buffer twice.
  zeros = lambda: jnp.zeros(weights.shape, jnp.float32)
  agad = cfg.dynamic
  return ChoppedLeafState(
      tiles=tiles, buffer=zeros(), in_chop=jnp.zeros((in_size,), bool), out_chop=jnp.zeros((out_size,), bool),
      ptr=jnp.int32(0), rows=jnp.int32(0), transfer_counter=jnp.int32(0), m_x=jnp.float32(0), m_d=jnp.float32(0),
      running_mean=zeros() if agad else None, past_mean=zeros() if agad else None,
      switched=jnp.zeros((in_size,), bool) if agad else None)


def visible_leaf(leaf: ChoppedLeafState) -> jax.Array:
  """The visible weight of one analog weight: C (γ = 0)."""
  return leaf.tiles[1].weights


# ---- pulse-count rate -------------------------------------------------------------------------------

def _running_max(cfg: ChoppedTransfer, m, new, rows: int):
  """AIHWKit ``updateAutoScale``: first value copied, zeros ignored, else an EMA with τ = (1 − mom)/rows."""
  fence = fence_from(new)
  tau = _f32((_f32(1) - _f32(cfg.auto_momentum)) / _f32(rows))
  ema = fence((jnp.float32(1) - fence(tau)) * m) + fence(fence(tau) * new)
  return jnp.where(m <= 0, new, jnp.where(new <= 0, m, ema))


def pulse_count_lr(cfg: ChoppedTransfer, sgd_lr, m_x, m_d):
  """The rate of the gradient write onto A (``getPulseCountLearningRate``)."""
  scale = sgd_lr if cfg.scale_fast_lr else jnp.float32(1)
  if cfg.fast_lr is None:
    return jnp.asarray(sgd_lr, jnp.float32)
  if cfg.auto_scale:
    count_lr = jnp.float32(_f32(cfg.fast_lr) * (_f32(cfg.update.desired_bl) * _f32(cfg.device_of(0).granularity)))
    fence = fence_from(m_x)
    auto = count_lr / fence(m_x * m_d)
    return jnp.where((m_x > 0) & (m_d > 0), auto, count_lr) * scale
  return jnp.float32(cfg.fast_lr) * scale


# ---- transfer of one column ---------------------------------------------------------------------------

def _transfer(cfg: ChoppedTransfer, leaf: ChoppedLeafState, lr_t, count_lr, keys) -> ChoppedLeafState:
  """Reads column ``ptr`` of A into H[:, ptr] and commits whole steps into C (``readAndUpdate``).

  ``keys``: three PRNG keys (read noise, write pulses, chopper draws). Skipped (apart from advancing
  the pointer) when the transfer rate is 0, as in AIHWKit.
  """
  out_size, in_size = leaf.buffer.shape
  c = leaf.ptr

  def body(leaf):
    k_read, k_write, k_chop = keys
    a, c_tile = leaf.tiles
    probe = one_hot_lines(c, 1, in_size)
    y = analog_mvm(a.weights, probe, transfer_read_io(cfg.transfer_io), k_read)[0]  # +A[:, c]
    fence = fence_from(y)
    bg = fence(jnp.float32(cfg.buffer_granularity_of(in_size)))
    if cfg.correct_gradient_magnitudes:
      lr_scale = jnp.abs(lr_t) / count_lr / bg
    else:
      lr_scale = jnp.abs(lr_t) / bg
    flip = leaf.in_chop[c] != leaf.out_chop  # de-chop
    S = cfg.chop_period
    cur = leaf.transfer_counter % S + 1  # read index inside the chopper phase (AGAD)
    h = leaf.buffer[:, c]
    new = {}
    if cfg.dynamic:
      sw = leaf.switched[c]
      past = jnp.where(sw, leaf.running_mean[:, c], leaf.past_mean[:, c])  # new phase: P ← M
      val = y - past
      if cfg.experimental_correct_accumulation:
        n_max = jnp.float32(_f32(1) / _f32(cfg.device_of(0).granularity))
        lr_scale = lr_scale / jnp.minimum(cur.astype(jnp.float32), n_max)
      sm = _f32(min(_f32(cfg.tail_weightening) / _f32(S), _f32(1)))
      m_col = fence(leaf.running_mean[:, c] * jnp.float32(_f32(1) - sm)) + fence(y * jnp.float32(sm))
      new["past_mean"] = leaf.past_mean.at[:, c].set(past)
      new["running_mean"] = leaf.running_mean.at[:, c].set(m_col)
    else:
      val = y
    v = fence(val * lr_scale)
    v = jnp.where(flip, -v, v)
    omega = (jnp.zeros_like(h) if cfg.no_buffer else h) + v
    max_n = jnp.float32(cfg.transfer_update.desired_bl)
    fire = jnp.abs(omega) >= 1
    n = jnp.where(fire, jnp.clip(jnp.trunc(omega), -max_n, max_n), jnp.float32(0))
    if cfg.forget_buffer:
      kept = fence(omega * jnp.float32(cfg.momentum))
    else:
      kept = omega - fence(jnp.float32(_f32(1) - _f32(cfg.momentum)) * n)
      if cfg.dynamic and cfg.buffer_cap > 0:
        cap = jnp.float32(_f32(cfg.buffer_cap) * max_n)
        kept = jnp.clip(kept, -cap, cap)
    omega = jnp.where(fire, kept, omega)
    write = jnp.any(fire)
    if cfg.dynamic:
      write = write & (leaf.transfer_counter > S)
    dev_c = cfg.device_of(1)
    write_lr = jnp.float32(_f32(cfg.step) * _f32(dev_c.granularity))
    c_tile = jax.lax.cond(
        write, lambda t: tile_update(t, dev_c, cfg.transfer_update, probe, -n[None, :], write_lr, k_write,
                                     engine=cfg.engine),
        lambda t: t, c_tile)

    # choppers and the sweep counter
    last = c == in_size - 1
    u = jax.random.uniform(k_chop, (1 + out_size,))  # one draw for the input chopper, one per output
    in_chop, out_chop = leaf.in_chop, leaf.out_chop
    if cfg.dynamic:  # periodic switch, plus random switches when in_chop_random
      switch = cur == S
      if cfg.in_chop_random:
        switch = switch | (u[0] < cfg.in_chop_prob)
      new["switched"] = leaf.switched.at[c].set(switch)
      in_chop = in_chop.at[c].set(in_chop[c] ^ switch)
    else:
      if cfg.in_chop_prob > 0:
        switch = (u[0] < cfg.in_chop_prob) if cfg.in_chop_random else (cur == S)
        in_chop = in_chop.at[c].set(in_chop[c] ^ switch)
      if cfg.out_chop_prob > 0:
        out_chop = out_chop ^ (last & (u[1:] < cfg.out_chop_prob))
    return leaf._replace(tiles=[a, c_tile], buffer=leaf.buffer.at[:, c].set(omega), in_chop=in_chop,
                         out_chop=out_chop, transfer_counter=leaf.transfer_counter + last.astype(jnp.int32), **new)

  leaf = jax.lax.cond(lr_t != 0, body, lambda l: l, leaf)
  return leaf._replace(ptr=(c + 1) % in_size)


# ---- one update call ----------------------------------------------------------------------------------

def step_leaf(cfg: ChoppedTransfer, leaf: ChoppedLeafState, grad: base.AnalogGradient, sgd_lr, key):
  """One update call (all rows of ``grad`` in order) for one analog weight; returns the new leaf state."""
  n_rows = grad.x.shape[0]
  out_size, in_size = leaf.buffer.shape
  every = cfg.period(in_size, n_rows)
  lr_t = jnp.float32(cfg.transfer_lr) * (sgd_lr if cfg.scale_transfer_lr else jnp.float32(1))
  dev_a = cfg.device_of(0)
  keys = jax.random.split(key, (n_rows + 1, 4))  # one set per row, the last for the post-update step

  def row(leaf, inputs):
    x, d, k = inputs  # keys: gradient pulses, transfer read, transfer write, choppers
    m_x, m_d = leaf.m_x, leaf.m_d
    if cfg.auto_scale:
      m_x = _running_max(cfg, m_x, jnp.max(jnp.abs(x)), n_rows)
      m_d = _running_max(cfg, m_d, jnp.max(jnp.abs(d)), n_rows)
    count_lr = pulse_count_lr(cfg, sgd_lr, m_x, m_d)
    x_c = jnp.where(leaf.in_chop, -x, x)  # chopped gradient: sign(x_j d_i) flips iff in_chop[j] != out_chop[i]
    d_c = jnp.where(leaf.out_chop, -d, d)
    a = tile_update(leaf.tiles[0], dev_a, cfg.update, x_c[None], d_c[None], count_lr, k[0], engine=cfg.engine,
                    dw=cfg.gradient_granularity)
    rows = leaf.rows + 1
    leaf = leaf._replace(tiles=[a, leaf.tiles[1]], rows=rows, m_x=m_x, m_d=m_d)
    leaf = jax.lax.cond(rows % every == 0, lambda l: _transfer(cfg, l, lr_t, count_lr, k[1:]), lambda l: l, leaf)
    return leaf, None

  x = jnp.asarray(grad.x, jnp.float32)
  d = jnp.asarray(grad.d, jnp.float32)
  leaf, _ = jax.lax.scan(row, leaf, (x, d, keys[:-1]))
  return leaf._replace(tiles=[post_update_step(t, cfg.device_of(k), keys[-1, k]) for k, t in enumerate(leaf.tiles)])


def chopped_transfer(config: ChoppedTransfer, learning_rate: base.ScalarOrSchedule = 1.0, *, key,
                     engine: Optional[Engine] = None) -> optax.GradientTransformationExtraArgs:
  """An optax transformation running a chopped compound (TT-v3) or AGAD (TT-v4, ``DynamicTransfer``)
  on every analog weight.

  Args:
    config: ``ChoppedTransfer`` or ``DynamicTransfer``.
    learning_rate: SGD learning rate or schedule (scales the transfer rate when ``scale_transfer_lr``,
      and the gradient write when ``fast_lr`` is None or ``scale_fast_lr``).
    key: PRNG key or integer seed of the device parameters (construction), pulses, reads and choppers.
    engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (None: ``config.engine``).

  Returns:
    ``optax.GradientTransformationExtraArgs`` over ``base.AnalogState`` (leaves ``ChoppedLeafState``);
    ``update(grads, state, params)`` returns ``C_new − params`` for every ``AnalogGradient`` leaf.
  """
  if not isinstance(config, ChoppedTransfer):
    raise TypeError(f"chopped_transfer: config must be a ChoppedTransfer, got {type(config).__name__}")
  if engine is not None:
    config = config.replace(engine=engine)

  def step(leaf: ChoppedLeafState, g, info: base.StepInfo, key) -> ChoppedLeafState:
    # Rows are updated one by one here, so a bad batch is skipped as a whole rather than row by row.
    skip = lambda l: l._replace(tiles=[count_skipped(l.tiles[0], False), l.tiles[1]])
    return jax.lax.cond(operands_finite(info.lr, g.x, g.d), lambda l: step_leaf(config, l, g, info.lr, key), skip,
                        leaf)

  return base.per_weight("chopped_transfer", learning_rate, key, init_leaf=lambda w, k: init_leaf(config, k, w),
                         step_leaf=step, visible=visible_leaf)


def visible_weights(config: ChoppedTransfer, state: base.AnalogState):
  """The visible weights (C) of every analog weight of a ``chopped_transfer`` state (a tree shaped like the
  params)."""
  del config  # γ = 0: C alone is visible
  return base.map_leaves(visible_leaf, state)
