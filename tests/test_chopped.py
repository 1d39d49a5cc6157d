"""Chopped transfer compound (TT-v3) and AGAD (TT-v4): AIHWKit 1.1.0 traces, chopper and buffer
bookkeeping against a plain-numpy model of §4.3/§4.4, validation, jit/vmap, least squares."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mrl_jax as M
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.io import PERFECT_IO
from mrl_jax.optim import AnalogGradient
from mrl_jax.optim.chopped import ChoppedTransfer, DynamicTransfer, chopped_transfer, pulse_count_lr
from mrl_jax.pulses import UpdateParameters
from tests.conftest import CLEAN, load_fixture

TRANSFER, META = load_fixture("aihwkit_transfer")
CLEAN_CS = M.ConstantStepDevice(dw_min=0.01, **CLEAN)  # bounds ±0.6, as in the fixtures


def _fixture_config(case: str) -> ChoppedTransfer:
  """The fixture's ChoppedTransferCompound, translated: choppers off, fast_lr 0.5 absolute, perfect reads, the
  clean ConstantStep device; StochasticCompressed (``chopped``) or DeterministicImplicit gradient writes."""
  cfg = from_rpu_config(META["cases"][case]["plain_rpu_config"]).config
  assert cfg.fast_lr == 0.5 and cfg.in_chop_prob == 0.0 and not cfg.auto_scale and cfg.device == CLEAN_CS
  return cfg


def _init(cfg, lr, shape=(2, 3), key=0):
  """The transformation and its initial state (built eagerly: jitting the device draws costs seconds)."""
  tx = chopped_transfer(cfg, lr, key=key)
  params = {"w": jnp.zeros(shape, jnp.float32)}
  return tx, tx.init(params)


def _trace(tx, state, x, d, steps=12):
  """A, C, H and the visible weights after each of ``steps`` updates with the same rows ``x``, ``d``."""
  params = {"w": visible(state)}
  grads = {"w": AnalogGradient(jnp.asarray(x, jnp.float32), jnp.asarray(d, jnp.float32))}

  def step(carry, _):
    params, state = carry
    upd, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, upd)
    leaf = state.leaves["w"]
    return (params, state), (leaf.tiles[0].weights, leaf.tiles[1].weights, leaf.buffer, params["w"])

  return jax.lax.scan(step, (params, state), None, length=steps)[1]


def visible(state):
  return state.leaves["w"].tiles[1].weights


# ---- AIHWKit 1.1.0 traces --------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["chopped_det", "chopped_det2"])
def test_deterministic_trace_matches_aihwkit_exactly(case):
  """DeterministicImplicit gradient write: A, C and H over 12 updates are bit-identical to AIHWKit.

  ``chopped_det`` reads |ω| = 0.99999988 < 1 at the first transfer (10 single pulses of 0.01 summed in
  float32), so nothing is committed there; the per-pulse device model reproduces this.
  """
  cfg = _fixture_config(case)
  assert cfg.update == UpdateParameters(pulse_type="deterministic_implicit")
  x, d = TRANSFER[f"{case}_x"][None], TRANSFER[f"{case}_d"][None]
  tx, state = _init(cfg, float(TRANSFER[f"{case}_lr"]))
  a, c, h, params = jax.jit(lambda s: _trace(tx, s, x, d))(state)
  for name, ours in (("A", a), ("C", c), ("H", h)):
    np.testing.assert_array_equal(np.asarray(ours), TRANSFER[f"{case}_{name}"], err_msg=f"{case} {name}")
  np.testing.assert_array_equal(np.asarray(params), TRANSFER[f"{case}_C"])  # the visible weights are C
  if case == "chopped_det":
    assert np.float32(TRANSFER["chopped_det_H"][0, 0, 0]) == np.float32(0.99999988)


def test_stochastic_trace_matches_aihwkit_in_mean():
  """StochasticCompressed gradient write: means of A, C, H within 4 standard errors (400 vs 200 runs)."""
  reps, ref_reps = 400, int(TRANSFER["chopped_R"])
  cfg = _fixture_config("chopped")
  assert cfg.update == UpdateParameters()  # StochasticCompressed, BL 31 with update management
  x, d = TRANSFER["chopped_x"][None], TRANSFER["chopped_d"][None]
  tx, state = _init(cfg, float(TRANSFER["chopped_lr"]))
  # clean devices have no device-to-device draws: fresh tiles differ only in the run key of the pulses
  run = lambda k: _trace(tx, state._replace(key=k), x, d)[:3]
  traces = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(1), reps))
  for name, ours in zip("ACH", traces):
    ours = np.asarray(ours, np.float64)  # float32 means of identical values drift by ~1e-6
    ref_mean, ref_std = TRANSFER[f"chopped_{name}_mean"], TRANSFER[f"chopped_{name}_std"]
    se = np.sqrt(ours.std(0, ddof=1) ** 2 / reps + ref_std.astype(np.float64) ** 2 / ref_reps)
    assert np.all(np.abs(ours.mean(0) - ref_mean) <= 4 * se + 1e-6), name


# ---- the algorithm against a plain-numpy model of §4.3 / §4.4 --------------------------------------

def _numpy_model(cfg: ChoppedTransfer, xs, ds, lr):
  """§4.3/§4.4 for a float gradient write (pulse_type NONE), ±1-pulse commits of ``dw`` into a clean
  ConstantStep C, deterministic choppers (periodic input, output with probability 1); AGAD with
  ``experimental_correct_accumulation`` and ``buffer_cap`` (with ``forget_buffer=False``)."""
  f32 = np.float32
  steps, rows, n_in = xs.shape
  n_out = ds.shape[-1]
  A, C, H, Mr, P = (np.zeros((n_out, n_in), f32) for _ in range(5))
  in_chop, out_chop, switched = np.zeros(n_in, bool), np.zeros(n_out, bool), np.zeros(n_in, bool)
  ptr = row_count = counter = 0
  S = cfg.chop_period
  sm = f32(min(cfg.tail_weightening / S, 1.0)) if cfg.dynamic else None
  lr_scale = f32(cfg.transfer_lr * np.float32(lr)) / f32(cfg.buffer_granularity * cfg.device.dw_min)
  dw = f32(cfg.device.dw_min)
  trace, margin = [], np.inf
  for s in range(steps):
    for r in range(rows):
      xc = np.where(in_chop, -xs[s, r], xs[s, r]).astype(f32)
      dc = np.where(out_chop, -ds[s, r], ds[s, r]).astype(f32)
      A = (A - f32(cfg.fast_lr) * np.outer(dc, xc)).astype(f32)
      row_count += 1
      if row_count % int(cfg.transfer_every):
        continue
      c = ptr
      y = A[:, c].copy()
      cur = counter % S + 1
      if cfg.dynamic:
        if switched[c]:
          P[:, c] = Mr[:, c]
        val = y - P[:, c]
      else:
        val = y
      correct = cfg.dynamic and cfg.experimental_correct_accumulation
      scale = lr_scale / f32(min(cur, 1 / cfg.device.dw_min)) if correct else lr_scale
      v = (val * scale).astype(f32)
      omega = H[:, c] + np.where(in_chop[c] != out_chop, -v, v)
      margin = min(margin, np.min(np.abs(np.abs(omega) - 1)))
      fire = np.abs(omega) >= 1
      n = np.where(fire, np.clip(np.trunc(omega), -1, 1), 0).astype(f32)
      kept = omega * f32(cfg.momentum) if cfg.forget_buffer else omega - f32(1 - cfg.momentum) * n
      if cfg.dynamic and cfg.buffer_cap > 0 and not cfg.forget_buffer:
        kept = np.clip(kept, -cfg.buffer_cap, cfg.buffer_cap)
      H[:, c] = np.where(fire, kept, omega)
      if cfg.dynamic:
        Mr[:, c] = Mr[:, c] * (f32(1) - sm) + y * sm
      if fire.any() and (not cfg.dynamic or counter > S):
        C[:, c] = np.clip(C[:, c] + n * dw, -0.6, 0.6)
      if cfg.dynamic or not cfg.in_chop_random:
        switch = cur == S
        switched[c] = switch
        in_chop[c] ^= switch
      if c == n_in - 1:
        if cfg.out_chop_prob == 1.0:
          out_chop = ~out_chop
        counter += 1
      ptr = (c + 1) % n_in
    trace.append((A.copy(), C.copy(), H.copy(), Mr.copy(), P.copy(), in_chop.copy(), out_chop.copy()))
  return [np.stack(t) for t in zip(*trace)], margin


_MODEL_CASES = {
    "chopped": ChoppedTransfer(device=CLEAN_CS, in_chop_prob=0.5, in_chop_random=False, out_chop_prob=1.0,
                               fast_lr=0.3, transfer_lr=2.0, momentum=0.3, forget_buffer=False,
                               transfer_io=PERFECT_IO, update=UpdateParameters(pulse_type="none")),
    # engine "jnp": the pure-JAX pulsed update writes into C here (the native kernel everywhere else)
    "agad": DynamicTransfer(device=CLEAN_CS, in_chop_prob=0.5, fast_lr=0.3, transfer_lr=2.0, tail_weightening=1.0,
                            forget_buffer=False, buffer_cap=0.5, experimental_correct_accumulation=True,
                            transfer_io=PERFECT_IO, update=UpdateParameters(pulse_type="none"), engine="jnp"),
}


@pytest.mark.parametrize("name", sorted(_MODEL_CASES))
def test_bookkeeping_matches_numpy_model(name):
  """Chopper signs, de-chopping, buffer, momentum, sweep counter, periodic switches, AGAD's M/P, buffer
  cap and delayed first write: 16 updates of 2 random rows on a 3×4 weight."""
  cfg = _MODEL_CASES[name]
  steps, rows, lr = 16, 2, 0.1
  rng = np.random.default_rng(7)
  xs = rng.uniform(-1, 1, (steps, rows, 4)).astype(np.float32)
  ds = rng.uniform(-0.5, 0.5, (steps, rows, 3)).astype(np.float32)
  (a_ref, c_ref, h_ref, m_ref, p_ref, in_ref, out_ref), margin = _numpy_model(cfg, xs, ds, lr)
  assert margin > 1e-4  # no read sits on the threshold: float32 rounding cannot decide a commit
  assert in_ref.any() and (~in_ref).any() and np.abs(c_ref[-1]).sum() > 0  # the case exercises choppers and C
  tx = chopped_transfer(cfg, lr, key=3)
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for s in range(steps):
    upd, state = update({"w": AnalogGradient(jnp.asarray(xs[s]), jnp.asarray(ds[s]))}, state, params)
    params = optax.apply_updates(params, upd)
    leaf = state.leaves["w"]
    np.testing.assert_allclose(np.asarray(leaf.tiles[0].weights), a_ref[s], atol=2e-6, err_msg=f"A {s}")
    np.testing.assert_allclose(np.asarray(leaf.tiles[1].weights), c_ref[s], atol=1e-7, err_msg=f"C {s}")
    np.testing.assert_allclose(np.asarray(leaf.buffer), h_ref[s], atol=1e-4, err_msg=f"H {s}")
    np.testing.assert_array_equal(np.asarray(leaf.in_chop), in_ref[s])
    np.testing.assert_array_equal(np.asarray(leaf.out_chop), out_ref[s])
    if cfg.dynamic:
      np.testing.assert_allclose(np.asarray(leaf.running_mean), m_ref[s], atol=2e-6, err_msg=f"M {s}")
      np.testing.assert_allclose(np.asarray(leaf.past_mean), p_ref[s], atol=2e-6, err_msg=f"P {s}")
  np.testing.assert_allclose(np.asarray(params["w"]), c_ref[-1], atol=1e-7)
  assert int(leaf.transfer_counter) == steps * rows // 4 and int(leaf.ptr) == 0


# ---- choppers ------------------------------------------------------------------------------------------

def test_periodic_input_choppers_switch_every_period_of_sweeps():
  """in_chop_prob 0.25, regular: every column switches when read in sweeps 3, 7, 11, … (S = 4)."""
  cfg = ChoppedTransfer(device=CLEAN_CS, in_chop_prob=0.25, in_chop_random=False, transfer_io=PERFECT_IO)
  assert cfg.chop_period == 4
  n_in, transfers = 3, 30
  grads = {"w": AnalogGradient(jnp.full((10, n_in), 0.5), jnp.full((10, 2), 0.1))}
  tx, state = _init(cfg, 0.1, shape=(2, n_in))
  update = jax.jit(lambda s: tx.update(grads, s, {"w": visible(s)})[1])
  pattern = []
  for _ in range(transfers // 10):  # 10 rows per call: every row transfers one column
    state = update(state)
    pattern.append(np.asarray(state.leaves["w"].in_chop))
  expected = np.zeros(n_in, bool)
  want = []
  for t in range(transfers):
    sweep, c = divmod(t, n_in)
    if sweep % 4 == 3:
      expected[c] = ~expected[c]
    if t % 10 == 9:
      want.append(expected.copy())
  np.testing.assert_array_equal(np.stack(pattern), np.stack(want))
  assert int(state.leaves["w"].transfer_counter) == transfers // n_in


def test_random_choppers_switch_with_their_probabilities():
  """After one sweep, each input chopper has switched with in_chop_prob and each output chopper with
  out_chop_prob (that output choppers wait for the last column is checked by the numpy-model test)."""
  cfg = ChoppedTransfer(device=CLEAN_CS, in_chop_prob=0.3, out_chop_prob=0.6, transfer_io=PERFECT_IO)
  tx, state = _init(cfg, 0.1)
  grads = {"w": AnalogGradient(jnp.full((3, 3), 0.5), jnp.full((3, 2), 0.1))}  # 3 rows: every column once

  def sweep(key):
    leaf = tx.update(grads, state._replace(key=key), {"w": visible(state)})[1].leaves["w"]
    return leaf.in_chop, leaf.out_chop

  in_chop, out_chop = jax.jit(jax.vmap(sweep))(jax.random.split(jax.random.key(5), 1000))
  assert abs(float(jnp.mean(in_chop)) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / in_chop.size)
  assert abs(float(jnp.mean(out_chop)) - 0.6) < 4 * np.sqrt(0.6 * 0.4 / out_chop.size)
  per_column = np.asarray(jnp.mean(in_chop, axis=0))
  assert np.all(np.abs(per_column - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 1000))


def test_chopper_flips_the_fast_tile_but_not_the_transfer_direction():
  """With a constant gradient, A's column reverses once its chopper is switched, while C keeps moving in
  the SGD direction −d·x (S = 2: every column switches in odd sweeps)."""
  cfg = ChoppedTransfer(device=CLEAN_CS, in_chop_prob=0.5, in_chop_random=False, fast_lr=0.2, transfer_lr=4.0,
                        transfer_io=PERFECT_IO, update=UpdateParameters(pulse_type="deterministic_implicit"))
  x, d = np.array([[1.0, 0.5]], np.float32), np.array([[0.1, -0.2]], np.float32)
  tx, state = _init(cfg, 0.1, shape=(2, 2))
  a, c, _, _ = jax.jit(lambda s: _trace(tx, s, x, d, steps=8))(state)
  a, c = np.asarray(a), np.asarray(c)
  sgd_sign = np.sign(-d.T @ x)
  # sweeps 0, 2, … write +(−d x) into A, sweeps 1, 3, … write −(−d x): A's first column rises, then falls.
  # Column 0 is read at rows 0, 2, 4, 6 and switches after the reads in odd sweeps (rows 2 and 6).
  col0 = a[:, :, 0] * sgd_sign[None, :, 0]
  assert np.all(np.diff(col0[:3], axis=0) > 0) and np.all(np.diff(col0[2:7], axis=0) < 0)
  assert np.all(np.diff(col0[6:], axis=0) > 0)
  assert np.all(c[-1] * sgd_sign > 0)


# ---- rates, periods, validation ---------------------------------------------------------------------------

def test_auto_scale_running_maxima_and_pulse_count_lr():
  cfg = ChoppedTransfer(device=CLEAN_CS, auto_scale=True, fast_lr=0.5, transfer_io=PERFECT_IO)
  tx, state = _init(cfg, 0.1)
  x = jnp.array([[2.0, 0.0, -1.0], [0.0, 4.0, 0.0]])
  d = jnp.array([[0.5, 0.0], [0.0, -0.25]])
  leaf = jax.jit(lambda s: tx.update({"w": AnalogGradient(x, d)}, s, {"w": visible(s)})[1])(state).leaves["w"]
  tau = (1 - 0.99) / 2  # per row, 2 rows per call; the first value is copied
  np.testing.assert_allclose(float(leaf.m_x), (1 - tau) * 2 + tau * 4, rtol=1e-6)
  np.testing.assert_allclose(float(leaf.m_d), (1 - tau) * 0.5 + tau * 0.25, rtol=1e-6)
  lr = pulse_count_lr(cfg, jnp.float32(0.1), leaf.m_x, leaf.m_d)
  np.testing.assert_allclose(float(lr), 0.5 * 31 * 0.01 / (float(leaf.m_x) * float(leaf.m_d)), rtol=1e-6)
  plain = ChoppedTransfer(device=CLEAN_CS, fast_lr=0.5)
  assert float(pulse_count_lr(plain, jnp.float32(0.1), 0.0, 0.0)) == 0.5  # absolute (1.1.0)
  assert float(pulse_count_lr(plain.replace(scale_fast_lr=True), jnp.float32(0.1), 0.0, 0.0)) == np.float32(0.05)
  assert float(pulse_count_lr(plain.replace(fast_lr=0.0), jnp.float32(0.1), 0.0, 0.0)) == np.float32(0.1)


def test_transfer_periods_and_buffer_granularity():
  dev = M.limited_state_soft_bounds(4)  # n_states 4, dw 0.5
  cfg = ChoppedTransfer(device=dev)
  assert cfg.period(in_size=8, rows=5) == 1
  assert cfg.replace(transfer_every=3.0).period(8, 5) == 3
  assert cfg.replace(transfer_every=-2.0).period(8, 5) == 1  # max(1, round(4/8·2))
  assert cfg.replace(transfer_every=-6.0).period(2, 5) == 12
  assert cfg.replace(units_in_mbatch=True, transfer_every=0.5).period(8, 5) == 3  # ceil(0.5·5) rows
  np.testing.assert_allclose(float(cfg.buffer_granularity_of(8)), 0.5)
  np.testing.assert_allclose(float(cfg.replace(auto_granularity=1000.0).buffer_granularity_of(512)), 0.5 * 1000 / 512,
                             rtol=1e-6)
  assert ChoppedTransfer(device=dev, in_chop_prob=0.1).chop_period == 10
  assert ChoppedTransfer(device=dev, in_chop_prob=0.01).chop_period == 100
  assert ChoppedTransfer(device=dev, in_chop_prob=0.9).chop_period == 2


@pytest.mark.parametrize("cls, field, value, match", [
    (ChoppedTransfer, "in_chop_prob", 1.5, r"in_chop_prob = 1\.5 is invalid: allowed range is \[0\.0, 1\.0\]"),
    (ChoppedTransfer, "out_chop_prob", -0.1, r"out_chop_prob = -0\.1"),
    (ChoppedTransfer, "momentum", 2.0, r"momentum = 2\.0"),
    (ChoppedTransfer, "buffer_granularity", 0.0, r"buffer_granularity = 0\.0 is invalid: allowed range is > 0"),
    (ChoppedTransfer, "auto_granularity", -1.0, r"auto_granularity = -1\.0"),
    (ChoppedTransfer, "step", 0.0, r"step = 0\.0"),
    (ChoppedTransfer, "transfer_every", 0.0, r"transfer_every = 0\.0 is invalid: allowed range is != 0"),
    (ChoppedTransfer, "transfer_every", 0.2, r"transfer_every = 0\.2 is invalid: allowed range is >= 0\.5"),
    (ChoppedTransfer, "transfer_every", float("nan"), r"transfer_every = nan"),
    (ChoppedTransfer, "fast_lr", -1.0, r"fast_lr = -1\.0 is invalid: allowed range is >= 0"),
    (ChoppedTransfer, "transfer_lr", -0.5, r"transfer_lr = -0\.5"),
    (ChoppedTransfer, "auto_momentum", 1.5, r"auto_momentum = 1\.5"),
    (ChoppedTransfer, "in_chop_random", 1, r"in_chop_random = 1 is invalid: allowed range is True or False"),
    (ChoppedTransfer, "engine", "gpu", r"engine = 'gpu'"),
    (DynamicTransfer, "in_chop_prob", 0.0, r"DynamicTransfer\.in_chop_prob = 0\.0 .* \(0, 1\]"),
    (DynamicTransfer, "auto_momentum", 0.0, r"auto_momentum = 0\.0 is invalid: allowed range is \(0, 1\)"),
    (DynamicTransfer, "out_chop_prob", 0.1, r"out_chop_prob = 0\.1 is invalid: allowed range is 0"),
    (DynamicTransfer, "no_buffer", True, r"no_buffer = True"),
    (DynamicTransfer, "tail_weightening", 0.0, r"tail_weightening = 0\.0"),
    (DynamicTransfer, "buffer_cap", -1.0, r"buffer_cap = -1\.0"),
])
def test_validation(cls, field, value, match):
  with pytest.raises(ValueError, match=match):
    cls(device=CLEAN_CS, **{field: value})


def test_validation_of_combinations_and_types():
  with pytest.raises(ValueError, match=r"transfer_every = -1\.0 is invalid with units_in_mbatch=True"):
    ChoppedTransfer(device=CLEAN_CS, transfer_every=-1.0, units_in_mbatch=True)
  with pytest.raises(ValueError, match=r"transfer_update\.pulse_type = 'none'"):
    ChoppedTransfer(device=CLEAN_CS, transfer_update=UpdateParameters(pulse_type="none"))
  with pytest.raises(TypeError, match="device must be a PulsedDevice"):
    ChoppedTransfer(device="ConstantStep")
  with pytest.raises(TypeError, match="ChoppedTransfer"):
    chopped_transfer(M.ConstantStepDevice(), key=0)
  defaults = DynamicTransfer(device=CLEAN_CS)
  assert not defaults.in_chop_random and defaults.tail_weightening == 5.0 and defaults.buffer_cap == 0.0
  assert ChoppedTransfer(device=CLEAN_CS).in_chop_random


# ---- jit / vmap / training -----------------------------------------------------------------------------

def test_no_recompilation_and_vmap_over_seeds():
  traces = []
  cfg = DynamicTransfer(device=M.ConstantStepDevice(dw_min=0.05, **{**CLEAN, "dw_min_std": 0.3}), in_chop_prob=0.5,
                        auto_scale=True, fast_lr=0.1, auto_granularity=10.0, transfer_io=PERFECT_IO)
  grads = {"w": AnalogGradient(jnp.ones((2, 3)) * 0.5, jnp.ones((2, 2)) * 0.1)}
  params = {"w": jnp.zeros((2, 3), jnp.float32)}
  tx0, state = _init(cfg, 0.05)

  @jax.jit
  def step(state):
    traces.append(1)
    return tx0.update(grads, state, params)[1]

  state = step(step(state))
  assert len(traces) == 1 and int(state.count) == 2 and int(state.leaves["w"].rows) == 4
  # a batch of states from different seeds (device draws and pulses), updated under vmap
  states = [chopped_transfer(cfg, 0.05, key=k).init(params) for k in range(4)]
  states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  states = jax.jit(jax.vmap(lambda s: tx0.update(grads, s, params)[1]))(states)
  fast = np.asarray(states.leaves["w"].tiles[0].weights)
  assert fast.shape == (4, 2, 3) and not np.array_equal(fast[0], fast[1])
  assert np.asarray(states.leaves["w"].in_chop).shape == (4, 3)


@pytest.mark.parametrize("algo", ["ttv3", "agad"])
def test_least_squares_loss_decreases(algo):
  """20-state SoftBounds devices, an 8×16 least-squares problem: the loss falls well below its start
  (TT-v3 with AIHWKit's default, noisy and quantized, transfer reads; AGAD with perfect reads)."""
  dev = M.limited_state_soft_bounds(20)
  common = dict(device=dev, fast_lr=0.1, auto_scale=True, auto_granularity=1000.0, in_chop_prob=0.1)
  if algo == "ttv3":
    cfg = ChoppedTransfer(**common)
  else:
    cfg = DynamicTransfer(tail_weightening=10.0, transfer_io=PERFECT_IO, **common)
  tx = chopped_transfer(cfg, 0.5, key=0)
  w_true = jax.random.uniform(jax.random.key(100), (8, 16), minval=-0.6, maxval=0.6)
  params = {"w": jnp.zeros((8, 16), jnp.float32)}

  def step(carry, i):
    params, state = carry
    x = jax.random.uniform(jax.random.fold_in(jax.random.key(1), i), (8, 16), minval=-1, maxval=1)
    err = x @ (params["w"] - w_true).T
    upd, state = tx.update({"w": AnalogGradient(x, err / 8)}, state, params)
    return (optax.apply_updates(params, upd), state), 0.5 * jnp.mean(jnp.sum(err**2, axis=-1))

  (_, state), losses = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(500)))((params, tx.init(params)))
  losses = np.asarray(losses)
  assert losses[-50:].mean() < 0.2 * losses[:20].mean(), (losses[:20].mean(), losses[-50:].mean())
  leaf = state.leaves["w"]
  if algo == "agad":  # the reference P holds a past phase's running mean, not zeros
    assert np.abs(np.asarray(leaf.past_mean)).sum() > 0 and np.asarray(leaf.switched).dtype == bool


def test_presets():
  from mrl_jax.optim import presets
  if not hasattr(presets, "ttv3"):
    pytest.skip("ttv3/ttv4 presets not registered yet")
  v3, v4 = presets.ttv3(4), presets.ttv4(10)
  assert type(v3) is ChoppedTransfer and type(v4) is DynamicTransfer
  assert v3.device.dw_min == 0.5 and v4.device.dw_min == 0.2
  for cfg in (v3, v4):
    assert (cfg.fast_lr, cfg.auto_scale, cfg.auto_granularity, cfg.in_chop_prob, cfg.out_chop_prob,
            cfg.transfer_every) == (0.1, True, 1000.0, 0.1, 0.0, 1.0)
  assert v3.in_chop_random and not v4.in_chop_random and v4.tail_weightening == 10.0
