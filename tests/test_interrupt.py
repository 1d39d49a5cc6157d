"""Interrupt safety: a training process killed with SIGKILL mid-epoch resumes from its last atomic
checkpoint and ends with bit-identical weights and metrics to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from mrl_jax import data, optim
    from mrl_jax.nn import analog_partition
    from tests.tiny_mlp import TinyMLP
    from mrl_jax.training.loop import FitConfig, fit


    out, resume, slow = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
    images, labels = data.embedded_mnist("train")
    train, test = (images[:400], labels[:400]), (images[400:600], labels[400:600])
    model = TinyMLP(32, nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    cfg = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    tx = analog_partition(optim.transfer_compound(cfg, 0.05, key=1), optax.sgd(0.05), params)
    to_input = data.to_float
    if slow:  # give the parent time to kill us mid-epoch
      import time
      to_input = lambda x: (time.sleep(0.05), data.to_float(x))[1]
    fit_cfg = FitConfig(epochs=3, batch_size=8, out_dir=out, resume=resume, checkpoint_every_steps=7, progress=False)
    model, history, _ = fit(model, tx, train, test, fit_cfg, to_input=to_input)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    np.savez(out + "/final.npz", *[np.asarray(l) for l in leaves])
    json.dump([{k: v for k, v in r.items() if k != "seconds"} for r in history], open(out + "/history.json", "w"))
""")


def _run(out, resume, slow):
  return subprocess.Popen([sys.executable, "-c", TRAIN, str(out), "1" if resume else "0", "1" if slow else "0"],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
  full = tmp_path / "full"
  killed = tmp_path / "killed"
  p = _run(full, False, False)
  assert p.wait(timeout=600) == 0, p.stderr.read()

  p = _run(killed, False, True)
  deadline = time.time() + 600
  while time.time() < deadline:  # wait for a mid-epoch checkpoint of epoch 2
    metas = [json.loads(m.read_text()) for m in killed.glob("ckpt_*/meta.json")]
    if any(m["epoch"] == 1 and m["position"] > 0 for m in metas):
      break
    assert p.poll() is None, p.stderr.read()
    time.sleep(0.2)
  os.kill(p.pid, signal.SIGKILL)
  p.wait()
  assert not (killed / "final.npz").exists()

  p = _run(killed, True, False)
  assert p.wait(timeout=600) == 0, p.stderr.read()
  assert "resumed from" in p.stderr.read()
  a, b = np.load(full / "final.npz"), np.load(killed / "final.npz")
  assert a.files == b.files
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k])
  assert json.loads((full / "history.json").read_text()) == json.loads((killed / "history.json").read_text())
