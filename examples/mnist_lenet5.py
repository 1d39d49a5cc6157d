"""Fully analog LeNet-5 on MNIST / Fashion-MNIST with MRL or a baseline (the reference ``Mnist_LeNet5.py``).

    python examples/mnist_lenet5.py --setting ResL --n-states 4 --epochs 3 --out runs/lenet5_resl

Settings: ResL (MRL with warm start), TTv1, TTv2 (buffered), TTv3 (chopped c-TTv2), TTv4 (AGAD), MP
(mixed precision), SGD (analog SGD), FP (floating point). Every analog setting uses
``SoftBoundsDevice(±1, dw_min = 2/n_states)``. Defaults follow the reference: batch 8, lr 0.05,
×0.1 every 50 epochs, 200 epochs, perfect forward/backward I/O. Without the MNIST files the run uses
the embedded MNIST subset (a notice is printed); an explicit ``--data-dir`` must hold the files. ``OUT/meta.json``
records the settings and the data files (sha256); metrics go to ``OUT/metrics.jsonl``; a checkpoint is written every
epoch. An existing run directory needs ``--resume`` (continue, same settings except e.g. ``--epochs``) or
``--overwrite`` (delete it first). Ctrl-C checkpoints and prints the command that resumes;
``python -m mrl_jax.training.plots OUT`` draws the curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

import mrl_jax as M  # noqa: E402
from mrl_jax import data, optim  # noqa: E402
from mrl_jax.io import PERFECT_IO, IOParameters  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.nn import analog_partition  # noqa: E402
from mrl_jax.training import cli  # noqa: E402
from mrl_jax.training.loop import FitConfig, fit  # noqa: E402

SETTINGS = ("ResL", "TTv1", "TTv2", "TTv3", "TTv4", "MP", "SGD", "FP")


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--setting", "--SETTING", dest="setting", default="ResL", choices=SETTINGS)
  p.add_argument("--n-states", "--N_STATES", dest="n_states", type=float, default=4.0)
  p.add_argument("--tiles", type=int, default=7, help="MRL tiles K")
  p.add_argument("--gamma", type=float, default=0.5, help="MRL significance ratio γ")
  p.add_argument("--warm-start", default="via_tile1", choices=("direct", "via_tile1", "cuda_exact", "none"))
  p.add_argument("--epochs", "--EPOCHS", dest="epochs", type=int, default=200)
  p.add_argument("--batch-size", "--BATCH_SIZE", dest="batch_size", type=int, default=8)
  p.add_argument("--lr", "--LR", dest="lr", type=cli.learning_rate_arg, default=0.05)
  p.add_argument("--lr-decay-every", type=int, default=50, help="epochs between ×0.1 learning-rate steps")
  p.add_argument("--seed", type=int, default=0, help="device and data seed")
  p.add_argument("--io-perfect", action=argparse.BooleanOptionalAction, default=True,
                 help="perfect forward/backward/transfer I/O (else AIHWKit's default noisy, quantized I/O)")
  p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
  p.add_argument("--data-dir", default=None, help="directory with the canonical IDX files (or $MRL_DATA_DIR)")
  p.add_argument("--train-subset", type=int, default=0, help="use only the first N training images (0 = all)")
  p.add_argument("--embedded", action="store_true",
                 help="use the MNIST subset shipped in the package (10,000 train / 2,000 test images)")
  cli.add_run_dir_arguments(p)
  p.add_argument("--checkpoint-every-steps", type=int, default=0)
  p.add_argument("--engine", default="auto", choices=("auto", "native", "jnp"))
  p.add_argument("--no-progress", action="store_true")
  return p


def make_optimizer(args, params, steps_per_epoch: int, key=None):
  """The optax transformation of ``args.setting`` (analog weights) + SGD (biases)."""
  lr = optax.exponential_decay(args.lr, steps_per_epoch * args.lr_decay_every, 0.1, staircase=True)
  io = PERFECT_IO if args.io_perfect else IOParameters()
  n, key = args.n_states, jax.random.key(args.seed) if key is None else key
  if args.setting == "ResL":
    # A warm start needs a tile between the gradient tile and the target, so K = 2 runs without one.
    warm_start = args.warm_start if args.tiles >= 3 else "none"
    cfg = optim.resl_mnist(n, n_tiles=args.tiles, gamma=args.gamma, warm_start=warm_start, transfer_io=io)
    analog = optim.transfer_compound(cfg.replace(engine=args.engine), lr, key=key)
  elif args.setting == "TTv1":
    analog = optim.transfer_compound(optim.ttv1(n, transfer_io=io).replace(engine=args.engine), lr, key=key)
  elif args.setting == "TTv2":
    analog = optim.transfer_compound(optim.ttv2(n, transfer_io=io).replace(engine=args.engine), lr, key=key)
  elif args.setting in ("TTv3", "TTv4"):
    preset = optim.ttv3 if args.setting == "TTv3" else optim.ttv4
    analog = optim.chopped_transfer(preset(n, transfer_io=io), lr, key=key)
  elif args.setting == "MP":
    analog = optim.mixed_precision(optim.mixed_precision_preset(n), lr, key=key)
  elif args.setting == "SGD":
    analog = optim.analog_sgd(M.limited_state_soft_bounds(n), lr, key=key, engine=args.engine)
  else:
    analog = optax.chain(optim.densify(), optax.sgd(lr))
  return analog_partition(analog, optax.sgd(lr), params)


def main(argv=None):
  args = build_parser().parse_args(argv)
  if args.embedded:
    if args.dataset != "mnist":
      raise SystemExit("--embedded is MNIST only")
    (images, labels), test = data.embedded_mnist("train"), data.embedded_mnist("test")
    provenance = {"train": data.embedded_provenance("train"), "test": data.embedded_provenance("test")}
  else:
    (images, labels), train_source = data.load_with_provenance(args.dataset, "train", data_dir=args.data_dir)
    test, test_source = data.load_with_provenance(args.dataset, "test", data_dir=args.data_dir)
    provenance = {"train": train_source, "test": test_source}
  if args.train_subset:
    images, labels = images[: args.train_subset], labels[: args.train_subset]
  io = PERFECT_IO if args.io_perfect else IOParameters()
  model = LeNet5(rngs=nnx.Rngs(params=args.seed, noise=args.seed + 1), forward_io=io, backward_io=io)
  steps_per_epoch = len(images) // args.batch_size
  tx = make_optimizer(args, nnx.state(model, nnx.Param), steps_per_epoch)
  print(f"LeNet-5 / {args.dataset}: {len(images)} train, {len(test[0])} test images; setting {args.setting}, "
        f"{args.n_states:g} states, {steps_per_epoch} steps per epoch", file=sys.stderr)
  cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out_dir=args.out, resume=args.resume,
                  overwrite=args.overwrite, resume_safe_fields=cli.SAFE_TO_CHANGE,
                  checkpoint_every_steps=args.checkpoint_every_steps, seed=args.seed, progress=not args.no_progress)
  _, history, state = fit(model, tx, (images, labels), test, cfg, to_input=data.to_float, run_meta=vars(args),
                          provenance=provenance)
  if args.out and history:
    from mrl_jax.training import plots
    plots.plot_curves(args.out)
    tiles = plots.tiles_from_opt_state(state.opt)
    if tiles:
      plots.plot_tile_histograms(tiles, Path(args.out) / "tiles.png")
  final = history[-1] if history else {}
  print(f"final test accuracy: {final.get('test_acc', float('nan')):.4f}")
  return final


if __name__ == "__main__":
  cli.run(main)
