"""Device models against AIHWKit 1.1.0: one-pulse step curves, hidden-parameter draws. Every device and update
is the translator's reading (``mrl_jax.aihwkit.from_rpu_config``) of the fixture's AIHWKit configuration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrl_jax as M
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.update import pulsed_update
from tests.conftest import ks_2samp, load_fixture

CURVES, CURVES_META = load_fixture("aihwkit_step_curves")
DEVICES = sorted(CURVES_META["devices"])
ONE_PULSE = M.UpdateParameters(desired_bl=1, update_management=False, update_bl_management=False)


def _curve_config(name: str):
  """The step-curve tile of device ``name``: its configuration, translated, with the fixture's one-pulse update."""
  cfg = from_rpu_config(CURVES_META["devices"][name]["plain_rpu_config"])
  assert cfg.update == ONE_PULSE, cfg.update  # desired_bl 1, no update management: one pulse per update
  return cfg


@pytest.mark.parametrize("name", DEVICES)
@pytest.mark.parametrize("engine", ["jnp", "native"])
def test_one_pulse_step_curve(name, engine, native_available):
  """Δw of exactly one deterministic pulse at each w0 equals AIHWKit's within 1e-6."""
  if engine == "native" and not native_available:
    pytest.fail("native extension not built")
  cfg = _curve_config(name)
  device = cfg.config
  w0 = CURVES[f"{name}_w0"][None, :]
  params = device.init(jax.random.key(0), w0.shape)
  x = jnp.ones((1, w0.shape[1]), jnp.float32)
  for direction, d in (("up", -1.0), ("down", 1.0)):
    new = pulsed_update(jnp.asarray(w0), params, x, jnp.full((1, 1), d, jnp.float32), 1.0, jax.random.key(1),
                        device, cfg.update, engine=engine)
    np.testing.assert_allclose(np.asarray(new - w0)[0], CURVES[f"{name}_{direction}"], atol=1e-6, rtol=0,
                               err_msg=f"{name} {direction}")


@pytest.mark.parametrize("name", DEVICES)
def test_clean_hidden_parameters_equal_aihwkit(name):
  """With spreads off, populate() is deterministic: bounds, scales, slopes, reference, gammas match."""
  device = _curve_config(name).config
  params = device.init(jax.random.key(0), (1, 41))
  for key in params:
    fixture_key = f"{name}_hidden_{key}"
    if fixture_key in CURVES.files:
      np.testing.assert_allclose(np.asarray(params[key]), CURVES[fixture_key], rtol=2e-6, atol=1e-9, err_msg=key)


NOISE, NOISE_META = load_fixture("aihwkit_noise_dist")
_DEFAULT_HIDDEN = "_default_hidden"
_PREFIXES = sorted(case[:-len(_DEFAULT_HIDDEN)] for case in NOISE_META["cases"] if case.endswith(_DEFAULT_HIDDEN))


def test_default_device_cases_present():
  assert _PREFIXES == ["cs", "linear", "pow", "sb", "sbref"]


@pytest.mark.parametrize("prefix", _PREFIXES)
def test_hidden_parameter_distributions(prefix):
  """Device-to-device draws of default devices (SoftBounds: dw_min 0.05): two-sample KS against AIHWKit (4096
  crosspoints)."""
  device = from_rpu_config(NOISE_META["cases"][prefix + _DEFAULT_HIDDEN]["plain_rpu_config"]).config
  params = device.init(jax.random.key(11), (64, 64))
  checked = 0
  for key, value in params.items():
    ref = f"{prefix}_default_hidden_{key}"
    if ref not in NOISE.files:
      continue
    ref_values, ours = NOISE[ref].ravel(), np.asarray(value).ravel()
    if np.ptp(ref_values) == 0:  # constant parameter: must be equal
      np.testing.assert_allclose(ours, ref_values, rtol=1e-6, err_msg=key)
    else:
      assert ks_2samp(ours, ref_values) > 0.01, key
    checked += 1
  assert checked >= 7


def test_n_states_constructor():
  dev = M.limited_state_soft_bounds(4)
  assert dev.dw_min == 0.5 and dev.n_states == 4
  assert M.SoftBoundsDevice(w_max=1, w_min=-1).with_n_states(10).dw_min == pytest.approx(0.2)
