"""Noise-free forward/backward MVM against AIHWKit 1.1.0 (fixture ``aihwkit_mvm.npz``).

AIHWKit's CPU MVM uses OpenBLAS sgemv, whose summation order differs from XLA's dot, so outputs can
differ by float32 round-off of the dot product. The comparison is therefore relative to each row's
full-scale output ``out_bound·nm·red``: ≤ 1e-6 of full scale (the ADC step is ~4e-3 of full scale).

Each case's forward and backward I/O is the translator's reading (``mrl_jax.aihwkit.from_rpu_config``) of the
fixture's AIHWKit configuration.
"""

import jax
import numpy as np
import pytest

from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.io import analog_mvm
from tests.conftest import load_fixture

DATA, META = load_fixture("aihwkit_mvm")
CASES = sorted(k[2:] for k in DATA.files if k.startswith("y_"))


def test_all_cases_present():
  assert set(CASES) >= {"default", "nm_none_bm_none", "nm_max", "nm_constant", "nm_absmax_thres", "coarse",
                        "perfect", "out_scale"}


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_aihwkit(case):
  io = from_rpu_config(META["cases"][case]["plain_rpu_config"]).forward_io
  y = np.asarray(analog_mvm(DATA["W"], DATA["x"], io, jax.random.key(0)))
  ref = DATA[f"y_{case}"]
  scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1.0)
  np.testing.assert_array_less(np.abs(y - ref) / scale, 1e-6)


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_aihwkit(case):
  # The backward I/O keeps AIHWKit's bound_management, which its backward pass ignores, as transposed=True does.
  io = from_rpu_config(META["cases"][case]["plain_rpu_config"]).backward_io
  g = np.asarray(analog_mvm(DATA["W"], DATA["d"], io, jax.random.key(0), transposed=True))
  ref = DATA[f"g_{case}"]
  scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1.0)
  np.testing.assert_array_less(np.abs(g - ref) / scale, 1e-6)


def test_bound_management_escalates():
  """The fixture exercises reductions up to 16; the forward must reproduce the saturated rows."""
  assert DATA["red_nm_absmax_thres"].max() >= 16
  assert DATA["red_coarse"].max() >= 8
