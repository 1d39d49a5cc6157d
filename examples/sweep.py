"""Seed sweeps and grids of LeNet-5 runs: each grid point is ONE jit + vmap program over device seeds.

    python examples/sweep.py --settings ResL TTv1 TTv2 MP SGD FP --n-states 4 10 --seeds 3 --epochs 3 \\
        --train-subset 10000 --out runs/sweep

Writes ``OUT/<point>.jsonl`` (per-epoch, per-seed metrics), ``OUT/summary.md`` and ``OUT/summary.csv``
(mean ± std over seeds of the final test accuracy and training loss per grid point), and plots
``OUT/accuracy_vs_epoch.png`` (seed bands) and ``OUT/accuracy_vs_states.png``. The seed axis is sharded
over all local devices (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on a CPU).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrl_jax import data  # noqa: E402
from mrl_jax.io import PERFECT_IO, IOParameters  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.training import cli  # noqa: E402
from mrl_jax.training.sweep import summarize, train_seeds  # noqa: E402


def _lenet_example():
  spec = importlib.util.spec_from_file_location("mnist_lenet5", ROOT / "examples" / "mnist_lenet5.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--settings", nargs="+", default=["ResL", "TTv1", "TTv2", "MP", "SGD", "FP"])
  p.add_argument("--n-states", nargs="+", type=float, default=[4.0])
  p.add_argument("--tiles", nargs="+", type=int, default=[7])
  p.add_argument("--gamma", nargs="+", type=float, default=[0.5])
  p.add_argument("--warm-start", default="via_tile1")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--lr", type=cli.learning_rate_arg, default=0.05)
  p.add_argument("--lr-decay-every", type=int, default=50)
  p.add_argument("--io-perfect", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--train-subset", type=int, default=0)
  p.add_argument("--steps-per-dispatch", type=cli.int_arg(1), default=8,
                 help="training steps per jitted call (lax.scan; the same results for every value)")
  p.add_argument("--plateau-every", type=int, default=0,
                 help="mini-batches between warm-start plateau checks (0 = once per epoch, as the reference)")
  p.add_argument("--data-seed", type=int, default=0)
  p.add_argument("--out", default="runs/sweep")
  p.add_argument("--resume", action="store_true",
                 help="reuse grid points whose JSONL in --out already holds all epochs (same settings)")
  p.add_argument("--summarize", nargs="+", metavar="DIR", default=None,
                 help="train nothing: combine the finished runs (JSONL) of these sweep folders into --out")
  return p


def grid(args):
  """Grid points; tile count and γ only vary for ResL."""
  for setting, n in itertools.product(args.settings, args.n_states):
    if setting == "ResL":
      for k, g in itertools.product(args.tiles, args.gamma):
        yield {"setting": setting, "n_states": n, "tiles": k, "gamma": g}
    else:
      yield {"setting": setting, "n_states": n, "tiles": None, "gamma": None}


def point_name(p: dict) -> str:
  name = f"{p['setting']}_s{p['n_states']:g}"
  return name + (f"_K{p['tiles']}_g{p['gamma']:g}" if p["tiles"] else "")


def main(argv=None):
  args = build_parser().parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.summarize:
    return summarize_folders([Path(d) for d in args.summarize], out)
  lenet = _lenet_example()
  train = data.load_dataset(args.dataset, "train", data_dir=args.data_dir)
  test = data.load_dataset(args.dataset, "test", data_dir=args.data_dir)
  if args.train_subset:
    train = (train[0][: args.train_subset], train[1][: args.train_subset])
  io = PERFECT_IO if args.io_perfect else IOParameters()
  steps = len(train[0]) // args.batch_size
  rows = []
  for point in grid(args):
    ns = argparse.Namespace(**{**vars(args), "setting": point["setting"], "n_states": point["n_states"],
                               "tiles": point["tiles"] or 7, "gamma": point["gamma"] or 0.5, "seed": 0,
                               "engine": "auto"})
    make_model = lambda key: LeNet5(rngs=nnx.Rngs(params=key), forward_io=io, backward_io=io)
    params_template = nnx.state(make_model(jax.random.key(0)), nnx.Param)
    make_tx = lambda key, ns=ns: lenet.make_optimizer(ns, params_template, steps, key=key)
    log_path = out / f"{point_name(point)}.jsonl"
    skip = ("settings", "resume", "steps_per_dispatch")  # not part of a point's identity (same results)
    header = {"event": "start", **{k: v for k, v in vars(args).items() if k not in skip}, **point}
    records = finished_records(log_path, header) if args.resume else None
    if records is not None:
      print(f"{point_name(point)}: reusing {log_path}", file=sys.stderr)
      rows.append(summary_row(point, records))
      continue
    log_path.write_text(json.dumps(header) + "\n")

    def log(record, _state, log_path=log_path, point=point):
      with open(log_path, "a") as f:
        f.write(json.dumps({"event": "epoch", **record}) + "\n")
      print(f"{point_name(point)} epoch {record['epoch']}: test acc {np.mean(record['test_acc']):.4f} "
            f"± {np.std(record['test_acc']):.4f} ({record['seconds']:.0f}s)", file=sys.stderr, flush=True)

    records = train_seeds(make_model, make_tx, train, test, seeds=args.seeds, epochs=args.epochs,
                          batch_size=args.batch_size, data_seed=args.data_seed, to_input=data.to_float,
                          plateau_every=args.plateau_every or None, steps_per_dispatch=args.steps_per_dispatch,
                          on_epoch=log)
    rows.append(summary_row(point, records))
  write_summary(out, rows)
  plot_summary(out, rows)
  return rows


def summarize_folders(folders: list[Path], out: Path) -> list[dict]:
  """Summary table and plots of every complete run (JSONL) in ``folders``."""
  rows = []
  for path in sorted(p for folder in folders for p in folder.glob("*.jsonl")):
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [{k: v for k, v in r.items() if k != "event"} for r in lines[1:] if r.get("event") == "epoch"]
    if lines and records and len(records) == lines[0]["epochs"]:
      rows.append(summary_row({k: lines[0][k] for k in ("setting", "n_states", "tiles", "gamma")}, records))
  write_summary(out, rows)
  plot_summary(out, rows)
  return rows


def summary_row(point: dict, records: list[dict]) -> dict:
  return {**point, **summarize(records), "curve": [np.mean(r["test_acc"]) for r in records],
          "curve_std": [np.std(r["test_acc"]) for r in records]}


def finished_records(log_path: Path, header: dict) -> list[dict] | None:
  """The epoch records of a complete earlier run of the same grid point and settings, else None."""
  if not log_path.exists():
    return None
  lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
  if not lines or lines[0] != json.loads(json.dumps(header)):
    return None
  records = [{k: v for k, v in r.items() if k != "event"} for r in lines[1:] if r.get("event") == "epoch"]
  return records if len(records) == header["epochs"] else None


def write_summary(out: Path, rows: list[dict]):
  cols = ["setting", "n_states", "tiles", "gamma", "seeds", "epochs", "test_acc_mean", "test_acc_std",
          "train_loss_mean", "train_loss_std", "seconds"]
  with open(out / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| setting | states | K | γ | seeds | epochs | test accuracy | final train loss | wall s |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['setting']} | {r['n_states']:g} | {r['tiles'] or '–'} | {r['gamma'] if r['gamma'] else '–'} "
                 f"| {r['seeds']} | {r['epochs']} | {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} "
                 f"| {r['train_loss_mean']:.4f} ± {r['train_loss_std']:.4f} | {r['seconds']:.0f} |")
  (out / "summary.md").write_text("\n".join(lines) + "\n")


def plot_summary(out: Path, rows: list[dict]):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for r in rows:
    m, s = np.asarray(r["curve"]), np.asarray(r["curve_std"])
    epochs = np.arange(1, len(m) + 1)
    ax.plot(epochs, m, label=point_name(r))
    ax.fill_between(epochs, m - s, m + s, alpha=0.2)
  ax.set(xlabel="epoch", ylabel="test accuracy", title="LeNet-5: mean ± std over device seeds")
  ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(out / "accuracy_vs_epoch.png", dpi=120)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(5, 4))
  for setting in dict.fromkeys(r["setting"] for r in rows):
    pts = sorted((r["n_states"], r["test_acc_mean"], r["test_acc_std"]) for r in rows
                 if r["setting"] == setting and (r["tiles"] in (None, 7)) and (r["gamma"] in (None, 0.5)))
    if pts:
      n, m, s = map(np.asarray, zip(*pts))
      ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=setting)
  ax.set(xlabel="conductance states", ylabel="final test accuracy", xscale="log")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "accuracy_vs_states.png", dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main()
