"""Shared helpers: AIHWKit 1.1.0 fixtures (read without AIHWKit; their configurations go through
``mrl_jax.aihwkit``), statistics, the native CPU variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str):
  """Returns ``(arrays, meta)`` of ``tests/fixtures/<name>.npz``.

  The meta holds each case's AIHWKit configuration in plain form (``plain_rpu_config``, see
  ``tests/fixtures/README.md``): build ours from it with ``mrl_jax.aihwkit.from_rpu_config``.
  """
  data = np.load(FIXTURES / f"{name}.npz")
  return data, json.loads(str(data["meta_json"]))


def ks_2samp(a, b):
  """Two-sample Kolmogorov–Smirnov p-value (scipy)."""
  from scipy import stats
  return stats.ks_2samp(np.ravel(a), np.ravel(b)).pvalue


@pytest.fixture(scope="session")
def native_available():
  from mrl_jax import _native
  return _native.available()


CLEAN = dict(dw_min_dtod=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0, dw_min_std=0.0)
"""Device spreads and noise off (AIHWKit's "clean" devices)."""


_VARIANTS_TESTED: set[str] = set()


@pytest.fixture(params=("baseline", "x86-64-v3", "x86-64-v4"))
def cpu_variant(request):
  """Runs a test once per ISA variant of the native CPU kernel, forcing it; skips (with the reason) a variant
  this build lacks or this CPU cannot run. Yields the variant's name."""
  from mrl_jax import _native
  name = request.param
  runs = _native.cpu_variants()
  if name not in runs:
    pytest.skip(f"native variant {name}: not compiled into this build" if runs else
                f"native extension not built: {_native.import_error()}")
  if not runs[name]:
    pytest.skip(f"native variant {name}: this CPU lacks its instructions (flags: {' '.join(_native.cpu_flags())})")
  with _native.forced_cpu_variant(name):
    yield name
  _VARIANTS_TESTED.add(name)


def pytest_terminal_summary(terminalreporter):
  """States which native ISA variants the native-vs-jnp tests exercised, and the CPU's level."""
  if not _VARIANTS_TESTED:
    return
  from mrl_jax import _native
  runs = _native.cpu_variants()
  level = max((v for v, ok in runs.items() if ok), key=_native.CPU_VARIANTS.index, default="none")
  skipped = [v for v in _native.CPU_VARIANTS if v not in _VARIANTS_TESTED]
  terminalreporter.write_line(f"native CPU variants tested: {', '.join(sorted(_VARIANTS_TESTED, key=_native.CPU_VARIANTS.index))}"
                              f"; not tested: {', '.join(skipped) or 'none'}; this CPU's level: {level}")
