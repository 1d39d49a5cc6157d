"""A sweep folder is never silently mixed or overwritten: ``examples/sweep.py``'s grid, manifest and resume rules
(without training), and the command-line notices of the example scripts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mrl_jax import optim
from mrl_jax.training import cli
from mrl_jax.training.rundir import RunDirectoryError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep():
  spec = importlib.util.spec_from_file_location("sweep_example", ROOT / "examples" / "sweep.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parse(sweep, *flags):
  return sweep.build_parser().parse_args(list(flags))


def test_grid_spans_presets_states_and_mrl_dimensions(sweep):
  args = parse(sweep, "--settings", "MRL", "TTv1", "MP", "FP", "--presets", "fair", "reference", "--n-states", "4", "10",
               "--warm-start", "cuda_exact", "none")
  names = [sweep.point_name(p) for p in sweep.grid(args)]
  assert names == ["MRL_s4_K7_g0.5_cuda_exact", "MRL_s4_K7_g0.5_none", "MRL_s10_K7_g0.5_cuda_exact",
                   "MRL_s10_K7_g0.5_none", "TTv1_s4", "TTv1_s10", "MP_s4", "MP_s10", "FP",
                   # the reference fixes each setting's state count: TT-v1 and MP run Mnist_LeNet5.py's 10 states
                   "MRL_s4_K7_g0.5_cuda_exact_ref", "TTv1_s10_ref", "MP_s10_ref"]
  assert len(set(names)) == len(names)


def test_folder_with_a_sweep_needs_resume_or_overwrite(sweep, tmp_path):
  args = parse(sweep, "--settings", "TTv1", "--out", str(tmp_path))
  identity = sweep.sweep_identity(args, sweep.grid(args))
  sweep.open_sweep_folder(tmp_path, identity, resume=False, overwrite=False)  # empty folder: starts
  (tmp_path / "TTv1_s4.jsonl").write_text(json.dumps({"event": "start"}) + "\n")
  with pytest.raises(RunDirectoryError, match="--resume continues it"):
    sweep.open_sweep_folder(tmp_path, identity, resume=False, overwrite=False)
  sweep.open_sweep_folder(tmp_path, identity, resume=True, overwrite=False)  # the same sweep: continues
  assert (tmp_path / "TTv1_s4.jsonl").exists()
  sweep.open_sweep_folder(tmp_path, identity, resume=False, overwrite=True)
  assert not (tmp_path / "TTv1_s4.jsonl").exists() and (tmp_path / sweep.MANIFEST).exists()


def test_resume_with_a_changed_grid_or_configuration_is_refused_with_the_difference(sweep, tmp_path):
  old = parse(sweep, "--settings", "TTv1", "SGD", "--epochs", "3")
  sweep.open_sweep_folder(tmp_path, sweep.sweep_identity(old, sweep.grid(old)), resume=False, overwrite=False)
  new = parse(sweep, "--settings", "TTv1", "MP", "--epochs", "3", "--lr", "0.1")
  with pytest.raises(RunDirectoryError) as err:
    sweep.open_sweep_folder(tmp_path, sweep.sweep_identity(new, sweep.grid(new)), resume=True, overwrite=False)
  message = str(err.value)
  assert "--lr: 0.05 in the folder, 0.1 now" in message
  assert "points not in the folder's grid: MP_s4" in message and "left out: SGD_s4" in message
  # Where the results go and how many steps run per dispatch are not part of a sweep's identity.
  same = parse(sweep, "--settings", "TTv1", "SGD", "--epochs", "3", "--steps-per-dispatch", "2", "--out", "x")
  sweep.open_sweep_folder(tmp_path, sweep.sweep_identity(same, sweep.grid(same)), resume=True, overwrite=False)


def test_unfinished_point_is_not_reused(sweep, tmp_path):
  header = {"event": "start", "epochs": 2}
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps(header) + "\n" + json.dumps({"event": "epoch", "epoch": 1, "test_acc": [0.5]}) + "\n")
  records = sweep.point_records(path)
  assert records[0] == header and len(records) - 1 == 1  # one of two epochs: main() reruns the point
  assert sweep.point_records(tmp_path / "absent.jsonl") is None


def test_summary_uses_sample_std_and_marks_warm_start_switches(sweep):
  records = [{"epoch": e, "test_acc": acc, "train_loss": [1.0, 1.0], "test_loss": [1.0, 1.0], "seconds": 1.0,
              "warm_start_target": t} for e, acc, t in ((1, [0.5, 0.7], [6, 6]), (2, [0.6, 0.8], [5, 6]),
                                                        (3, [0.7, 0.9], [5, 6]))]
  row = sweep.summary_row({"setting": "MRL"}, records)
  assert row["curve_std"][-1] == pytest.approx(0.1414213, rel=1e-6)  # ddof 1: sqrt(0.02)
  assert row["test_acc_std"] == pytest.approx(0.1414213, rel=1e-6)
  assert row["switch_epochs"] == [2] and row["final_target"] == [5, 6]


def test_lr_notice_names_the_absolute_analog_rates():
  assert "reaches only the digital parameters" in cli.analog_lr_notice(optim.mrl_mnist(4))
  assert "scales only the transfers" in cli.analog_lr_notice(optim.ttv1(4))
  assert cli.analog_lr_notice(optim.mixed_precision_preset(4)) is None
  assert cli.analog_lr_notice(None) is None


def test_defer_leaves_settings_for_a_later_run(sweep, tmp_path, capsys):
  """``--defer SGD`` trains the other points and leaves SGD's unfinished without a summary; the next ``--resume``
  without it keeps FP and trains SGD; a setting outside the grid is refused."""
  flags = ["--settings", "SGD", "FP", "--embedded", "--train-subset", "16", "--epochs", "1", "--seeds", "1",
           "--out", str(tmp_path)]
  assert sweep.main(flags + ["--defer", "SGD"]) is None
  assert "deferred (--defer), still to train: SGD_s4" in capsys.readouterr().err
  assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["FP.jsonl"] and not (tmp_path / "summary.md").exists()
  fp = (tmp_path / "FP.jsonl").read_bytes()
  rows = sweep.main(flags + ["--resume"])
  assert "FP: finished earlier, kept" in capsys.readouterr().err and (tmp_path / "FP.jsonl").read_bytes() == fp
  assert [r["setting"] for r in rows] == ["SGD", "FP"] and (tmp_path / "summary.md").exists()
  with pytest.raises(SystemExit):
    sweep.main(flags + ["--resume", "--defer", "TTv3"])
  assert "--defer TTv3: allowed are settings of this sweep's grid: SGD, FP" in capsys.readouterr().err
