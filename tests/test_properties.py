"""Property tests (hypothesis): for generated inputs and device parameters, the pulsed update never
raises, never produces NaN, keeps every weight inside its crosspoint's bounds, and the native kernel
equals the jnp reference bit for bit. Shapes and static configs are fixed per test so that the
1,000+ examples reuse a handful of compilations."""

import functools

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import mrl_jax as M
from mrl_jax.update import pulsed_update

OUT, IN, ROWS = 5, 7, 3
EXAMPLES = 180  # × 6 configurations = 1,080 examples

CONFIGS = {
    "constant": (M.ConstantStepDevice(dw_min=0.05), M.UpdateParameters()),
    "softbounds": (M.SoftBoundsDevice(dw_min=0.1), M.UpdateParameters(desired_bl=7)),
    "linear_add": (M.LinearStepDevice(dw_min=0.1, gamma_up=0.5, mult_noise=False),
                   M.UpdateParameters(update_bl_management=False)),
    "sbref": (M.SoftBoundsReferenceDevice(dw_min=0.1, reference_std=0.2, subtract_symmetry_point=True),
              M.UpdateParameters(pulse_type="mean_count")),
    "powstep": (M.PowStepDevice(dw_min=0.1, pow_gamma=2.0), M.UpdateParameters()),
    "expstep": (M.ExpStepDevice(dw_min=0.1, dw_min_std_add=0.01, dw_min_std_slope=0.02),
                M.UpdateParameters(update_management=False, update_bl_management=False, desired_bl=5)),
}

finite = st.floats(-2.0, 2.0, allow_nan=False, width=32)
weird = st.one_of(finite, st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 3.0e38, float("nan"), float("inf")]))


@functools.lru_cache(maxsize=None)
def _runners(name):
  device, update = CONFIGS[name]
  fn = lambda engine, w, p, x, d, lr, seed: pulsed_update(w, p, x, d, lr, jax.random.key(seed), device, update,
                                                          engine=engine)
  return (jax.jit(functools.partial(fn, "native")), jax.jit(functools.partial(fn, "jnp")), device)


@st.composite
def cases(draw):
  x = draw(hnp.arrays(np.float32, (ROWS, IN), elements=draw(st.sampled_from([finite, weird]))))
  d = draw(hnp.arrays(np.float32, (ROWS, OUT), elements=finite))
  lr = draw(st.one_of(st.floats(0.0, 2.0, width=32), st.sampled_from([-0.1, 0.0, 1e3, float("nan")])))
  seed = draw(st.integers(0, 2**31 - 1))
  spread = draw(st.floats(0.0, 0.6))
  w_frac = draw(hnp.arrays(np.float32, (OUT, IN), elements=st.floats(0.0, 1.0, width=32)))
  return x, d, np.float32(lr), seed, spread, w_frac


def _check(name, case):
  native, reference, device = _runners(name)
  x, d, lr, seed, spread, w_frac = case
  params = device.replace(dw_min_dtod=spread, w_max_dtod=spread, w_min_dtod=spread).init(
      jax.random.key(seed % 1000), (OUT, IN))
  lo, hi = np.asarray(params["min_bound"]), np.asarray(params["max_bound"])
  ref = np.asarray(params.get("reference", np.zeros_like(lo)))
  w0 = (lo + w_frac * (hi - lo) - ref).astype(np.float32) if name == "sbref" else (lo + w_frac * (hi - lo))
  w0 = np.asarray(w0, np.float32)
  a = np.asarray(native(w0, params, x, d, lr, seed))
  b = np.asarray(reference(w0, params, x, d, lr, seed))
  np.testing.assert_array_equal(a, b)
  assert np.all(np.isfinite(a))
  tol = 1e-6 * np.maximum(1, np.abs(hi))
  if name == "sbref":  # bounds apply to w + reference
    assert np.all(a + ref <= hi + tol) and np.all(a + ref >= lo - tol)
  else:
    assert np.all(a <= hi + tol) and np.all(a >= lo - tol)
  if not (np.all(np.isfinite(x)) and np.isfinite(lr)):
    np.testing.assert_array_equal(a, w0)  # the non-finite policy: the update is skipped


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_update_properties(name):
  @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
  @given(cases())
  def run(case):
    _check(name, case)

  run()
