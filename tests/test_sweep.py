"""Seed sweeps: one vmapped program over device seeds; sharding the seed axis over 4 (virtual) CPU
devices gives bit-identical device states, and training losses equal up to float32 summation rounding
(the sharded program reduces the batch mean in its own order; docs/reproducibility.md)."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import rounding

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import hashlib, json, jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from mrl_jax import data, optim
    from mrl_jax.nn import analog_partition
    from tests.tiny_mlp import TinyMLP
    import sys
    from mrl_jax.training.loop import nll_loss
    from mrl_jax.training.sweep import summarize, sweep_mesh, train_seeds


    images, labels = data.embedded_mnist("train")
    train, test = (images[:96], labels[:96]), (images[96:160], labels[96:160])
    # No biases: every parameter is an analog weight, so the whole state is device state.
    make_model = lambda key: TinyMLP(16, nnx.Rngs(params=key), use_bias=False)
    template = nnx.state(make_model(jax.random.key(0)), nnx.Param)
    cfg = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    make_tx = lambda key: analog_partition(optim.transfer_compound(cfg, 0.05, key=key), optax.sgd(0.05), template)
    graphdef = nnx.graphdef(make_model(jax.random.key(0)))
    # One evaluation program for both modes' final states (each copied to the host first).
    evaluate = jax.jit(jax.vmap(lambda s, x, y: nll_loss(nnx.merge(graphdef, s), x, y), in_axes=(0, None, None)))
    seeds = int(sys.argv[1])
    out = {"devices": len(jax.devices()), "mesh": dict(sweep_mesh(seeds, 8).shape)}

    def device_state(state):
      # sha256 of the model and optimizer state except the plateau controller's loss history: every tile's
      # weights and device parameters, transfer pointers, buffers, counters and keys; and the test metrics
      # of the final model.
      h, history = hashlib.sha256(), None
      model = jax.tree.map(np.asarray, state.model)
      loss, correct = evaluate(model, data.to_float(test[0]), jnp.asarray(test[1]))
      for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
          leaf = jax.random.key_data(leaf)
        if "plateau" in jax.tree_util.keystr(path) and "history" in jax.tree_util.keystr(path):
          history = np.asarray(leaf).tolist()
          continue
        h.update(np.asarray(leaf).tobytes())
      return {"digest": h.hexdigest(), "plateau_history": history, "test_loss": np.asarray(loss).tolist(),
              "test_correct": np.asarray(correct).tolist()}

    for name, shard, per_dispatch in (("True", True, 8), ("False", False, 8), ("single", False, 1)):
      final = {}
      on_epoch = lambda record, state: final.update(device_state(state))
      rec = train_seeds(make_model, make_tx, train, test, seeds=seeds, epochs=2, batch_size=8,
                        to_input=data.to_float, shard=shard, steps_per_dispatch=per_dispatch, on_epoch=on_epoch,
                        plateau_every=4)
      out[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in rec]
      out[name + "_state"] = final
    out["summary"] = summarize(rec)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("seeds, mesh", [(4, {"seeds": 4, "batch": 1}), (2, {"seeds": 2, "batch": 2})])
def test_sharded_seed_sweep_equals_unsharded(seeds, mesh):
  """4 seeds on 4 devices, and 2 seeds × 2 batch halves: the same device states as one device; several steps
  per dispatch: the same bits as one."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip())
  res = subprocess.run([sys.executable, "-c", SCRIPT, str(seeds)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  assert out["devices"] == 4 and out["mesh"] == mesh
  # The whole model and device state (every tile's weights and device parameters, transfer state, keys): bit
  # for bit. Not by construction: it holds while the two step programs give the tiles bit-identical x and d
  # (docs/reproducibility.md).
  a, b = out["True_state"], out["False_state"]
  assert a["digest"] == b["digest"]
  # One step per dispatch or six (12 batches, at most 8 per dispatch; a plateau signal every 4 steps, formed
  # inside the dispatched program): one program's results, bit for bit.
  assert out["single"] == out["False"] and out["single_state"] == out["False_state"]
  # Hence the test metrics of the final states, evaluated by one program.
  assert (a["test_loss"], a["test_correct"]) == (b["test_loss"], b["test_correct"])
  # The training loss is reduced inside two different step programs (and, with a split batch, as the mean of
  # the halves' means), from bit-identical logits: within the float32 summation bound (12 steps of 8 rows, 10
  # classes). The warm-start plateau controller stores those losses.
  bound = lambda x, y: rounding.epoch_mean_nll(max(x, y), batch=8, classes=10, steps=96 // 8)
  for ra, rb in zip(out["True"], out["False"]):
    assert ra["epoch"] == rb["epoch"]
    for la, lb in zip(ra["train_loss"], rb["train_loss"]):
      assert abs(la - lb) <= bound(la, lb)
  for ha, hb in zip(a["plateau_history"], b["plateau_history"]):
    for la, lb in zip(ha, hb):
      assert (math.isnan(la) and math.isnan(lb)) or abs(la - lb) <= bound(la, lb)
  accs = out["True"][-1]["test_acc"]
  assert len(accs) == seeds and len(set(accs)) > 1  # different device instances
  assert out["summary"]["seeds"] == seeds
