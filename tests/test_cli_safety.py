"""Nothing a user ran is lost or silently mixed: run directories, resumes, data provenance, learning rates and
Ctrl-C, tested through ``examples/mnist_lenet5.py`` run as a user runs it (subprocesses), plus the library calls
behind it."""

from __future__ import annotations

import glob
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optax
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import data, optim
from mrl_jax.data import loader, sources
from mrl_jax.training import cli, rundir
from mrl_jax.training.loop import FitConfig, TrainingInterrupted, fit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist_lenet5.py"
DATA_DIR = Path(os.environ.get("MRL_DATA_DIR") or ROOT / ".." / "shared" / "data")


def small(epochs: int = 1) -> list[str]:
  """One small, fast run: 8 analog-SGD steps of LeNet-5 per epoch on the embedded subset."""
  return ["--embedded", "--train-subset", "64", "--batch-size", "8", "--epochs", str(epochs), "--no-progress",
          "--setting", "SGD"]



def _env(tfds_dir: Path) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "MRL_DATA_DIR"}
  env["MRL_TFDS_DIR"] = str(tfds_dir)  # never the user's cache
  return env


def _start(args, tfds_dir: Path) -> subprocess.Popen:
  # A harness may run the tests with SIGINT ignored, which a child inherits (and then rightly keeps); the child of
  # this test gets the default, as from a terminal. (Not with preexec_fn: forking a multithreaded JAX process.)
  ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
  if ignored:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
  try:
    return subprocess.Popen([sys.executable, str(EXAMPLE), *map(str, args)], cwd=ROOT, env=_env(tfds_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  finally:
    if ignored:
      signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(args, tfds_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
  p = _start(args, tfds_dir)
  out, err = p.communicate(timeout=timeout)
  return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _snapshot(run: Path) -> dict:
  """Every file of a run directory and its bytes."""
  return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _metrics(run: Path) -> list[dict]:
  return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished one-epoch run, made in a directory that already existed and held only a file of the user's."""
  base = tmp_path_factory.mktemp("finished")
  run, tfds = base / "run", base / "tfds"
  run.mkdir()
  (run / "notes.txt").write_text("mine\n")
  result = _run([*small(), "--out", run], tfds)
  assert result.returncode == 0, result.stderr
  return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
  """A private copy of the finished run (tests change it)."""
  return Path(shutil.copytree(finished_run, tmp_path / "run")), tmp_path / "tfds"


# ---------------------------------------------------------------------------------------------------------------------
# (a) An existing run is not replaced without --overwrite


def test_rerun_without_resume_refuses_and_keeps_the_run(run_copy):
  run, tfds = run_copy
  before = _snapshot(run)
  assert "meta.json" in before and any(k.startswith("ckpt_") for k in before)
  result = _run([*small(), "--out", run], tfds)
  assert result.returncode == cli.EXIT_REFUSED, result.stderr
  assert "--resume" in result.stderr and "--overwrite" in result.stderr and "already holds a run" in result.stderr
  assert "Traceback" not in result.stderr
  assert _snapshot(run) == before  # metrics, meta.json and checkpoints untouched


def test_overwrite_starts_a_fresh_run_and_keeps_other_files(run_copy):
  run, tfds = run_copy
  old_meta = json.loads((run / "meta.json").read_text())
  (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + '{"event": "epoch", "epoch": 99}\n')
  result = _run([*small(), "--out", run, "--overwrite", "--lr", "0.1"], tfds)
  assert result.returncode == 0, result.stderr
  assert "deleted the previous run" in result.stderr
  records = _metrics(run)
  assert [r["event"] for r in records] == ["start", "epoch"] and records[1]["epoch"] == 1
  assert records[0]["lr"] == 0.1
  meta = json.loads((run / "meta.json").read_text())
  assert meta["config"]["lr"] == 0.1 and old_meta["config"]["lr"] == 0.05
  assert len(list(run.glob("ckpt_*"))) == 1
  assert (run / "notes.txt").read_text() == "mine\n"  # not one of the run's files: left alone


def test_run_directory_rules_in_the_library(tmp_path):
  with pytest.raises(ValueError, match="FitConfig.resume and FitConfig.overwrite"):
    FitConfig(epochs=1, batch_size=8, resume=True, overwrite=True)
  fit = {"epochs": 1, "batch_size": 8}
  assert rundir.plan_run(tmp_path / "new", resume=False, overwrite=False, config={}, fit=fit).resume is False
  (tmp_path / "other.txt").write_text("x")  # a directory without our files is fine to use
  assert rundir.run_files(tmp_path) == []
  (tmp_path / "metrics.jsonl").write_text('{"event": "start", "lr": 0.05}\n')
  with pytest.raises(rundir.RunExistsError, match="--resume .*--overwrite"):
    rundir.plan_run(tmp_path, resume=False, overwrite=False, config={"lr": 0.05}, fit=fit)
  # A run from before meta.json: its start line is the recorded configuration.
  with pytest.raises(rundir.ResumeMismatchError, match="lr: 0.05 → 0.1"):
    rundir.plan_run(tmp_path, resume=True, overwrite=False, config={"lr": 0.1}, fit=fit)


# ---------------------------------------------------------------------------------------------------------------------
# (b) --resume keeps the run's configuration


def test_resume_with_other_settings_refuses_with_a_diff(run_copy):
  run, tfds = run_copy
  before = _snapshot(run)
  result = _run([*small(), "--out", run, "--resume", "--n-states", "10", "--lr", "0.2"], tfds)
  assert result.returncode == cli.EXIT_REFUSED, result.stderr
  assert "n_states: 4.0 → 10.0" in result.stderr and "lr: 0.05 → 0.2" in result.stderr
  assert "Traceback" not in result.stderr
  assert _snapshot(run) == before


def test_resume_with_more_epochs_continues_and_records_the_change(run_copy):
  run, tfds = run_copy
  result = _run([*small(epochs=2), "--out", run, "--resume"], tfds)
  assert result.returncode == 0, result.stderr
  assert "resumed from" in result.stderr
  records = _metrics(run)
  assert [r["event"] for r in records] == ["start", "epoch", "resume", "epoch"]
  assert records[2]["changed"]["epochs"] == {"old": 1, "new": 2}
  assert set(records[2]["changed"]) <= set(cli.SAFE_TO_CHANGE) | set(rundir.FIT_SAFE)
  assert records[3]["epoch"] == 2
  assert json.loads((run / "meta.json").read_text())["config"]["epochs"] == 2  # the next resume compares with 2


# ---------------------------------------------------------------------------------------------------------------------
# (c) Data provenance: an explicit path is used or is an error; the fallback is said; meta.json names the files


def _need_mnist() -> Path:
  if not all((DATA_DIR / "mnist" / f).is_file() for f in sources.IDX_SHA256["mnist"]):
    pytest.skip(f"full MNIST not found under {DATA_DIR}")
  return DATA_DIR


@pytest.fixture(scope="module")
def prepared_tfds(tmp_path_factory):
  """A TFDS cache with MNIST prepared (as an earlier run leaves ``~/.cache/mrl_jax/tfds``)."""
  root = _need_mnist()
  tfds = tmp_path_factory.mktemp("tfds_prepared")
  data.load_dataset("mnist", "test", data_dir=root, tfds_dir=tfds)
  return tfds


def test_explicit_data_dir_missing_or_incomplete_is_an_error_even_with_a_prepared_cache(prepared_tfds, tmp_path,
                                                                                        monkeypatch):
  missing = tmp_path / "no_such_dir"
  with pytest.raises(data.DatasetNotFoundError, match=f"{missing}.*does not exist"):
    data.load_dataset("mnist", "train", data_dir=missing, tfds_dir=prepared_tfds)
  partial = tmp_path / "partial" / "mnist"
  partial.mkdir(parents=True)
  for fname in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
    shutil.copy(DATA_DIR / "mnist" / fname, partial / fname)
  with pytest.raises(data.DatasetNotFoundError,
                     match=f"{partial} is incomplete: missing train-labels-idx1-ubyte.gz, t10k-labels-idx1-ubyte.gz"):
    data.load_dataset("mnist", "train", data_dir=partial.parent, tfds_dir=prepared_tfds)
  # The same through the environment variable.
  monkeypatch.setenv("MRL_DATA_DIR", str(missing))
  with pytest.raises(data.DatasetNotFoundError, match=str(missing)):
    data.load_dataset("mnist", "test", tfds_dir=prepared_tfds)
  # The cache itself is fine: without a path it is used.
  monkeypatch.delenv("MRL_DATA_DIR")
  assert len(data.load_dataset("mnist", "test", tfds_dir=prepared_tfds)[0]) == 10000


def test_cli_with_a_missing_data_dir_fails_clearly(prepared_tfds, tmp_path):
  missing = tmp_path / "no_such_dir"
  result = _run(["--data-dir", missing, "--train-subset", "64", "--epochs", "1", "--no-progress", "--setting", "SGD",
                 "--out", tmp_path / "run"], prepared_tfds)
  assert result.returncode == cli.EXIT_REFUSED, result.stderr
  assert str(missing) in result.stderr and "does not exist" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_embedded_fallback_without_a_path_is_printed(tmp_path, monkeypatch, capfd):
  monkeypatch.delenv("MRL_DATA_DIR", raising=False)
  monkeypatch.setattr(sources, "DEFAULT_DATA_DIR", tmp_path / "nothing_here")
  monkeypatch.setattr(loader, "_ANNOUNCED", [], raising=False)  # announced once per process
  with pytest.warns(data.EmbeddedDataWarning):
    (x, _), prov = data.load_with_provenance("mnist", "train", tfds_dir=tmp_path / "tfds", download=False)
  assert "embedded MNIST subset" in capfd.readouterr().err
  assert len(x) == 10000 and prov["source"] == "embedded"
  assert prov["files"] == [{"path": str(sources.EMBEDDED_PATH), "sha256": sources.sha256_file(sources.EMBEDDED_PATH)}]
  assert prov["tfds_dir"] == str((tmp_path / "tfds").resolve())


def test_meta_json_records_the_data_files_and_their_sha256(prepared_tfds, tmp_path, finished_run):
  root = _need_mnist()
  run = tmp_path / "run"
  result = _run(["--data-dir", root, "--train-subset", "64", "--batch-size", "8", "--epochs", "1", "--no-progress",
                 "--setting", "SGD", "--out", run], prepared_tfds)
  assert result.returncode == 0, result.stderr
  meta = json.loads((run / "meta.json").read_text())
  for split, files in sources.IDX_SPLIT_FILES.items():
    record = meta["data"][split]
    assert record["source"] == "files" and record["tfds_dir"] == str(prepared_tfds.resolve())
    assert record["files"] == [{"path": str((root / "mnist" / f).resolve()), "sha256": sources.IDX_SHA256["mnist"][f]}
                               for f in files]
  embedded = json.loads((finished_run / "meta.json").read_text())["data"]["train"]
  assert embedded["source"] == "embedded" and embedded["files"][0]["path"].endswith("mnist_subset.npz")
  assert embedded["files"][0]["sha256"] == sources.sha256_file(sources.EMBEDDED_PATH)


# ---------------------------------------------------------------------------------------------------------------------
# (d) Learning rates


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf"])
def test_cli_rejects_a_bad_learning_rate(value, tmp_path):
  result = _run([*small(), "--lr", value, "--out", tmp_path / "run"], tmp_path / "tfds", timeout=120)
  assert result.returncode == 2
  assert f"argument --lr/--LR: {value} is invalid: allowed range is finite values >= 0" in result.stderr
  assert not (tmp_path / "run").exists()


def _example_parser(name: str):
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.build_parser()


@pytest.mark.parametrize("name", ["cifar_resnet", "sweep"])
def test_other_scripts_reject_a_bad_learning_rate(name, capsys):
  parser = _example_parser(name)
  assert parser.parse_args(["--lr", "0.2"]).lr == 0.2
  for value in ("-0.1", "nan"):
    with pytest.raises(SystemExit):
      parser.parse_args(["--lr", value])
    assert "argument --lr" in capsys.readouterr().err


FACTORIES = {
    "transfer_compound": lambda lr: optim.transfer_compound(optim.mrl_mnist(4), lr, key=0),
    "analog_sgd": lambda lr: optim.analog_sgd(M.limited_state_soft_bounds(4), lr, key=0),
    "chopped_transfer": lambda lr: optim.chopped_transfer(optim.ttv3(4), lr, key=0),
    "mixed_precision": lambda lr: optim.mixed_precision(optim.mixed_precision_preset(4), lr, key=0),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_factories_reject_a_bad_learning_rate(name):
  make = FACTORIES[name]
  for bad, shown in ((-0.1, "-0.1"), (math.nan, "nan"), (math.inf, "inf")):
    with pytest.raises(ValueError, match=f"^{name}: learning_rate = {shown} is invalid: allowed range is finite "
                                         "values >= 0$"):
      make(bad)
  with pytest.raises(ValueError, match=rf"{name}: learning_rate\(0\) = -0.1 is invalid"):
    make(optax.exponential_decay(-0.1, 100, 0.1))
  make(0.0)
  make(optax.exponential_decay(0.05, 100, 0.1))


# ---------------------------------------------------------------------------------------------------------------------
# (e) Ctrl-C


def test_ctrl_c_checkpoints_says_how_to_resume_and_resume_completes(tmp_path):
  run, tfds = tmp_path / "run", tmp_path / "tfds"
  # 100 steps; a checkpoint every 5 shows that training is under way before the interrupt is sent.
  args = ["--embedded", "--train-subset", "800", "--batch-size", "8", "--epochs", "1", "--no-progress",
          "--setting", "SGD", "--checkpoint-every-steps", "5", "--out", run]
  p = _start(args, tfds)
  deadline = time.time() + 120
  while not glob.glob(str(run / "ckpt_*" / "meta.json")):
    assert p.poll() is None, p.communicate()[1]
    assert time.time() < deadline, "no checkpoint within 120 s"
    time.sleep(0.02)
  p.send_signal(signal.SIGINT)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 130, err
  assert "Traceback" not in err
  lines = [line for line in err.splitlines() if "--resume" in line]
  assert len(lines) == 1, err
  line = lines[0]
  checkpoint = Path(line.split("last checkpoint: ")[1].split(";")[0])
  saved = json.loads((checkpoint / "meta.json").read_text())
  assert checkpoint.parent == run and saved["epoch"] == 0 and 0 < saved["position"] < 100
  command = shlex.split(line.split("to continue: ")[1])
  assert command[0] == "python" and command[-1] == "--resume"

  result = _run(command[2:], tfds)  # the printed command, as the user would paste it
  assert result.returncode == 0, result.stderr
  assert f"batch {saved['position']})" in result.stderr  # resumed where the interrupt left it
  events = [r["event"] for r in _metrics(run)]
  assert events == ["start", "resume", "epoch"]


def _interrupting_fit(out_dir, signals_at: dict):
  """``fit`` of the tiny MLP whose input conversion sends itself SIGINT ``signals_at[call]`` times on that call."""
  from mrl_jax.nn import analog_partition
  from tests.tiny_mlp import TinyMLP
  images, labels = data.embedded_mnist("train")
  model = TinyMLP(8, nnx.Rngs(0))
  tx = analog_partition(optim.analog_sgd(M.limited_state_soft_bounds(4), 0.05, key=0), optax.sgd(0.05),
                        nnx.state(model, nnx.Param))
  calls = []

  def to_input(x):
    calls.append(1)
    for _ in range(signals_at.get(len(calls), 0)):
      signal.raise_signal(signal.SIGINT)
    return data.to_float(x)

  cfg = FitConfig(epochs=1, batch_size=8, out_dir=out_dir, progress=False)
  return fit(model, tx, (images[:80], labels[:80]), (images[80:96], labels[80:96]), cfg, to_input=to_input)


def test_fit_turns_ctrl_c_into_a_checkpoint_and_restores_the_handler(tmp_path):
  before = signal.getsignal(signal.SIGINT)
  with pytest.raises(TrainingInterrupted) as err:
    _interrupting_fit(str(tmp_path / "run"), {3: 1})  # during the 3rd batch: that step completes first
  assert (err.value.epoch, err.value.position) == (0, 3) and isinstance(err.value, KeyboardInterrupt)
  assert err.value.checkpoint == tmp_path.resolve() / "run" / "ckpt_000003"
  assert json.loads((err.value.checkpoint / "meta.json").read_text())["position"] == 3
  assert signal.getsignal(signal.SIGINT) is before
  # A second Ctrl-C does not wait for the step; it names the newest checkpoint already complete (none here).
  with pytest.raises(TrainingInterrupted) as err:
    _interrupting_fit(None, {2: 2})
  assert err.value.checkpoint is None and err.value.position == 1
  assert signal.getsignal(signal.SIGINT) is before
