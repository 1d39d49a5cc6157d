"""Shared helpers: AIHWKit 1.1.0 fixtures (read without AIHWKit) and config translation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mrl_jax as M
from mrl_jax.devices import DEVICE_TYPES
from mrl_jax.io import IOParameters

FIXTURES = Path(__file__).parent / "fixtures"
_DEVICE_CLASSES = {cls.__name__: cls for cls in DEVICE_TYPES}
_IO_FIELDS = set(IOParameters.__dataclass_fields__)


def load_fixture(name: str):
  """Returns ``(arrays, meta)`` of ``tests/fixtures/<name>.npz``."""
  data = np.load(FIXTURES / f"{name}.npz")
  return data, json.loads(str(data["meta_json"]))


def device_from_meta(entry: dict):
  """Our device config from a fixture's ``{"device_class", "parameters_set"}`` record."""
  return _DEVICE_CLASSES[entry["device_class"]](**entry["parameters_set"])


def io_from_aihwkit(fields: dict) -> IOParameters:
  """Our ``IOParameters`` from AIHWKit's serialized ``IOParameters`` (enum reprs lower-cased)."""
  kw = {}
  for name, value in fields.items():
    if name not in _IO_FIELDS:
      continue
    if isinstance(value, str) and "." in value:
      value = value.split(".", 1)[1].lower()
    kw[name] = value
  return IOParameters(**kw)


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
