"""Seed sweeps: one vmapped program over device seeds; sharding the seed axis over 4 (virtual) CPU
devices gives exactly the unsharded results."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from mrl_jax import data, optim
    from mrl_jax.nn import analog_partition
    from tests.tiny_mlp import TinyMLP
    import sys
    from mrl_jax.training.sweep import summarize, sweep_mesh, train_seeds


    images, labels = data.embedded_mnist("train")
    train, test = (images[:96], labels[:96]), (images[96:160], labels[96:160])
    make_model = lambda key: TinyMLP(16, nnx.Rngs(params=key))
    template = nnx.state(make_model(jax.random.key(0)), nnx.Param)
    cfg = optim.resl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    make_tx = lambda key: analog_partition(optim.transfer_compound(cfg, 0.05, key=key), optax.sgd(0.05), template)
    seeds = int(sys.argv[1])
    out = {"devices": len(jax.devices()), "mesh": dict(sweep_mesh(seeds, 8).shape)}
    for shard in (True, False):
      rec = train_seeds(make_model, make_tx, train, test, seeds=seeds, epochs=2, batch_size=8,
                        to_input=data.to_float, shard=shard)
      out[str(shard)] = [{k: v for k, v in r.items() if k != "seconds"} for r in rec]
    out["summary"] = summarize(rec)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("seeds, mesh", [(4, {"seeds": 4, "batch": 1}), (2, {"seeds": 2, "batch": 2})])
def test_sharded_seed_sweep_equals_unsharded(seeds, mesh):
  """4 seeds on 4 devices, and 2 seeds × 2 batch halves: the same numbers as one device."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", SCRIPT, str(seeds)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  assert out["devices"] == 4 and out["mesh"] == mesh
  # The model and device states are identical (test metrics bit for bit); the reported training loss of a split
  # batch is the mean of the halves' means, equal up to float rounding.
  strip = lambda recs: [{k: v for k, v in r.items() if k != "train_loss"} for r in recs]
  assert strip(out["True"]) == strip(out["False"])
  for a, b in zip(out["True"], out["False"]):
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-6, atol=0)
    if mesh["batch"] == 1:
      assert a["train_loss"] == b["train_loss"]
  accs = out["True"][-1]["test_acc"]
  assert len(accs) == seeds and len(set(accs)) > 1  # different device instances
  assert out["summary"]["seeds"] == seeds
