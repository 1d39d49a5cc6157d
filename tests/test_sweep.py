"""Seed sweeps: one vmapped program over device seeds; sharding the seed axis over 4 (virtual) CPU
devices gives bit-identical device states, and training losses equal up to float32 summation rounding
(the sharded program reduces the batch mean in its own order; docs/reproducibility.md)."""

import importlib.util
import json
import math
import os
import socket
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


# ---------------------------------------------------------------------------------------------------------------------
# Several processes (jax.distributed, CPU collectives over gloo)

DIST_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys, jax
    n_processes = int(sys.argv[1])
    if n_processes > 1:
      jax.distributed.initialize(f"localhost:{sys.argv[3]}", num_processes=n_processes, process_id=int(sys.argv[2]))
    import numpy as np, optax
    from flax import nnx
    from mrl_jax import data, optim
    from mrl_jax.nn import analog_partition
    from mrl_jax.training.sweep import train_seeds
    from tests.tiny_mlp import TinyMLP

    images, labels = data.embedded_mnist("train")
    train, test = (images[:96], labels[:96]), (images[96:160], labels[96:160])
    make_model = lambda key: TinyMLP(16, nnx.Rngs(params=key), use_bias=False)
    template = nnx.state(make_model(jax.random.key(0)), nnx.Param)
    cfg = optim.resl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    make_tx = lambda key: analog_partition(optim.transfer_compound(cfg, 0.05, key=key), optax.sgd(0.05), template)

    def digests(state, seeds):
      # Per seed, sha256 of this process's shards of the whole state but the plateau controller's loss history
      # (stored training losses, which may round differently).
      h = {s: hashlib.sha256() for s in seeds}
      for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if "plateau" in jax.tree_util.keystr(path) and "history" in jax.tree_util.keystr(path):
          continue
        if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
          leaf = jax.random.key_data(leaf)
        done = set()
        for shard in leaf.addressable_shards:
          rows = range(*shard.index[0].indices(leaf.shape[0]))
          for s, value in zip(rows, np.asarray(shard.data)):
            if s in h and s not in done:
              done.add(s)
              h[s].update(value.tobytes())
      return {s: d.hexdigest() for s, d in h.items()}

    final = {}
    on_epoch = lambda record, state: final.update(digests(state, record["seed_indices"]))
    rec = train_seeds(make_model, make_tx, train, test, seeds=4, epochs=2, batch_size=8, to_input=data.to_float,
                      plateau_every=4, on_epoch=on_epoch)
    print(json.dumps({"devices": len(jax.devices()), "processes": jax.process_count(), "digests": final,
                      "records": [{k: v for k, v in r.items() if k != "seconds"} for r in rec]}))
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _cpu_env(devices: int) -> dict:
  flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip(), PYTHONPATH=str(ROOT))


def _run_processes(commands: list[list[str]], env: dict, timeout: float = 600) -> list[subprocess.CompletedProcess]:
  """Starts the commands at once (the processes of one jax.distributed group) and waits for all of them."""
  procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for c in commands]
  try:
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [subprocess.CompletedProcess(c, p.returncode, o, e) for c, p, (o, e) in zip(commands, procs, outputs)]


def _merge_by_seed(parts: list[list[dict]]) -> list[dict]:
  """Per-process records (each tagged with its ``seed_indices``) as one record per epoch over all seeds."""
  merged = []
  for epoch_parts in zip(*parts):
    per_seed = {s: {k: v[i] for k, v in r.items() if isinstance(v, list)}
                for r in epoch_parts for i, s in enumerate(r["seed_indices"])}
    merged.append({"epoch": epoch_parts[0]["epoch"],
                   **{k: [per_seed[s][k] for s in sorted(per_seed)] for k in per_seed[0]}})
  return merged


def test_two_processes_give_the_records_of_one():
  """2 processes × 2 CPU devices (4 seeds over the global mesh, each process holding 2) == 1 process × 4 devices
  == 1 process × 1 device (every seed on one device, vmapped): the same device states bit for bit, hence the same
  test metrics (evaluated one seed at a time, by the same per-seed program) and warm-start targets; training
  losses within the float32 summation bound, as in the test above."""
  port = _free_port()
  two = _run_processes([[sys.executable, "-c", DIST_SCRIPT, "2", str(i), str(port)] for i in range(2)], _cpu_env(2))
  singles = {n: _run_processes([[sys.executable, "-c", DIST_SCRIPT, "1"]], _cpu_env(n))[0] for n in (4, 1)}
  for res in two + list(singles.values()):
    assert res.returncode == 0, res.stderr[-3000:]
  parts = [json.loads(r.stdout.strip().splitlines()[-1]) for r in two]
  assert [(p["devices"], p["processes"]) for p in parts] == [(4, 2), (4, 2)]
  # Each process trained, and reports, only its own seeds.
  assert [p["records"][0]["seed_indices"] for p in parts] == [[0, 1], [2, 3]]
  distributed = _merge_by_seed([p["records"] for p in parts])
  digests = {int(s): d for p in parts for s, d in p["digests"].items()}
  bound = lambda x, y: rounding.epoch_mean_nll(max(x, y), batch=8, classes=10, steps=96 // 8)
  for n, res in singles.items():
    single = json.loads(res.stdout.strip().splitlines()[-1])
    assert (single["devices"], single["processes"]) == (n, 1)
    assert {int(s): d for s, d in single["digests"].items()} == digests, n
    for ra, rb in zip(distributed, single["records"]):
      assert ra["epoch"] == rb["epoch"] and ra["seed_indices"] == rb["seed_indices"] == [0, 1, 2, 3]
      assert (ra["test_acc"], ra["test_loss"], ra["warm_start_target"]) == \
             (rb["test_acc"], rb["test_loss"], rb["warm_start_target"]), n
      for la, lb in zip(ra["train_loss"], rb["train_loss"]):
        assert abs(la - lb) <= bound(la, lb), n
  assert len(set(distributed[-1]["test_acc"])) > 1  # different device instances


def _sweep_under_two_processes(out: Path, *extra: str) -> list[subprocess.CompletedProcess]:
  port = _free_port()
  args = ["--settings", "FP", "SGD", "--n-states", "4", "--seeds", "2", "--epochs", "2", "--train-subset", "16",
          "--embedded", "--out", str(out), "--coordinator", f"localhost:{port}", "--num-processes", "2", *extra]
  return _run_processes([[sys.executable, "examples/sweep.py", *args, "--process-id", str(i)] for i in range(2)],
                        _cpu_env(1))


def test_sweep_script_under_two_processes_writes_per_process_records_and_resumes(tmp_path):
  """examples/sweep.py end to end under 2 processes (1 CPU device each, one seed per process): one record file per
  point and process, one summary over both seeds; a resume keeps the finished point and reruns the one whose file
  holds fewer epochs; a changed configuration is refused by both processes (no process left waiting)."""
  out = tmp_path / "sweep"
  first = _sweep_under_two_processes(out)
  for res in first:
    assert res.returncode == 0, res.stderr[-3000:]
  files = sorted(p.name for p in out.glob("*.jsonl"))
  assert files == ["FP.p0.jsonl", "FP.p1.jsonl", "SGD_s4.p0.jsonl", "SGD_s4.p1.jsonl"]
  for name in files:
    epochs = [json.loads(line) for line in (out / name).read_text().splitlines()[1:]]
    assert [r["seed_indices"] for r in epochs] == [[int(name[-7])]] * 2  # its own seed only
  summary = (out / "summary.md").read_text()
  assert "| fair | FP |" in summary and "| fair | SGD | 4 |" in summary and summary.count("| 2 | 2 |") == 2
  kept, redone = (out / "FP.p0.jsonl").read_bytes(), (out / "SGD_s4.p1.jsonl").read_text().splitlines()
  # Process 1 "died" after the first epoch of SGD_s4: its file holds one epoch.
  (out / "SGD_s4.p1.jsonl").write_text("\n".join(redone[:2]) + "\n")
  second = _sweep_under_two_processes(out, "--resume")
  for res in second:
    assert res.returncode == 0, res.stderr[-3000:]
  assert "FP: finished earlier, kept" in second[0].stderr and "SGD_s4: unfinished" in second[0].stderr
  assert "[process 1 of 2] SGD_s4 epoch 2" in second[1].stderr and "FP epoch" not in second[1].stderr
  assert (out / "FP.p0.jsonl").read_bytes() == kept
  # The rerun point is trained again from its seeds' start: the same records (the wall time aside).
  strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]
  assert strip((out / "SGD_s4.p1.jsonl").read_text().splitlines()) == strip(redone)
  refused = _sweep_under_two_processes(out, "--resume", "--lr", "0.1")
  assert [r.returncode for r in refused] == [2, 2]
  assert "--lr: 0.05 in the folder, 0.1 now" in refused[0].stderr
  assert "process 0 refused --out" in refused[1].stderr


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is out of range: allowed 0 … 1 (--num-processes 2)"),
    (["--coordinator", "localhost:1234", "--process-id", "0"],
     "--coordinator, --process-id given without --num-processes"),
    (["--coordinator", "localhost"], "'localhost' is not HOST:PORT"),
    (["--distributed", "sometimes"], "argument --distributed: invalid choice: 'sometimes' (choose from"),
])
def test_sweep_rejects_bad_process_flags(flags, message, capsys):
  spec = importlib.util.spec_from_file_location("sweep_example", ROOT / "examples" / "sweep.py")
  sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep)
  with pytest.raises(SystemExit) as exit_info:
    sweep.main(["--out", "unused", *flags])
  assert exit_info.value.code == 2 and message in capsys.readouterr().err
