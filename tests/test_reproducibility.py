"""The reproducibility contract of docs/reproducibility.md, end to end: a whole training run gives the same
bits under every native ISA variant and with one or all CPU cores (the same XLA program each time)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrl_jax import _native

ROOT = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent("""
    import hashlib, json
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from mrl_jax import _native, data, optim
    from mrl_jax.nn import analog_partition
    from mrl_jax.training.loop import FitConfig, fit
    from tests.tiny_mlp import TinyMLP

    images, labels = data.embedded_mnist("train")
    model = TinyMLP(16, nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    cfg = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    tx = analog_partition(optim.transfer_compound(cfg, 0.05, key=1), optax.sgd(0.05), params)
    fit_cfg = FitConfig(epochs=2, batch_size=8, progress=False)
    _, history, state = fit(model, tx, (images[:160], labels[:160]), (images[160:224], labels[160:224]), fit_cfg,
                            to_input=data.to_float)
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
      h.update(np.asarray(jax.random.key_data(leaf) if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
                          else leaf).tobytes())
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    print(json.dumps({"variant": _native.cpu_variant(), "state": h.hexdigest(), "history": history}))
""")


def _train(variant: str, one_core: bool) -> dict:
  env = dict(os.environ, MRL_CPU_VARIANT=variant)
  prefix = ["taskset", "-c", "0"] if one_core else []
  res = subprocess.run(prefix + [sys.executable, "-c", TRAIN], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  return json.loads(res.stdout.strip().splitlines()[-1])


def test_training_is_bit_identical_across_variants_and_thread_counts():
  """Model, optimizer and device state, losses and metrics: == for every variant this CPU runs, on all cores
  and on one (a one-thread XLA pool)."""
  variants = [v for v, runs in _native.cpu_variants().items() if runs]
  if not variants:
    pytest.skip(f"native extension not built: {_native.import_error()}")
  reference = _train("auto", one_core=False)
  assert reference["history"][-1]["test_acc"] > 0.1  # it trained
  runs = [_train(v, one_core=False) for v in variants] + [_train("baseline", one_core=True)]
  assert [r["variant"] for r in runs] == variants + ["baseline"]
  for run in runs:
    assert run["state"] == reference["state"], run["variant"]
    assert run["history"] == reference["history"], run["variant"]
