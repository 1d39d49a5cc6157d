"""Training loop: learning, checkpoint/resume reproducing the uninterrupted run, the example's CLI."""

import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from mrl_jax import data, optim
from mrl_jax.models import LeNet5
from mrl_jax.nn import analog_partition
from mrl_jax.training.loop import FitConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def _example():
  spec = importlib.util.spec_from_file_location("mnist_lenet5", ROOT / "examples" / "mnist_lenet5.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _subset(n_train=256, n_test=128):
  images, labels = data.embedded_mnist("train")
  test_images, test_labels = data.embedded_mnist("test")
  return (images[:n_train], labels[:n_train]), (test_images[:n_test], test_labels[:n_test])


def _mrl_run(out_dir, epochs, resume=False):
  model = LeNet5(rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = analog_partition(optim.transfer_compound(optim.mrl_mnist(4), 0.05, key=1), optax.sgd(0.05), params)
  train, test = _subset(n_train=512)
  fit_cfg = FitConfig(epochs=epochs, batch_size=8, out_dir=str(out_dir), resume=resume, progress=False, seed=3)
  return fit(model, tx, train, test, fit_cfg, to_input=data.to_float)


def test_short_mrl_run_lowers_the_loss(tmp_path):
  _, history, _ = _mrl_run(tmp_path / "run", epochs=3)
  assert history[-1]["train_loss"] < history[0]["train_loss"] < 2.3
  assert history[-1]["test_acc"] > 0.2  # chance is 0.1
  assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_resume_reproduces_uninterrupted_run(tmp_path):
  _, _, full = _mrl_run(tmp_path / "a", epochs=2)
  _mrl_run(tmp_path / "b", epochs=1)
  _, history, resumed = _mrl_run(tmp_path / "b", epochs=2, resume=True)
  assert [r["epoch"] for r in history] == [1, 2]
  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(jax.random.key_data(a) if jax.dtypes.issubdtype(
      a.dtype, jax.dtypes.prng_key) else a), np.asarray(jax.random.key_data(b) if jax.dtypes.issubdtype(
          b.dtype, jax.dtypes.prng_key) else b)), full, resumed)
  assert all(jax.tree.leaves(same))


def test_cli_accepts_the_reference_flags():
  parser = _example().build_parser()
  args = parser.parse_args(["--SETTING", "TTv1", "--BATCH_SIZE", "8", "--EPOCHS", "5", "--n-states", "10",
                            "--no-io-perfect", "--warm-start", "direct", "--dataset", "fashion_mnist"])
  assert (args.setting, args.batch_size, args.epochs, args.n_states) == ("TTv1", 8, 5, 10.0)
  assert not args.io_perfect and args.warm_start == "direct"
  with pytest.raises(SystemExit):
    parser.parse_args(["--setting", "Adam"])


def test_steps_per_dispatch_equals_single_steps():
  """k steps per jitted call (lax.scan) give the bits of k single steps: state and history over two epochs (the
  second starts with the warm-start plateau signal)."""
  from tests.tiny_mlp import TinyMLP

  def run(k):
    model = TinyMLP(16, nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    cfg = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1))
    tx = analog_partition(optim.transfer_compound(cfg, 0.05, key=1), optax.sgd(0.05), params)
    train, test = _subset(n_train=80, n_test=64)  # 10 batches of 8: with k = 6 two dispatches of 5 steps
    fit_cfg = FitConfig(epochs=2, batch_size=8, progress=False, steps_per_dispatch=k)
    _, history, state = fit(model, tx, train, test, fit_cfg, to_input=data.to_float)
    return [{key: v for key, v in r.items() if key != "seconds"} for r in history], state

  (h1, s1), (h4, s4) = run(1), run(6)
  assert h1 == h4
  bits = lambda a: np.asarray(jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: np.array_equal(bits(a), bits(b)), s1, s4)))


def test_steps_per_dispatch_is_validated(capsys):
  with pytest.raises(ValueError, match=r"FitConfig.steps_per_dispatch = 0 is invalid: allowed range is integers >= 1"):
    FitConfig(epochs=1, batch_size=8, steps_per_dispatch=0)
  with pytest.raises(SystemExit):
    _example().build_parser().parse_args(["--steps-per-dispatch", "0"])
  assert "argument --steps-per-dispatch: 0 is invalid: allowed range is integers >= 1" in capsys.readouterr().err


def test_a_one_epoch_run_plots_visible_points(tmp_path, monkeypatch):
  """One epoch is one point per curve: every curve carries a marker, so the plot is not blank."""
  import matplotlib.pyplot as plt
  from mrl_jax.training import plots
  record = dict(event="epoch", epoch=1, train_loss=0.5, test_loss=0.6, train_acc=0.8, test_acc=0.7)
  (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  assert plots.plot_curves(tmp_path).exists()
  lines = [line for ax in figures[0].axes for line in ax.get_lines() if line.get_label() in ("train", "test")]
  assert len(lines) == 4 and all(line.get_marker() == "o" for line in lines)


def test_fit_feeds_the_warm_start_so_a_long_epoch_does_not_warn():
  """``fit`` passes each epoch's loss, so an epoch longer than ``PlateauRule.warn_after_updates`` (10 steps here,
  warned about after 4) is fed late, not missing: no ``WarmStartNotFedWarning``."""
  import warnings
  from tests.tiny_mlp import TinyMLP
  model = TinyMLP(16, nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  cfg = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.15, 0.1),
                                              plateau=optim.PlateauRule(warn_after_updates=4))
  tx = analog_partition(optim.transfer_compound(cfg, 0.05, key=1), optax.sgd(0.05), params)
  train, test = _subset(n_train=80, n_test=64)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fit(model, tx, train, test, FitConfig(epochs=2, batch_size=8, progress=False), to_input=data.to_float)
    jax.effects_barrier()
  assert not [w for w in caught if issubclass(w.category, optim.WarmStartNotFedWarning)]
