"""What the training scripts (``examples/``) share on the command line: argument checks, the fields a resume may
change, and how a run ends on Ctrl-C or on a refused run directory (one line, no traceback)."""

from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import sys
from typing import Callable, Sequence

from mrl_jax._checks import FINITE_NON_NEGATIVE
from mrl_jax.data.sources import DatasetNotFoundError
from mrl_jax.training.loop import TrainingInterrupted
from mrl_jax.training.rundir import RunDirectoryError

# CLI fields a resume may change: how long the run goes, how it is saved and shown, where its files are (the data
# themselves are compared by sha256 as "data"), the pulsed-update engine and the steps per dispatch (every
# choice of those gives the same bits).
SAFE_TO_CHANGE = ("epochs", "resume", "overwrite", "no_progress", "checkpoint_every_steps", "steps_per_dispatch",
                  "out", "data_dir", "engine", "log_jsonl")

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a job ended by Ctrl-C
EXIT_REFUSED = 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """``--help`` with every flag's default, and the epilog's lines as written."""


EPILOG = """settings (--setting; the reference scripts' names work too: ResL, TT-v1, mp, …):
  MRL    multi-tile residual learning (the reference's ResL): K tiles of significance γ^k; the gradient is
         pulsed into tile 0 and transferred upwards every T_k mini-batches; the warm start fills the top tile
         first, one tile down per loss plateau
  TTv1   Tiki-Taka: 2 tiles, one column of the gradient tile read into the visible tile per mini-batch
  TTv2   buffered Tiki-Taka: transfers accumulate in a digital buffer, written once they pass a threshold
  TTv3   chopped TT-v2 (c-TTv2): TT-v2 with input choppers that flip the sign of the gradient tile's writes
  TTv4   AGAD: TT-v3 with a dynamically estimated reference of the gradient tile
  MP     mixed precision: the gradient accumulates digitally and is committed to the device in whole steps
  SGD    analog SGD: the gradient pulsed straight onto one tile
  FP     floating-point SGD (no device)
warm-start modes (--warm-start, MRL):
  cuda_exact  as the reference's CUDA code (its published --CUDA=0 commands): tile 1 hops into the target
  direct      as the reference fork's CPU build: tile 0 hops straight into the target
  via_tile1   tile 1 hops into the target; the warm start ends when the target reaches tile 1
  none        no warm start: the cascade runs from the first mini-batch"""


def analog_lr_notice(config) -> str | None:
  """What ``--lr`` does not reach in a setting's analog configuration, as a notice; None when it scales every
  analog rate (analog SGD, mixed precision, or compounds that scale both their writes by the SGD rate).

  Args:
    config: a ``TransferCompound`` / ``ChoppedTransfer`` / ``DynamicTransfer`` (with ``fast_lr``), any other
      analog configuration, or None (floating point).
  """
  if config is None or not hasattr(config, "fast_lr"):
    return None
  gradient = config.fast_lr in (None, 0) or getattr(config, "scale_fast_lr", False)
  transfer = getattr(config, "scale_transfer_lr", True)
  if gradient and transfer:
    return None
  fast = f"the gradient write's rate (fast_lr {config.fast_lr:g})"
  if not gradient and not transfer:
    return (f"--lr reaches only the digital parameters (biases) of this setting: {fast} and the transfer rates "
            "are absolute, as in the reference")
  absolute, scaled = (fast, "the transfers") if transfer else ("the transfer rates", "the gradient write")
  return f"--lr scales only {scaled} of the analog weights (and the digital parameters): {absolute} is absolute"


def learning_rate_arg(text: str) -> float:
  """argparse ``type`` of a learning rate: a finite number >= 0 (argparse names the flag in its error)."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not math.isfinite(value) or value < 0:
    raise argparse.ArgumentTypeError(f"{text} is invalid: allowed range is {FINITE_NON_NEGATIVE}")
  return value


def int_arg(low: int):
  """argparse ``type`` of an integer >= ``low``."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
      raise argparse.ArgumentTypeError(f"{text} is invalid: allowed range is integers >= {low}")
    return value

  return parse


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
  """``--checkpoint-every-steps`` and ``--steps-per-dispatch`` (``training.loop.FitConfig``)."""
  parser.add_argument("--checkpoint-every-steps", type=int_arg(0), default=0,
                      help="extra mid-epoch checkpoints every N steps (default 0: at epoch ends only)")
  parser.add_argument("--steps-per-dispatch", type=int_arg(1), default=8,
                      help="training steps per jitted call (lax.scan; the same results for every value, fewer "
                           "dispatches; default 8)")


def add_run_dir_arguments(parser: argparse.ArgumentParser) -> None:
  """``--out``, ``--resume``, ``--overwrite`` with the run-directory rules of ``mrl_jax.training.rundir``."""
  parser.add_argument("--out", default=None,
                      help="run directory for meta.json, metrics and checkpoints; one that holds a run needs "
                           "--resume or --overwrite")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--resume", action="store_true",
                    help="continue the run in --out (its settings must match, except " + ", ".join(
                        f"--{f.replace('_', '-')}" for f in SAFE_TO_CHANGE if f not in ("resume", "overwrite")) + ")")
  mode.add_argument("--overwrite", action="store_true",
                    help="delete the run in --out (meta.json, metrics, checkpoints, plots) and start afresh")


def resume_command(argv: Sequence[str], script: str | None = None) -> str:
  """The command line that continues an interrupted run: the same arguments with ``--resume``, without
  ``--overwrite`` (which would delete the run)."""
  script = script if script is not None else sys.argv[0]
  args = [a for a in argv if a != "--overwrite"]
  if "--resume" not in args:
    args.append("--resume")
  return shlex.join(["python", os.path.relpath(script) if os.path.isabs(script) else script, *args])


def run(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> None:
  """Runs a script's ``main(argv)`` and turns its expected endings into one line on stderr and an exit status.

  Ctrl-C during training: where the last checkpoint is and the command that resumes (status 130). A refused run
  directory or missing data: the reason (status 2). Anything else keeps its traceback: that is a bug to report.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  prog = os.path.basename(sys.argv[0])
  try:
    main(argv)
  except TrainingInterrupted as err:
    if err.checkpoint is not None:
      print(f"{prog}: interrupted {err.when}; last checkpoint: {err.checkpoint}; to continue: "
            f"{resume_command(argv)}", file=sys.stderr)
    else:
      print(f"{prog}: interrupted {err.when}; no checkpoint was written (no --out, or none yet)", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None
  except KeyboardInterrupt:
    print(f"{prog}: interrupted (not while training: nothing to resume from this point)", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None
  except (RunDirectoryError, DatasetNotFoundError) as err:
    print(f"{prog}: error: {err}", file=sys.stderr)
    raise SystemExit(EXIT_REFUSED) from None


def check_approximations(parser, approximate, preset) -> None:
  """``--approximate FIELD``: every field a reference preset holds that mrl_jax cannot model must be named.

  Args:
    parser: the script's ``argparse`` parser (its ``error`` ends the run with a usage message).
    approximate: the ``--approximate`` fields given.
    preset: the resolved ``ReferencePreset``, or None for ``--preset fair``.
  """
  if preset is None:
    if approximate:
      parser.error("--approximate applies to --preset reference only")
    return
  try:
    preset.check_supported(approximate)
  except ValueError as err:
    parser.error(str(err))
  except NotImplementedError as err:
    missing = [field for field, _ in preset.unsupported if field not in approximate]
    parser.error(f"{err} On the command line: " + " ".join(f"--approximate {field}" for field in missing))


def given_flags(parser: argparse.ArgumentParser, argv) -> set:
  """The ``dest`` of every flag present on the command line (argparse fills in the others' defaults)."""
  quiet = copy.deepcopy(parser)
  for action in quiet._actions:
    action.default = argparse.SUPPRESS
  return set(vars(quiet.parse_args(argv)))
