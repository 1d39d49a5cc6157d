"""Fully analog LeNet-5 on MNIST / Fashion-MNIST with MRL or a baseline (the reference ``Mnist_LeNet5.py``).

    python examples/mnist_lenet5.py --setting MRL --n-states 4 --epochs 3 --out runs/lenet5_mrl

Settings: MRL (multi-tile residual learning with warm start; the reference's ResL), TTv1, TTv2 (buffered),
TTv3 (chopped c-TTv2), TTv4 (AGAD), MP (mixed precision), SGD (analog SGD), FP (floating point). Every analog
setting uses ``SoftBoundsDevice(±1, dw_min = 2/n_states)`` (``--preset fair``, the default). Defaults follow the reference:
batch 8, lr 0.05, ×0.1 every 50 epochs, 200 epochs, perfect forward/backward I/O. ``--preset reference`` runs the
setting exactly as ``Mnist_LeNet5.py`` configures it (device, state count, compound, update, I/O per role, learned
output scale; ``docs/seed-parity.md``): flags the reference fixes (``--n-states`` except for TT-v2, ``--tiles``,
``--gamma``, ``--io-perfect``) are refused, run-length flags (``--epochs``, ``--batch-size``, ``--lr``,
``--lr-decay-every``) win and are reported, and fields ``mrl_jax`` cannot model yet need ``--approximate FIELD``. Without the MNIST files the run uses
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
from mrl_jax.optim import presets  # noqa: E402
from mrl_jax.training import cli  # noqa: E402
from mrl_jax.training.loop import FitConfig, fit  # noqa: E402

SETTINGS = ("MRL", "TTv1", "TTv2", "TTv3", "TTv4", "MP", "SGD", "FP")


def setting_arg(text: str) -> str:
  """argparse ``type`` of ``--setting``: mrl_jax's or the reference script's name of a setting."""
  try:
    return presets.canonical_setting(text)
  except ValueError as err:
    raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter,
                              epilog=cli.EPILOG)
  p.add_argument("--setting", "--SETTING", dest="setting", default="MRL", type=setting_arg,
                 help="one of " + ", ".join(SETTINGS) + " (or the reference's names: TT-v1, mp, 'Analog SGD', …)")
  p.add_argument("--preset", default="fair", choices=("fair", "reference"),
                 help="fair: every method on SoftBoundsDevice(±1, 2/n_states) with the same I/O; reference: the "
                      "setting exactly as Mnist_LeNet5.py configures it (docs/seed-parity.md)")
  p.add_argument("--approximate", action="append", default=[], metavar="FIELD",
                 help="with --preset reference: run although mrl_jax cannot model FIELD yet (a "
                      "field the preset lists as unsupported, docs/seed-parity.md); recorded in meta.json")
  p.add_argument("--n-states", "--N_STATES", dest="n_states", type=float, default=4.0)
  p.add_argument("--tiles", type=int, default=7, help="MRL tiles K")
  p.add_argument("--gamma", type=float, default=0.5, help="MRL significance ratio γ")
  p.add_argument("--warm-start", default="via_tile1", choices=("direct", "via_tile1", "cuda_exact", "none"),
                 help="MRL warm-start mode (see below)")
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
  cli.add_loop_arguments(p)
  p.add_argument("--engine", default="auto", choices=("auto", "native", "jnp"))
  p.add_argument("--no-progress", action="store_true")
  return p


def reference_preset(args) -> presets.ReferencePreset:
  """The ``Mnist_LeNet5.py`` preset of the (resolved) ``args``: TT-v2's state count is the script's ``--dwmin``."""
  kw = {}
  if args.setting == "TTv2":
    kw["tt2_dwmin"] = 2.0 / args.n_states
  if args.setting == "MRL":
    kw["warm_start"] = args.warm_start
  return presets.lenet5_mnist_reference(args.setting, **kw)


def resolve_reference(parser: argparse.ArgumentParser, args, argv) -> presets.ReferencePreset:
  """``--preset reference``: refuses the flags the reference fixes, reports the run-length flags that win over
  the reference's values, and writes the resolved values into ``args`` (so that ``meta.json`` shows them)."""
  given = cli.given_flags(parser, argv)
  ref = f"Mnist_LeNet5.py {presets.REFERENCE_NAMES[args.setting]}"
  default = presets.lenet5_mnist_reference(args.setting)
  if "n_states" in given and args.setting != "TTv2":
    fixed = f"{default.n_states:g} states" if default.n_states else "floating-point weights"
    parser.error(f"--n-states {args.n_states:g} conflicts with --preset reference: {ref} fixes {fixed}; drop the "
                 "flag or use --preset fair")
  for name, flag in (("tiles", "--tiles"), ("gamma", "--gamma"), ("io_perfect", "--io-perfect/--no-io-perfect")):
    if name in given:
      parser.error(f"{flag} conflicts with --preset reference: {ref} fixes it (docs/seed-parity.md); drop the flag "
                   "or use --preset fair")
  if "warm_start" in given and (args.setting != "MRL" or args.warm_start not in ("cuda_exact", "direct")):
    parser.error(f"--warm-start {args.warm_start} conflicts with --preset reference: {ref} runs "
                 + ("cuda_exact (the published --CUDA=0 commands) or direct (the fork's CPU build)"
                    if args.setting == "MRL" else "no warm start"))
  if args.setting == "TTv2" and "n_states" not in given:
    args.n_states = default.n_states
  if args.setting == "MRL" and "warm_start" not in given:
    args.warm_start = default.config.warm_start
  preset = reference_preset(args)
  if args.setting == "TTv2" and "n_states" in given:
    print(f"--preset reference: --n-states {args.n_states:g} sets TT-v2's --dwmin {2 / args.n_states:g} (the "
          "reference's own flag, default 0.1 = 20 states)", file=sys.stderr)
  for name, flag, value in (("epochs", "--epochs", preset.epochs), ("batch_size", "--batch-size", preset.batch_size),
                            ("lr", "--lr", preset.learning_rate), ("lr_decay_every", "--lr-decay-every",
                                                                   preset.lr_decay_every)):
    if name not in given:
      setattr(args, name, value)
    elif getattr(args, name) != value:
      print(f"--preset reference: {flag} {getattr(args, name):g} wins over {ref}'s {value:g}", file=sys.stderr)
  args.n_states, args.io_perfect = preset.n_states, None  # per setting and role: see meta.json "resolved"
  if args.setting != "MRL":
    args.tiles = args.gamma = args.warm_start = None
  return preset


def resolved_config(args) -> dict:
  """The full configuration that runs (for ``meta.json``)."""
  if args.preset == "reference":
    return {"preset": "reference", **reference_preset(args).describe(), "approximated": list(args.approximate)}
  return {"preset": "fair", "analog": presets.to_jsonable(fair_config(args)),
          "io": presets.to_jsonable(PERFECT_IO if args.io_perfect else IOParameters())}


def fair_config(args):
  """The analog configuration of ``args.setting`` under the fair preset (a device for SGD, None for FP)."""
  io, n = PERFECT_IO if args.io_perfect else IOParameters(), args.n_states
  if args.setting == "MRL":
    # A warm start needs a tile between the gradient tile and the target, so K = 2 runs without one.
    warm_start = args.warm_start if args.tiles >= 3 else "none"
    return optim.mrl_mnist(n, n_tiles=args.tiles, gamma=args.gamma, warm_start=warm_start,
                           transfer_io=io).replace(engine=args.engine)
  if args.setting in ("TTv1", "TTv2"):
    preset = optim.ttv1 if args.setting == "TTv1" else optim.ttv2
    return preset(n, transfer_io=io).replace(engine=args.engine)
  if args.setting in ("TTv3", "TTv4"):
    return (optim.ttv3 if args.setting == "TTv3" else optim.ttv4)(n, transfer_io=io)
  if args.setting == "MP":
    return optim.mixed_precision_preset(n)
  if args.setting == "SGD":
    return M.limited_state_soft_bounds(n)
  return None


def model_kwargs(args) -> dict:
  """``LeNet5`` keyword arguments of the setting: I/O per role, the learned output scale and the weight mapping
  (reference preset)."""
  if getattr(args, "preset", "fair") == "reference":
    return reference_preset(args).layer_kwargs()
  return dict.fromkeys(("forward_io", "backward_io"), PERFECT_IO if args.io_perfect else IOParameters())


def make_optimizer(args, params, steps_per_epoch: int, key=None):
  """The optax transformation of ``args.setting`` (analog weights) + SGD (biases)."""
  lr = optax.exponential_decay(args.lr, steps_per_epoch * args.lr_decay_every, 0.1, staircase=True)
  key = jax.random.key(args.seed) if key is None else key
  if getattr(args, "preset", "fair") == "reference":
    preset = reference_preset(args)
    lr = optax.exponential_decay(args.lr, steps_per_epoch * args.lr_decay_every, preset.lr_decay_factor,
                                 staircase=True)
    analog = preset.analog_optimizer(lr, key=key, engine=args.engine, approximate=args.approximate)
    return analog_partition(analog, preset.digital_optimizer(lr), params)
  cfg = fair_config(args)
  if args.setting in ("MRL", "TTv1", "TTv2"):
    analog = optim.transfer_compound(cfg, lr, key=key, engine=args.engine)
  elif args.setting in ("TTv3", "TTv4"):
    analog = optim.chopped_transfer(cfg, lr, key=key, engine=args.engine)
  elif args.setting == "MP":
    analog = optim.mixed_precision(cfg, lr, key=key, engine=args.engine)
  elif args.setting == "SGD":
    analog = optim.analog_sgd(cfg, lr, key=key, engine=args.engine)
  else:
    analog = optax.chain(optim.densify(), optax.sgd(lr))
  return analog_partition(analog, optax.sgd(lr), params)


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  preset = resolve_reference(parser, args, argv) if args.preset == "reference" else None
  cli.check_approximations(parser, args.approximate, preset)
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
  model = LeNet5(rngs=nnx.Rngs(params=args.seed, noise=args.seed + 1), **model_kwargs(args))
  steps_per_epoch = len(images) // args.batch_size
  tx = make_optimizer(args, nnx.state(model, nnx.Param), steps_per_epoch)
  analog = reference_preset(args).config if args.preset == "reference" else fair_config(args)
  if "lr" in cli.given_flags(parser, argv) and cli.analog_lr_notice(analog):
    print(f"notice: {cli.analog_lr_notice(analog)}", file=sys.stderr)
  states = f"{args.n_states:g} states" if args.n_states else "floating point"
  print(f"LeNet-5 / {args.dataset}: {len(images)} train, {len(test[0])} test images; setting {args.setting} "
        f"({args.preset} preset), {states}, {steps_per_epoch} steps per epoch", file=sys.stderr)
  cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out_dir=args.out, resume=args.resume,
                  overwrite=args.overwrite, resume_safe_fields=cli.SAFE_TO_CHANGE,
                  checkpoint_every_steps=args.checkpoint_every_steps,
                  steps_per_dispatch=args.steps_per_dispatch, seed=args.seed, progress=not args.no_progress)
  run_meta = {**vars(args), "resolved": resolved_config(args)}
  _, history, state = fit(model, tx, (images, labels), test, cfg, to_input=data.to_float, run_meta=run_meta,
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
