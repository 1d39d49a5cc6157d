"""Seed sweeps and grids of LeNet-5 runs: each grid point is ONE jit + vmap program over device seeds.

    python examples/sweep.py --settings MRL TTv1 TTv2 MP SGD FP --n-states 4 10 --seeds 3 --epochs 3 \\
        --train-subset 10000 --out runs/sweep

Grid: every ``--presets`` × ``--settings``; the fair preset also spans ``--n-states`` and, for MRL,
``--tiles`` × ``--gamma`` × ``--warm-start``; a reference point runs the setting as ``Mnist_LeNet5.py`` configures it
(its state count included; ``docs/seed-parity.md``); FP runs once. Writes ``OUT/sweep.json`` (the sweep's
configuration and grid), ``OUT/<point>.jsonl`` (per-epoch, per-seed metrics and the warm-start target tile),
``OUT/summary.md`` and ``OUT/summary.csv`` (mean ± sample std over seeds of the final test accuracy and training
loss), and plots ``OUT/accuracy_vs_epoch.png`` and ``OUT/accuracy_vs_states.png``. The seed axis is sharded over all
devices (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on a CPU; those of every process, below).

A folder that holds a sweep needs ``--resume`` (finished points are kept, unfinished ones rerun; a changed grid or
configuration is refused with the difference) or ``--overwrite``.

Several processes and hosts (JAX's multi-controller runtime, ``jax.distributed``): ``--distributed auto`` on a
cluster whose environment JAX detects (SLURM, Open MPI, …), or ``--coordinator HOST:PORT --num-processes N
--process-id I`` started once per process. Every process runs the same grid on the same data; the seeds of a
point are sharded over the devices of all processes, and process I writes the records of its own seeds to
``OUT/<point>.p<I>.jsonl`` (each epoch record names its ``seed_indices``). ``--out`` must be a folder every
process sees (a shared filesystem). Process 0 alone checks and writes the folder's manifest, decides which
points are finished (their files together hold every seed's every epoch) and deletes the files of the others
before any process trains, and sends that decision to all processes, so they run the same points; after the
last point it writes the summary from every process's records.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import re
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrl_jax import data  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.optim import presets  # noqa: E402
from mrl_jax.training import cli  # noqa: E402
from mrl_jax.training.rundir import RunDirectoryError  # noqa: E402
from mrl_jax.training.sweep import summarize, sweep_mesh, train_seeds  # noqa: E402

WARM_STARTS = ("direct", "via_tile1", "cuda_exact", "none")
# Flags that do not change a grid point's results (or only where its files go): a resume may change them.
NOT_IDENTITY = ("resume", "overwrite", "steps_per_dispatch", "out", "data_dir", "summarize", "distributed",
                "coordinator", "num_processes", "process_id", "defer")
MANIFEST = "sweep.json"


def _lenet_example():
  spec = importlib.util.spec_from_file_location("mnist_lenet5", ROOT / "examples" / "mnist_lenet5.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def build_parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--settings", nargs="+", default=["MRL", "TTv1", "TTv2", "MP", "SGD", "FP"],
                 type=_setting_arg, help="MRL (the reference's ResL), TTv1, TTv2, TTv3, TTv4, MP, SGD, FP")
  p.add_argument("--presets", nargs="+", default=["fair"], choices=("fair", "reference"),
                 help="fair: SoftBoundsDevice(±1, 2/n_states) for every method; reference: Mnist_LeNet5.py's own "
                      "configuration of each setting (fixes its state count)")
  p.add_argument("--n-states", nargs="+", type=float, default=[4.0], help="state counts (fair preset)")
  p.add_argument("--tiles", nargs="+", type=int, default=[7], help="MRL tile counts K (fair preset)")
  p.add_argument("--gamma", nargs="+", type=float, default=[0.5], help="MRL significance ratios γ (fair preset)")
  p.add_argument("--warm-start", nargs="+", default=["via_tile1"], choices=WARM_STARTS,
                 help="MRL warm-start modes (fair preset; the reference preset runs cuda_exact)")
  p.add_argument("--approximate", action="append", default=[], metavar="FIELD",
                 help="reference points: run although mrl_jax cannot model FIELD yet (see mnist_lenet5.py)")
  p.add_argument("--seeds", type=cli.int_arg(1), default=3)
  p.add_argument("--epochs", type=cli.int_arg(1), default=3)
  p.add_argument("--batch-size", type=cli.int_arg(1), default=8)
  p.add_argument("--lr", type=cli.learning_rate_arg, default=0.05)
  p.add_argument("--lr-decay-every", type=cli.int_arg(1), default=50)
  p.add_argument("--io-perfect", action=argparse.BooleanOptionalAction, default=True,
                 help="perfect I/O for the fair preset (else AIHWKit's default noisy I/O)")
  p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--embedded", action="store_true",
                 help="the MNIST subset embedded in the package (10,000 training and 2,000 test images)")
  p.add_argument("--train-subset", type=cli.int_arg(0), default=0, help="first N training images (0 = all)")
  p.add_argument("--steps-per-dispatch", type=cli.int_arg(1), default=8,
                 help="training steps per jitted call (lax.scan; the same results for every value)")
  p.add_argument("--plateau-every", type=cli.int_arg(0), default=0,
                 help="mini-batches between warm-start plateau checks (0 = once per epoch, as the reference)")
  p.add_argument("--data-seed", type=int, default=0)
  p.add_argument("--out", default="runs/sweep")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--resume", action="store_true",
                    help="continue the sweep in --out: keep its finished points, rerun the others (the grid and "
                         "configuration must be the same)")
  mode.add_argument("--overwrite", action="store_true", help="delete the sweep in --out and start afresh")
  p.add_argument("--defer", nargs="+", default=[], metavar="SETTING",
                 help="train the points of these settings last, in a later run: this run leaves them unfinished "
                      "(the grid is unchanged; run again without --defer to complete it and write the summary)")
  p.add_argument("--summarize", nargs="+", metavar="DIR", default=None,
                 help="train nothing: combine the finished points (JSONL) of these sweep folders into --out")
  dist = p.add_argument_group("several processes (jax.distributed; the same command in every process)")
  dist.add_argument("--distributed", choices=("off", "auto"), default="off",
                    help="auto: jax.distributed.initialize() takes the processes from the cluster's environment "
                         "(SLURM, Open MPI, …); flags given below override what it detects")
  dist.add_argument("--coordinator", metavar="HOST:PORT", type=_address_arg, default=None,
                    help="address of process 0, where the coordinator listens (the same in every process)")
  dist.add_argument("--num-processes", type=cli.int_arg(1), default=None, help="number of processes")
  dist.add_argument("--process-id", type=cli.int_arg(0), default=None, help="this process: 0 … N-1")
  return p


def _address_arg(text: str) -> str:
  host, _, port = text.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (a port 1 … 65535)")
  return text


def start_processes(parser, args) -> None:
  """Joins the process group of a multi-process sweep (``jax.distributed.initialize``), before any JAX call.

  Explicit flags need all three of ``--coordinator``, ``--num-processes`` and ``--process-id``; with
  ``--distributed auto`` JAX detects what is not given.
  """
  explicit = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
              "--process-id": args.process_id}
  given = [flag for flag, value in explicit.items() if value is not None]
  if args.distributed == "off" and not given:
    return
  if args.distributed == "off" and len(given) < 3:
    parser.error(f"{', '.join(given)} given without {', '.join(f for f in explicit if f not in given)}: a "
                 "multi-process sweep needs all three (or --distributed auto on a cluster JAX detects)")
  if args.process_id is not None and args.num_processes is not None and args.process_id >= args.num_processes:
    parser.error(f"--process-id {args.process_id} is out of range: allowed 0 … {args.num_processes - 1} "
                 f"(--num-processes {args.num_processes})")
  # Cross-process collectives on the CPU need an implementation; gloo is jax 0.10's default, named here so that
  # a CPU sweep over processes does not depend on it (GPUs use NCCL whatever this says).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  except ValueError as err:
    if args.distributed == "auto" and len(given) < 3:
      parser.error(f"--distributed auto: JAX found no cluster environment to take the processes from ({err}); "
                   "give --coordinator HOST:PORT --num-processes N --process-id I")
    raise


def _load(args):
  if args.embedded:
    return data.embedded_mnist("train"), data.embedded_mnist("test")
  return (data.load_dataset(args.dataset, "train", data_dir=args.data_dir),
          data.load_dataset(args.dataset, "test", data_dir=args.data_dir))


def _barrier(name: str) -> None:
  """Waits until every process has reached the barrier ``name``."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _from_process_0(value) -> np.ndarray:
  """Process 0's ``value`` on every process (a collective: every process must call it, in the same order)."""
  if jax.process_count() == 1:
    return np.asarray(value)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def _all_processes(value) -> np.ndarray:
  """Every process's ``value``, stacked by process index (a collective, as ``_from_process_0``)."""
  if jax.process_count() == 1:
    return np.asarray(value)[None]
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(np.asarray(value)))


def _setting_arg(text: str) -> str:
  try:
    return presets.canonical_setting(text)
  except ValueError as err:
    raise argparse.ArgumentTypeError(str(err)) from None


def grid(args) -> list[dict]:
  """Grid points: ``{"preset", "setting", "n_states", "tiles", "gamma", "warm_start"}`` (None where unused)."""
  points = []
  for preset, setting in itertools.product(args.presets, args.settings):
    none = {"preset": preset, "setting": setting, "n_states": None, "tiles": None, "gamma": None, "warm_start": None}
    if setting == "FP":
      # Floating point has no device: one point, the same under either preset.
      if preset == args.presets[0]:
        points.append(none)
    elif preset == "reference":
      ref = presets.lenet5_mnist_reference(setting)
      points.append({**none, "n_states": ref.n_states})
      if setting == "MRL":
        points[-1].update(tiles=ref.config.n_tiles, gamma=ref.config.gamma, warm_start=ref.config.warm_start)
    elif setting == "MRL":
      points += [{**none, "n_states": n, "tiles": k, "gamma": g, "warm_start": w} for n, k, g, w in
                 itertools.product(args.n_states, args.tiles, args.gamma, args.warm_start)]
    else:
      points += [{**none, "n_states": n} for n in args.n_states]
  return points


def point_name(p: dict) -> str:
  name = p["setting"] + (f"_s{p['n_states']:g}" if p["n_states"] else "")
  if p["tiles"]:
    name += f"_K{p['tiles']}_g{p['gamma']:g}_{p['warm_start']}"
  return name + ("_ref" if p.get("preset") == "reference" and p["setting"] != "FP" else "")


def point_args(args, point: dict) -> argparse.Namespace:
  """The ``mnist_lenet5.py`` arguments of a grid point."""
  ns = {**vars(args), "preset": point["preset"], "setting": point["setting"], "seed": 0, "engine": "auto",
        "n_states": point["n_states"] or 4.0, "tiles": point["tiles"] or 7, "gamma": point["gamma"] or 0.5,
        "warm_start": point["warm_start"] or "none", "approximate": []}
  if point["preset"] == "reference":  # the --approximate fields this setting holds
    held = dict(presets.lenet5_mnist_reference(point["setting"]).unsupported)
    ns["approximate"] = [f for f in args.approximate if f in held]
  return argparse.Namespace(**ns)


def sweep_identity(args, points: list[dict]) -> dict:
  """What a resumed sweep must share with the one in its folder: every result-changing flag and the grid."""
  # --embedded came after sweeps were recorded: off, it stays out of the identity, so that those still resume.
  return {"config": {k: v for k, v in vars(args).items()
                     if k not in NOT_IDENTITY and not (k == "embedded" and not v)},
          "points": [point_name(p) for p in points]}


def differences(old: dict, new: dict) -> list[str]:
  """Human-readable differences between two sweep identities."""
  out = []
  for key in sorted(set(old["config"]) | set(new["config"])):
    a, b = old["config"].get(key, "<absent>"), new["config"].get(key, "<absent>")
    if a != b:
      out.append(f"--{key.replace('_', '-')}: {a} in the folder, {b} now")
  added = [p for p in new["points"] if p not in old["points"]]
  removed = [p for p in old["points"] if p not in new["points"]]
  if added:
    out.append("points not in the folder's grid: " + ", ".join(added))
  if removed:
    out.append("points of the folder's grid left out: " + ", ".join(removed))
  return out


def open_sweep_folder(out: Path, identity: dict, resume: bool, overwrite: bool) -> None:
  """Checks ``out`` against the sweep about to run and writes its manifest.

  Raises:
    RunDirectoryError: ``out`` holds a sweep and neither ``resume`` nor ``overwrite`` is set, or ``resume`` is
      set and the sweep in ``out`` has another grid or configuration (the message lists the differences).
  """
  manifest = out / MANIFEST
  held = sorted(out.glob("*.jsonl"))
  if overwrite:
    for path in held + [manifest, out / "summary.md", out / "summary.csv", out / "accuracy_vs_epoch.png",
                        out / "accuracy_vs_states.png"]:
      path.unlink(missing_ok=True)
  elif manifest.exists() or held:
    if not resume:
      raise RunDirectoryError(f"{out} holds a sweep ({len(held)} point files); --resume continues it (finished "
                              "points are kept), --overwrite deletes it")
    if not manifest.exists():
      raise RunDirectoryError(f"{out} holds point files but no {MANIFEST} (a sweep of an older version): summarize "
                              f"it with --summarize {out} --out OTHER, or start this sweep in another folder")
    diff = differences(json.loads(manifest.read_text()), json.loads(json.dumps(identity)))
    if diff:
      raise RunDirectoryError(f"--resume refused: the sweep in {out} differs: " + "; ".join(diff)
                              + ". Use another --out for a new grid (combine folders with --summarize)")
  out.mkdir(parents=True, exist_ok=True)
  manifest.write_text(json.dumps(identity, indent=1) + "\n")


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = build_parser()
  args = parser.parse_args(argv)
  out = Path(args.out)
  if args.summarize:
    out.mkdir(parents=True, exist_ok=True)
    return summarize_folders([Path(d) for d in args.summarize], out)
  if args.embedded and args.dataset != "mnist":
    parser.error(f"--embedded holds MNIST only, not --dataset {args.dataset}")
  start_processes(parser, args)
  process, n_processes = jax.process_index(), jax.process_count()
  try:  # the mesh every point will use: refused here, before any folder is touched, if it leaves a process idle
    sweep_mesh(args.seeds, args.batch_size)
  except ValueError as err:
    parser.error(f"--seeds {args.seeds}: {err}")
  lenet = _lenet_example()
  points = grid(args)
  unknown = sorted(set(args.defer) - {p["setting"] for p in points})
  if unknown:
    parser.error(f"--defer {' '.join(unknown)}: allowed are settings of this sweep's grid: "
                 f"{', '.join(dict.fromkeys(p['setting'] for p in points))}")
  for point in points:
    if point["preset"] == "reference":
      ns = point_args(args, point)
      cli.check_approximations(parser, ns.approximate, lenet.reference_preset(ns))
  identity = sweep_identity(args, points)
  headers = {point_name(p): json.loads(json.dumps({"event": "start", **identity["config"], **p})) for p in points}
  finished = prepare_folder(out, identity, headers, args)
  # Process 0 first: the first use of a data set prepares the TFDS cache, which processes sharing it (one host,
  # or a shared $MRL_TFDS_DIR) must not write at once; the others then only read it.
  if process == 0:
    train, test = _load(args)
  _barrier("sweep: data prepared")
  if process != 0:
    train, test = _load(args)
  if args.train_subset:
    train = (train[0][: args.train_subset], train[1][: args.train_subset])
  steps = len(train[0]) // args.batch_size
  who = f"[process {process} of {n_processes}] " if n_processes > 1 else ""
  deferred = [point_name(p) for p in points if not finished[point_name(p)] and p["setting"] in args.defer]
  for point in points:
    name = point_name(point)
    if finished[name] or name in deferred:
      continue
    ns = point_args(args, point)
    model_kwargs = lenet.model_kwargs(ns)
    make_model = lambda key, kw=model_kwargs: LeNet5(rngs=nnx.Rngs(params=key, noise=jax.random.fold_in(key, 1)), **kw)
    params_template = nnx.state(make_model(jax.random.key(0)), nnx.Param)
    make_tx = lambda key, ns=ns, t=params_template: lenet.make_optimizer(ns, t, steps, key=key)
    # This process's seeds only; the header marks the point as started.
    log_path = out / point_file(name, process, n_processes)
    log_path.write_text(json.dumps(headers[name]) + "\n")

    def log(record, _state, log_path=log_path, name=name):
      with open(log_path, "a") as f:
        f.write(json.dumps({"event": "epoch", **record}) + "\n")
      acc = np.asarray(record["test_acc"])
      if acc.size:  # none where this process only shares the batch of another process's seeds
        print(f"{who}{name} epoch {record['epoch']}: test acc {acc.mean():.4f} ± {sample_std(acc):.4f} over seeds "
              f"{record['seed_indices']} ({record['seconds']:.0f}s)", file=sys.stderr, flush=True)

    try:
      train_seeds(make_model, make_tx, train, test, seeds=args.seeds, epochs=args.epochs,
                  batch_size=args.batch_size, data_seed=args.data_seed, to_input=data.to_float,
                  plateau_every=args.plateau_every or None, steps_per_dispatch=args.steps_per_dispatch, on_epoch=log)
    except KeyboardInterrupt:
      print(f"{who}sweep interrupted in {name}; finished points are kept in {out}; to continue: "
            f"{cli.resume_command(argv)}", file=sys.stderr)
      raise SystemExit(cli.EXIT_INTERRUPTED) from None
  _barrier("sweep: every record file closed")  # before process 0 reads them all
  if process != 0:
    return None
  if deferred:
    print(f"deferred (--defer), still to train: {', '.join(deferred)}; run again without --defer to finish the "
          "sweep and write its summary", file=sys.stderr)
    return None
  rows = [summary_row(p, load_point(out, point_name(p), headers[point_name(p)])[1:]) for p in points]
  write_summary(out, rows)
  plot_summary(out, rows)
  return rows


def prepare_folder(out: Path, identity: dict, headers: dict[str, dict], args) -> dict[str, bool]:
  """Opens ``out`` for the sweep and returns which points are finished, the same answer in every process.

  Process 0 alone checks the folder and writes its manifest (``open_sweep_folder``), decides which points are
  finished (``load_point``) and deletes the record files of the others, all before the other processes hear
  the decision, so no process writes a file that process 0 is about to delete and every process trains the
  same points (a point skipped by one process and trained by another would leave the others waiting in
  its collectives).

  Raises:
    RunDirectoryError: process 0 refused the folder (in every process), or a process does not see the
      manifest process 0 wrote (``--out`` is not on a filesystem that every process shares).
  """
  error, finished = "", np.zeros(len(headers), bool)
  if jax.process_index() == 0:
    try:
      open_sweep_folder(out, identity, args.resume, args.overwrite)
      for i, (name, header) in enumerate(headers.items()):
        finished[i] = load_point(out, name, header) is not None
        files = point_files(out, name)
        if finished[i]:
          print(f"{name}: finished earlier, kept ({', '.join(f.name for f in files)})", file=sys.stderr)
          continue
        if files:
          print(f"{name}: unfinished ({', '.join(f.name for f in files)}); rerunning the point", file=sys.stderr)
        for f in files:
          f.unlink()
    except RunDirectoryError as err:
      error = str(err)
  if _from_process_0(np.int32(bool(error))):
    raise RunDirectoryError(error or f"process 0 refused --out {out} (its message says why)")
  finished = _from_process_0(finished)
  manifest = out / MANIFEST
  seen = manifest.exists() and json.loads(manifest.read_text()) == json.loads(json.dumps(identity))
  blind = np.flatnonzero(_all_processes(np.int32(seen)) == 0).tolist()
  if blind:
    raise RunDirectoryError(f"process(es) {blind} do not see the {manifest} that process 0 wrote: --out must be a "
                            "folder that every process shares (a shared filesystem)")
  return {name: bool(done) for name, done in zip(headers, finished)}


def point_file(name: str, process: int, n_processes: int) -> str:
  """The record file of one process: ``<point>.jsonl`` for a single process, ``<point>.p<I>.jsonl`` for several."""
  return f"{name}.jsonl" if n_processes == 1 else f"{name}.p{process}.jsonl"


def point_files(folder: Path, name: str) -> list[Path]:
  """The record files of a point in ``folder``, of one process or of several."""
  pattern = re.compile(re.escape(name) + r"(\.p\d+)?\.jsonl")
  return sorted(p for p in folder.glob("*.jsonl") if pattern.fullmatch(p.name))


def load_point(folder: Path, name: str, header: dict | None = None) -> list[dict] | None:
  """``[header, epoch records over all seeds]`` of a finished point, else None.

  A point is finished when its files (``point_files``) whose header equals ``header`` (or, if None, the
  first file's) and which hold every epoch together hold every seed: a single-process file, or one file per
  process of a multi-process run (merged here by ``seed_indices``). A file from a run that stopped early counts
  as nothing, so a rerun completes the point.
  """
  parts = [point_records(path) for path in point_files(folder, name)]
  parts = [r for r in parts if r]
  if header is None and parts:
    header = parts[0][0]
  if header is None:
    return None
  parts = [r for r in parts if r[0] == header and len(r) - 1 == header["epochs"]]
  merged = []
  for epoch in range(header["epochs"]):
    per_seed, seconds = {}, 0.0
    for r in parts:
      record = r[1 + epoch]
      indices = record.get("seed_indices", list(range(len(record["train_loss"]))))  # older single-process files
      for i, seed in enumerate(indices):
        per_seed.setdefault(seed, {k: v[i] for k, v in record.items() if isinstance(v, list)})
      seconds = max(seconds, record["seconds"])  # the processes run in step: the slowest one's time
    if sorted(per_seed) != list(range(header["seeds"])):
      return None
    keys = per_seed[0].keys()
    merged.append({"epoch": epoch + 1, **{k: [per_seed[s][k] for s in sorted(per_seed)] for k in keys},
                   "seconds": seconds})
  return [header] + merged


def point_records(log_path: Path) -> list[dict] | None:
  """``[header, epoch records…]`` of a point file (without the ``event`` field of the epochs), None if absent.

  Reading stops at a line that is not JSON: the last line of a process killed while writing it.
  """
  if not log_path.exists():
    return None
  lines = []
  for line in filter(str.strip, log_path.read_text().splitlines()):
    try:
      lines.append(json.loads(line))
    except json.JSONDecodeError:
      break
  if not lines:
    return []
  return lines[:1] + [{k: v for k, v in r.items() if k != "event"} for r in lines[1:] if r.get("event") == "epoch"]


def sample_std(values) -> float:
  """Standard deviation over seeds with Bessel's correction (0 for one seed): the one convention of the sweep."""
  values = np.asarray(values)
  return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize_folders(folders: list[Path], out: Path) -> list[dict]:
  """Summary table and plots of every finished point in ``folders`` (single- or multi-process record files)."""
  rows = []
  for folder in folders:
    names = sorted({re.sub(r"(\.p\d+)?\.jsonl$", "", p.name) for p in folder.glob("*.jsonl")})
    for name in names:
      records = load_point(folder, name)
      if records is not None:
        point = {k: records[0].get(k) for k in ("setting", "n_states", "tiles", "gamma", "warm_start")}
        rows.append(summary_row({**point, "preset": records[0].get("preset", "fair")}, records[1:]))
  write_summary(out, rows)
  plot_summary(out, rows)
  return rows


def summary_row(point: dict, records: list[dict]) -> dict:
  """The summary of one point: final metrics (``summarize``), the mean ± std test-accuracy curve, and the epochs
  after which a seed's warm start moved down a tile."""
  targets = [r.get("warm_start_target") for r in records]
  switches = [r["epoch"] for r, prev in zip(records[1:], targets) if r.get("warm_start_target") != prev]
  return {**point, **summarize(records), "curve": [float(np.mean(r["test_acc"])) for r in records],
          "curve_std": [sample_std(r["test_acc"]) for r in records], "switch_epochs": switches,
          "final_target": targets[-1] if point["setting"] == "MRL" else None}


def write_summary(out: Path, rows: list[dict]):
  cols = ["preset", "setting", "n_states", "tiles", "gamma", "warm_start", "seeds", "epochs", "test_acc_mean",
          "test_acc_std", "train_loss_mean", "train_loss_std", "seconds"]
  with open(out / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  dash = lambda v, fmt="{}": "–" if v is None else fmt.format(v)
  lines = ["Mean ± sample standard deviation (ddof 1) over device seeds, after the last epoch.", "",
           "| preset | setting | states | K | γ | warm start | seeds | epochs | test accuracy | final train loss "
           "| warm-start tile at the end (per seed) | wall s |", "|" + "---|" * 12]
  for r in rows:
    lines.append(f"| {r['preset']} | {r['setting']} | {dash(r['n_states'], '{:g}')} | {dash(r['tiles'])} "
                 f"| {dash(r['gamma'], '{:g}')} | {dash(r['warm_start'])} | {r['seeds']} | {r['epochs']} "
                 f"| {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} "
                 f"| {r['train_loss_mean']:.4f} ± {r['train_loss_std']:.4f} | {_targets(r['final_target'])} "
                 f"| {r['seconds']:.0f} |")
  (out / "summary.md").write_text("\n".join(lines) + "\n")


def _targets(targets) -> str:
  """Warm-start targets per seed: the tile being filled, or "cascade" once the warm start has ended (−1)."""
  return "–" if targets is None else ", ".join("cascade" if t < 0 else str(t) for t in targets)


def plot_summary(out: Path, rows: list[dict]):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in rows:
    m, s = np.asarray(r["curve"]), np.asarray(r["curve_std"])
    epochs = np.arange(1, len(m) + 1)
    line, = ax.plot(epochs, m, marker="o", markersize=3, label=point_name(r))
    ax.fill_between(epochs, m - s, m + s, alpha=0.2, color=line.get_color())
    switched = [e for e in r["switch_epochs"] if e <= len(m)]
    if switched:  # a seed's warm start moved down a tile after these epochs
      ax.plot(switched, m[np.asarray(switched) - 1], "v", color=line.get_color(), markersize=7)
  ax.set(xlabel="epoch", ylabel="test accuracy",
         title="LeNet-5: mean ± sample std over device seeds (▼ warm-start switch)")
  ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(out / "accuracy_vs_epoch.png", dpi=120)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(5, 4))
  for setting in dict.fromkeys(r["setting"] for r in rows):
    pts = sorted((r["n_states"], r["test_acc_mean"], r["test_acc_std"]) for r in rows
                 if r["setting"] == setting and r["n_states"] and r["preset"] == "fair"
                 and r["tiles"] in (None, 7) and r["gamma"] in (None, 0.5))
    if pts:
      n, m, s = map(np.asarray, zip(*pts))
      ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=setting)
  ax.set(xlabel="conductance states", ylabel="final test accuracy", xscale="log")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "accuracy_vs_states.png", dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  cli.run(main)
