"""Transfer periods counted in rows (``units_in_mbatch=False``), the scalar period shorthand, per-tile devices,
``random_selection`` and ``with_reset_prob`` of ``TransferCompound``.

The traces come from AIHWKit 1.1.0 (``tests/fixtures/make_row_period_fixtures.py``): each case's configuration is
stored in plain form and translated here with ``mrl_jax.from_rpu_config``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import mrl_jax as M
from mrl_jax import optim as O
from mrl_jax.analog_state import map_weight_state, weight_states
from mrl_jax.optim.base import AnalogGradient
from mrl_jax.pulses import SINGLE_PULSE_UPDATE, UpdateParameters
from tests.conftest import CLEAN, load_fixture

ROWS, ROWS_META = load_fixture("aihwkit_row_periods")
CASES = tuple(ROWS_META["cases"])


def _translated(case: str):
  return M.from_rpu_config(ROWS_META["cases"][case]["plain_rpu_config"])


def _trace(tx, x, d):
  """Visible weights and per-tile hidden weights / buffers after each update of ``x[t], d[t]`` from W = 0."""
  params = {"w": jnp.zeros((3, 4), jnp.float32)}

  def step(carry, xd):
    p, s = carry
    upd, s = tx.update({"w": AnalogGradient(*xd)}, s, p)
    p = optax.apply_updates(p, upd)
    leaf = weight_states(s)[("w",)]
    hidden = {f"hidden_weights_{k}": t.weights for k, t in enumerate(leaf.tiles)}
    if leaf.buffer is not None:
      hidden.update({f"buffered_FP_weight_{k}": b for k, b in enumerate(leaf.buffer)})
    return (p, s), (p["w"], hidden)

  _, out = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), (x, d)))(params)
  return out


@pytest.mark.parametrize("engine", ("jnp", "native"))
@pytest.mark.parametrize("case", CASES)
def test_trace_matches_aihwkit(case, engine, native_available):
  """Bit for bit, after every mini-batch of 8 rows: every tile and every buffer. Periods of 3, 5 and 7 rows fire
  inside mini-batches; the native op and the jnp twin both give AIHWKit's trace.

  The visible weight ``Σ γ_k W_k`` of the γ = 0.5 cases is AIHWKit's BLAS ``gemv`` (``VectorRPUDevice::
  reduceToWeights``), whose summation order and fused multiply-adds are the BLAS build's: it agrees to within
  2 ulp of the largest term (AIHWKit 1.1.0 as installed is the ground truth; we sum in tile order)."""
  if engine == "native" and not native_available:
    pytest.fail("the native op is not built")
  config = _translated(case)
  tx = config.optimizer(ROWS_META["lr"], key=0, engine=engine)
  trace, hidden = _trace(tx, jnp.asarray(ROWS["x"]), jnp.asarray(ROWS["d"]))
  assert sorted(hidden) == ROWS_META["cases"][case]["hidden_keys"]
  gammas = config.config.gammas
  largest = max(g * np.abs(ROWS[f"{case}_hidden_weights_{k}"]).max() for k, g in enumerate(gammas))
  np.testing.assert_allclose(np.asarray(trace), ROWS[f"{case}_W"], rtol=0,
                             atol=0 if set(gammas) <= {0.0, 1.0} else 2 * np.spacing(np.float32(largest)),
                             err_msg=case)
  for name, ours in hidden.items():
    np.testing.assert_array_equal(np.asarray(ours), ROWS[f"{case}_{name}"], err_msg=f"{case} {name}")


def test_translated_periods_and_defaults():
  """What the fixture's configurations translate to: rows or mini-batches, the scalar shorthand's periods per
  weight shape, and the buffered compound's default transfer pulses (AIHWKit's, stored in the plain form) equal to
  the default of a hand-built ``TransferCompound(buffer=...)``."""
  cfg = {case: _translated(case).config for case in CASES}
  assert not cfg["ttv1_rows"].units_in_mbatch and cfg["ttv1_rows"].row_periods((3, 4)) == (3,)
  assert cfg["k3_rows_vec"].row_periods((3, 4)) == (3, 5)
  assert cfg["k3_rows_scalar"].row_periods((3, 4)) == (2, 6)  # 2·(out 3 / 1 read)
  assert cfg["k3_mbatch_scalar"].batch_periods((3, 4)) == (1, 3)
  assert cfg["k3_mbatch_scalar"].batch_periods((10, 4)) == (1, 10)
  hand = O.TransferCompound(M.SoftBoundsDevice(), buffer=O.BufferSettings())
  assert hand.transfer_update == cfg["ttv2_rows"].transfer_update == SINGLE_PULSE_UPDATE
  assert O.TransferCompound(M.SoftBoundsDevice()).transfer_update == UpdateParameters()


# ---- the native op and the jnp twin under noise -------------------------------------------------------------------

def _noisy_rows_config(**kw):
  return O.TransferCompound(M.SoftBoundsDevice(dw_min=0.05), n_tiles=3, gamma=0.5, transfer_every=(3, 7, 0),
                            transfer_lr=(1.0, 4.0, 1.0), units_in_mbatch=False, fast_lr=0.5, **kw)


@pytest.mark.parametrize("buffered", (False, True))
def test_row_periods_native_equals_jnp_under_noise(buffered, native_available):
  """Stochastic pulses, device spreads and cycle-to-cycle noise, noisy transfer reads: the per-row scan is
  bit-identical between the native op and the jnp twin, for plain and buffered transfers."""
  if not native_available:
    pytest.fail("the native op is not built")
  cfg = _noisy_rows_config(buffer=O.BufferSettings() if buffered else None)
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.uniform(-1, 1, (5, 8, 4)), jnp.float32)
  d = jnp.asarray(rng.uniform(-1, 1, (5, 8, 3)), jnp.float32)
  runs = [_trace(O.transfer_compound(cfg, 1.0, key=11, engine=e), x, d) for e in ("jnp", "native")]
  for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.any(np.asarray(runs[0][1]["hidden_weights_2"][-1]) != 0)  # transfers reached the top tile


def test_row_counted_transfer_fires_after_its_row():
  """With a zero gradient except in row 5 of the first mini-batch and a period of 4 rows, the first transfer
  (after row 4) moves nothing and the second (after row 8) moves column 1 of what row 5 wrote; a period of 5
  rows would already have moved it after row 5 into column 0."""
  dev = M.ConstantStepDevice(dw_min=0.01, **CLEAN)
  x = np.zeros((2, 8, 2), np.float32)
  d = np.zeros((2, 8, 1), np.float32)
  x[0, 4] = [1.0, 1.0]
  d[0, 4] = [-1.0]
  for period, moved in ((4, [0.0, 1.0]), (5, [1.0, 0.0])):
    cfg = O.TransferCompound(dev, transfer_every=period, units_in_mbatch=False, fast_lr=0.1,
                             update=UpdateParameters(pulse_type="deterministic_implicit"),
                             transfer_update=UpdateParameters(pulse_type="deterministic_implicit"),
                             transfer_io=M.PERFECT_IO)
    params = {"w": jnp.zeros((1, 2), jnp.float32)}
    tx = O.transfer_compound(cfg, 1.0, key=0)
    s = tx.init(params)
    _, s = tx.update({"w": AnalogGradient(jnp.asarray(x[0]), jnp.asarray(d[0]))}, s, params)
    leaf = weight_states(s)[("w",)]
    fast = np.asarray(leaf.tiles[0].weights)[0]
    np.testing.assert_allclose(fast, [0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(leaf.tiles[1].weights)[0], 0.1 * np.asarray(moved), rtol=1e-6,
                               err_msg=f"period {period}")
    assert int(leaf.rows[0]) == 8 % period
    assert int(M.get_hidden_parameters(s, ("w",))["rows"][0]) == 8 % period  # the tile API lists the counter


# ---- random_selection and with_reset_prob, statistically -----------------------------------------------------------

def _one_transfer(cfg, key, a_weights):
  """One update with a zero gradient from a fast tile holding ``a_weights``: ``(A after, C after)``."""
  params = {"w": jnp.zeros(a_weights.shape, jnp.float32)}
  tx = O.transfer_compound(cfg, 1.0, key=key)
  s = tx.init(params)
  leaf = weight_states(s)[("w",)]
  tiles = [leaf.tiles[0]._replace(weights=a_weights), leaf.tiles[1]]
  s = map_weight_state(s, ("w",), lambda l: l._replace(tiles=tiles))
  zeros = AnalogGradient(jnp.zeros((1, a_weights.shape[1])), jnp.zeros((1, a_weights.shape[0])))
  _, s = tx.update({"w": zeros}, s, params)
  leaf = weight_states(s)[("w",)]
  return leaf.tiles[0].weights, leaf.tiles[1].weights


N_DRAWS = 600


def test_random_selection_reads_uniform_columns():
  """``random_selection``: the column moved into C is uniform over the 6 columns (χ² test at p > 0.001 over 600
  fixed keys); without it, the first transfer reads column 0."""
  dev = M.ConstantStepDevice(dw_min=0.01, **CLEAN)
  a = jnp.full((2, 6), 0.5, jnp.float32)
  cfg = O.TransferCompound(dev, random_selection=True, transfer_io=M.PERFECT_IO, fast_lr=0.1)
  run = jax.jit(jax.vmap(lambda k: _one_transfer(cfg, k, a)[1]))
  c = np.asarray(run(jax.random.split(jax.random.key(3), N_DRAWS)))
  moved = np.abs(c).sum(axis=1)  # [draws, 6]
  assert np.all((moved > 0).sum(axis=1) == 1)  # one column per transfer
  counts = np.bincount(moved.argmax(axis=1), minlength=6)
  assert stats.chisquare(counts).pvalue > 1e-3, counts
  plain = _one_transfer(cfg.replace(random_selection=False), jax.random.key(0), a)[1]
  assert np.all(np.asarray(plain)[:, 0] > 0) and np.all(np.asarray(plain)[:, 1:] == 0)


def test_with_reset_prob_resets_the_read_column():
  """``with_reset_prob = 0.3``: after the read, the read column of A is reset (reset value 0.2 + 0.01·ξ, clipped)
  in a fraction of transfers within 4 binomial standard errors of 0.3; other columns are untouched, and C (written
  with deterministic pulses) receives the column as read, before the reset, in every draw."""
  p = 0.3
  dev = M.ConstantStepDevice(dw_min=0.01, reset=0.2, reset_std=0.01, **CLEAN)
  a = jnp.full((3, 4), 0.5, jnp.float32)
  cfg = O.TransferCompound(dev, with_reset_prob=p, transfer_io=M.PERFECT_IO, fast_lr=0.1,
                           transfer_update=UpdateParameters(pulse_type="deterministic_implicit"))
  a_after, c_after = jax.jit(jax.vmap(lambda k: _one_transfer(cfg, k, a)))(
      jax.random.split(jax.random.key(4), N_DRAWS))
  a_after, c_after = np.asarray(a_after), np.asarray(c_after)
  np.testing.assert_array_equal(a_after[:, :, 1:], 0.5)
  reset = np.all(a_after[:, :, 0] != 0.5, axis=1)
  assert np.all(np.any(a_after[:, :, 0] != 0.5, axis=1) == reset)  # the whole column or nothing
  se = np.sqrt(p * (1 - p) / N_DRAWS)
  assert abs(reset.mean() - p) < 4 * se, reset.mean()
  values = a_after[reset][:, :, 0].ravel()
  assert abs(values.mean() - 0.2) < 4 * 0.01 / np.sqrt(values.size) and 0.005 < values.std(ddof=1) < 0.015
  assert np.all(c_after[:, :, 0] > 0)
  np.testing.assert_array_equal(c_after, np.broadcast_to(c_after[0], c_after.shape))  # the read preceded the reset


# ---- per-tile devices ----------------------------------------------------------------------------------------------

def test_per_tile_devices():
  """A list of K devices gives each tile its own (bounds and granularity differ per tile) and sets n_tiles; the
  gradient write's update management uses the mean granularity as with a fast device."""
  devs = [M.ConstantStepDevice(dw_min=dw, w_max=wm, w_min=-wm, **CLEAN) for dw, wm in ((0.01, 0.5), (0.02, 1.0),
                                                                                        (0.05, 2.0))]
  cfg = O.TransferCompound(devs, gamma=0.5)
  assert cfg.n_tiles == 3 and [cfg.device_of(k) for k in range(3)] == devs
  assert cfg.gradient_granularity == pytest.approx((0.01 + 0.02 + 0.05) / 3)
  s = O.transfer_compound(cfg, 0.1, key=0).init({"w": jnp.zeros((2, 2))})
  leaf = weight_states(s)[("w",)]
  assert [float(t.params["max_bound"][0, 0]) for t in leaf.tiles] == [0.5, 1.0, 2.0]


# ---- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(device=[M.SoftBoundsDevice()] * 3, n_tiles=4), r"TransferCompound.device has 3 devices: allowed is exactly "
                                                         r"n_tiles = 4"),
    (dict(device=[M.SoftBoundsDevice()] * 2, fast_device=M.SoftBoundsDevice()), r"TransferCompound.fast_device"),
    (dict(transfer_every=(1.0, 2.5, 0.0), n_tiles=3), r"transfer_every\[1\] = 2.5 is invalid: allowed are whole "
                                                      r"mini-batches"),
    (dict(transfer_lr=(1.0, 1.0, 1.0)), r"TransferCompound.transfer_lr has 3 entries: allowed is exactly n_tiles = 2"),
    (dict(n_tiles=3, warm_start="direct", units_in_mbatch=False), r"units_in_mbatch = False is invalid with "
                                                                  r"warm_start = 'direct'"),
    (dict(warm_start="cuda_exact"), r"warm_start = 'cuda_exact' needs n_tiles >= 3, got 2"),
    (dict(with_reset_prob=0.1, transfer_columns=False), r"transfer_columns = False is invalid with with_reset_prob"),
    (dict(with_reset_prob=0.1, buffer=O.BufferSettings()), r"buffer = .* is invalid with with_reset_prob"),
    (dict(with_reset_prob=1.5), r"with_reset_prob = 1.5 is invalid: allowed range is \[0.0, 1.0\]"),
])
def test_bad_compound_config_names_the_field(kwargs, message):
  kwargs.setdefault("device", M.SoftBoundsDevice())
  with pytest.raises(ValueError, match=message):
    O.TransferCompound(**kwargs)


def test_scalar_period_that_is_not_whole_mini_batches_is_refused_at_init():
  """``transfer_every = 1`` with 3 tiles and 2 reads per transfer gives tile 1 a period of out/2 = 1.5
  mini-batches for an out size of 3: refused when the weight's shape is known, naming field, value and shape."""
  cfg = O.TransferCompound(M.SoftBoundsDevice(), n_tiles=3, n_reads_per_transfer=2)
  tx = O.transfer_compound(cfg, 0.1, key=0)
  tx.init({"w": jnp.zeros((4, 2))})  # 4 / 2 = 2 mini-batches: fine
  with pytest.raises(ValueError, match=r"transfer_every\[1\] = 1.5 is invalid \(transfer_every = 1.0 for a weight "
                                       r"of shape \(3, 2\)\)"):
    tx.init({"w": jnp.zeros((3, 2))})
