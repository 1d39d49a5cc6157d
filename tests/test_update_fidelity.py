"""Pulsed-update statistics against AIHWKit 1.1.0 (fixtures ``aihwkit_update_mean``, ``aihwkit_noise_dist``).

AIHWKit's random streams (C ``rand()``, a 32768-entry Gaussian table) cannot be reproduced, so the
comparisons are statistical with fixed keys: means within 4 standard errors of the difference, and
two-sample Kolmogorov–Smirnov tests (p > 0.01) for noisy distributions. Every device, update and I/O is the
translator's reading (``mrl_jax.aihwkit.from_rpu_config``) of the fixture's AIHWKit configuration.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrl_jax as M
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.io import analog_mvm
from mrl_jax.update import pulsed_update
from tests.conftest import ks_2samp, load_fixture

MEAN, MEAN_META = load_fixture("aihwkit_update_mean")
NOISE, NOISE_META = load_fixture("aihwkit_noise_dist")
MEAN_CASES = sorted(MEAN_META["cases"])


def _config(meta, case: str):
  """The translated AIHWKit configuration of fixture case ``case``."""
  return from_rpu_config(meta["cases"][case]["plain_rpu_config"])


def test_mean_cases_present():
  assert MEAN_CASES == ["cs_batch", "cs_fixed31", "cs_um", "cs_um_ceil", "sb_fixed31", "sb_um"]


def draw_updates(device, update, x, d, lr, n, seed=0, engine="auto", shape=None):
  """``n`` independent single updates from W = 0: returns ΔW samples ``[n, out, in]``."""
  x = jnp.atleast_2d(jnp.asarray(x, jnp.float32))
  d = jnp.atleast_2d(jnp.asarray(d, jnp.float32))
  shape = shape or (d.shape[1], x.shape[1])
  keys = jax.random.split(jax.random.key(seed), n)

  def one(key):
    k_dev, k_up = jax.random.split(key)
    params = device.init(k_dev, shape)
    return pulsed_update(jnp.zeros(shape, jnp.float32), params, x, d, lr, k_up, device, update, engine=engine)

  return np.asarray(jax.jit(jax.vmap(one))(keys))


@pytest.mark.parametrize("case", MEAN_CASES)
def test_mean_update_matches_aihwkit(case):
  """Clean ConstantStep and SoftBounds devices (dw_min 0.01, ±1), with and without update management."""
  cfg = _config(MEAN_META, case)
  device, update = cfg.config, cfg.update
  n = int(MEAN[f"{case}_n"])
  dw = draw_updates(device, update, MEAN[f"{case}_x"], MEAN[f"{case}_d"], float(MEAN[f"{case}_lr"]), n)
  mean, std = dw.mean(0), dw.std(0, ddof=1)
  se = np.sqrt(std**2 / n + MEAN[f"{case}_std"] ** 2 / n)
  diff = np.abs(mean - MEAN[f"{case}_mean"])
  assert np.all(diff <= 4 * se + 1e-7), (case, diff / np.maximum(se, 1e-12))
  if isinstance(device, M.ConstantStepDevice):  # constant steps: the expectation is exactly the SGD update
    sgd = MEAN[f"{case}_sgd"]
    assert np.all(np.abs(mean - sgd) <= 4 * std / np.sqrt(n) + 1e-7), case
    counts = np.rint(np.abs(dw) / device.dw_min)
    np.testing.assert_allclose(np.abs(dw), counts * device.dw_min, atol=1e-6)  # whole pulses only
    if update.update_bl_management:  # the largest count per update is AIHWKit's BL
      assert counts.max() == MEAN[f"{case}_maxcount"].max()


def test_float32_k_edge_case():
  """lr 0.05, dw 0.01, |x|max 1, |d|max 0.8 gives k = 4.0000005 in float32, so BL = 5 (AIHWKit)."""
  from mrl_jax.pulses import row_bl_and_scales
  bl, _, _ = row_bl_and_scales(M.UpdateParameters(), jnp.float32(1.0), jnp.float32(0.8), jnp.float32(0.05), 0.01)
  assert int(bl) == 5
  assert MEAN["cs_um_ceil_maxcount"].max() == 5


@pytest.mark.parametrize("case", ["cs_c2c", "sb_c2c"])
def test_noisy_update_distribution(case):
  """Per-element ΔW with cycle-to-cycle noise (dw_min_std 0.3, no spreads): KS against AIHWKit's 3000 samples."""
  cfg = _config(NOISE_META, case)
  ref = NOISE[f"{case}_samples"]
  dw = draw_updates(cfg.config, cfg.update, NOISE[f"{case}_x"], NOISE[f"{case}_d"],
                    float(NOISE[f"{case}_lr"]), ref.shape[0], seed=3)
  for i in range(ref.shape[1]):
    for j in range(ref.shape[2]):
      if np.ptp(ref[:, i, j]) == 0:
        np.testing.assert_array_equal(dw[:, i, j], ref[:, i, j])
      else:
        assert ks_2samp(dw[:, i, j], ref[:, i, j]) > 0.01, (case, i, j)


def test_default_device_update_distribution():
  """Default ConstantStep (dtod + c2c) 64×64, one update at k = 10: pooled ΔW distribution (KS)."""
  cfg = _config(NOISE_META, "cs_default_dw")
  ref = NOISE["cs_default_dw_samples"]
  dw = draw_updates(cfg.config, cfg.update, np.full(64, 0.5), np.full(64, 0.5),
                    float(NOISE["cs_default_dw_lr"]), ref.shape[0], seed=5)
  assert ks_2samp(dw, ref) > 0.01


def test_noisy_transfer_read_distribution():
  """One-hot read through the default (noisy, quantized) I/O with NM/BM off: KS per output line."""
  io = _config(NOISE_META, "transfer_read").forward_io
  ref = NOISE["transfer_read_samples"]
  x = jnp.zeros((ref.shape[0], 8), jnp.float32).at[:, 0].set(1.0)
  y = np.asarray(analog_mvm(jnp.asarray(NOISE["transfer_read_W"]), x, io, jax.random.key(7)))
  for i in range(ref.shape[1]):
    assert ks_2samp(y[:, i], ref[:, i]) > 0.01, i
