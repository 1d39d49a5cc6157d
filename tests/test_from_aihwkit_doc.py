"""The ``mrl_jax`` example of ``docs/from-aihwkit.md`` runs as written, on a few embedded MNIST images."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

import mrl_jax

DOC = Path(__file__).resolve().parents[1] / "docs" / "from-aihwkit.md"
MARKER = "<!-- from-aihwkit example: tests/test_from_aihwkit_doc.py runs this block -->"
SIZE_LINE = "EPOCHS, N_TRAIN, BATCH = 3, 10_000, 8"


def _example() -> str:
  text = DOC.read_text()
  assert MARKER in text, "the migration guide lost its tested example"
  block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S).group(1)
  assert SIZE_LINE in block, "the example's size line changed: update this test"
  return block


def test_migration_guide_example_runs(capsys):
  code = _example().replace(SIZE_LINE, "EPOCHS, N_TRAIN, BATCH = 2, 24, 8")  # 3 steps per epoch
  namespace = {"__name__": "from_aihwkit_example"}
  exec(compile(code, str(DOC), "exec"), namespace)
  out = capsys.readouterr().out
  assert out.count("epoch ") == 2 and "test accuracy" in out
  assert 0.0 <= namespace["accuracy"] <= 1.0
  assert math.isfinite(namespace["epoch_loss"])
  cfg = namespace["cfg"]
  assert cfg.algorithm == "transfer_compound" and cfg.config.n_tiles == 7 and cfg.config.warm_start == "cuda_exact"
  # the hand-written plain form in the guide is the AIHWKit script's rpu_config (written by the fixture generator)
  written = json.loads((DOC.parents[1] / "tests" / "fixtures" / "aihwkit_rpu_configs.json").read_text())
  assert cfg == mrl_jax.from_rpu_config(written["docs_from_aihwkit"], warm_start="cuda_exact")
  seed = mrl_jax.from_rpu_config(written["lenet5_mnist"]["ResL"], warm_start="cuda_exact")
  assert cfg.config == seed.config  # the seed's compound (it also sets weight_scaling_columnwise, inert at ω = 0)
  assert np.isfinite(np.asarray(namespace["model"].fc2.weight[...])).all()
