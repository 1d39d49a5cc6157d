"""``UpdateParameters.aggregate_pulses``: AIHWKit's CUDA form of the ConstantStep update.

AIHWKit's published wheels are CPU-only, so its CUDA kernel cannot produce fixtures here. The tests
check the kernel's defining formula instead (``UpdateFunctorConstantStep`` in AIHWKit's
``pwu_kernel.h``): n pulses of a row add ``n·dw·(1 + σξ/√n)``, clipped once, which has the mean and
variance of n single noisy pulses away from the bounds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrl_jax as M
from mrl_jax.update import pulsed_update

SUMMED = M.UpdateParameters(aggregate_pulses=True)


def _one_row_update(device, update, shape, key=0, d_value=-1.0, lr=0.01):
  """Weights after one row with x = 1, d = d_value (every crosspoint gets the same pulse count)."""
  params = device.init(jax.random.key(key), shape)
  w0 = jnp.zeros(shape, jnp.float32)
  x = jnp.ones((1, shape[1]), jnp.float32)
  d = jnp.full((1, shape[0]), d_value, jnp.float32)
  w = jax.jit(lambda: pulsed_update(w0, params, x, d, lr, jax.random.key(key + 1), device, update))()
  return np.asarray(w), params


def test_one_pulse_per_row_is_bitwise_the_pulse_by_pulse_update():
  device = M.ConstantStepDevice(dw_min=0.05)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (5, 9)).astype(np.float32))
  d = jnp.asarray(rng.uniform(-1, 1, (5, 7)).astype(np.float32))
  params = device.init(jax.random.key(1), (7, 9))
  w0 = jnp.asarray(rng.uniform(-0.3, 0.3, (7, 9)).astype(np.float32))
  one = M.UpdateParameters(desired_bl=1)
  run = lambda up: np.asarray(pulsed_update(w0, params, x, d, 0.3, jax.random.key(2), device, up))
  single = run(one)
  assert np.mean(single != np.asarray(w0)) > 0.3
  np.testing.assert_array_equal(run(one.replace(aggregate_pulses=True)), single)


def test_step_mean_and_variance_match_n_noisy_pulses():
  """Δw / dw_up = n + σ·√n·ξ in both modes: mean within 4 SE, variance within 4 SE of its estimator."""
  sigma, shape = 0.3, (200, 200)
  device = M.ConstantStepDevice(dw_min=0.001, dw_min_std=sigma, w_max=1.0, w_min=-1.0, w_max_dtod=0.0,
                                w_min_dtod=0.0)
  update = M.UpdateParameters(pulse_type="mean_count")
  clean, params = _one_row_update(device.replace(dw_min_std=0.0), update, shape)
  n = np.rint(clean / np.asarray(params["dwmin_up"]))
  count = n.flat[0]
  assert np.all(n == count) and count >= 10  # one pulse count everywhere, far from the bounds
  by_pulse, _ = _one_row_update(device, update, shape)
  summed, _ = _one_row_update(device, update.replace(aggregate_pulses=True), shape)
  assert np.mean(summed != by_pulse) > 0.99  # one draw per crosspoint instead of n
  for w in (by_pulse, summed):
    steps = (w / np.asarray(params["dwmin_up"])).ravel()
    mean_se = np.sqrt(sigma**2 * count / steps.size)
    var = sigma**2 * count
    var_se = var * np.sqrt(2.0 / (steps.size - 1))
    assert abs(steps.mean() - count) < 4 * mean_se
    assert abs(steps.var(ddof=1) - var) < 4 * var_se


def test_summed_step_is_clipped_to_the_bound():
  device = M.ConstantStepDevice(dw_min=0.05, dw_min_dtod=0.0, w_max=0.3, w_min=-0.3, w_max_dtod=0.0, w_min_dtod=0.0)
  w, params = _one_row_update(device, SUMMED.replace(pulse_type="mean_count"), (20, 30), lr=1.0)  # 20 pulses
  np.testing.assert_array_equal(w, np.asarray(params["max_bound"]))


def test_other_devices_pulse_one_by_one():
  device = M.SoftBoundsDevice(dw_min=0.05)
  plain, _ = _one_row_update(device, M.UpdateParameters(), (8, 9))
  summed, _ = _one_row_update(device, SUMMED, (8, 9))
  np.testing.assert_array_equal(summed, plain)


def test_large_noise_is_rejected_with_the_field_names():
  device = M.ConstantStepDevice(dw_min_std=0.5)
  with pytest.raises(ValueError, match="aggregate_pulses.*dw_min_std <= 0.33"):
    _one_row_update(device, SUMMED, (4, 4))
  with pytest.raises(ValueError, match="aggregate_pulses"):
    M.UpdateParameters(aggregate_pulses="yes")
