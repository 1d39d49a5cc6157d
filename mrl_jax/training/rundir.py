"""Run directories: a run is never overwritten without being asked, and never resumed with other settings.

A run directory holds ``meta.json`` (the run's resolved configuration and data provenance, written when the run
starts), ``metrics.jsonl``, the checkpoints ``ckpt_*`` and plots. :func:`plan_run` decides, before anything is
written, what a new invocation may do with it:

* the directory does not exist or holds none of those files: a fresh run;
* it holds a run and neither ``resume`` nor ``overwrite`` was asked for: :class:`RunExistsError`;
* ``overwrite``: the old run's files (only those) are deleted, then a fresh run;
* ``resume``: the new configuration is compared with ``meta.json``; fields that differ must all be in the caller's
  set of fields that are safe to change (e.g. the number of epochs), else :class:`ResumeMismatchError` lists every
  difference. An accepted resume appends ``{"event": "resume", "changed": {...}}`` to ``metrics.jsonl``.

``fit`` uses it; a script passes its resolved settings as ``run_meta`` and the safe set in ``FitConfig``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

META = "meta.json"
METRICS = "metrics.jsonl"
RUN_FILES = (META, METRICS, "curves.png", "tiles.png")
CHECKPOINT_PREFIX = "ckpt_"
FORMAT = 1

# Fields of FitConfig recorded in meta.json under "fit" (compared as "fit.<name>"), and those of them that may
# change on a resume: they decide how long the run goes and how often it is saved, not what it computes.
FIT_FIELDS = ("epochs", "batch_size", "eval_batch_size", "checkpoint_every_steps", "seed", "non_finite")
FIT_SAFE = ("fit.epochs", "fit.eval_batch_size", "fit.checkpoint_every_steps")
ABSENT = "<absent>"


class RunDirectoryError(Exception):
  """A run directory cannot be used as asked; the message says why and what to do."""


class RunExistsError(RunDirectoryError, FileExistsError):
  """The directory already holds a run and neither resume nor overwrite was asked for."""


class ResumeMismatchError(RunDirectoryError, ValueError):
  """A resume asked for settings that differ from the run's in fields that are not safe to change."""


@dataclasses.dataclass
class RunPlan:
  """What :func:`plan_run` decided.

  Attributes:
    out: the run directory.
    resume: continue the run in ``out`` (False: start a fresh one).
    meta: the ``meta.json`` content of this invocation.
    changed: on a resume, the safe fields that differ, ``{field: {"old": ..., "new": ...}}``.
    delete: files of an old run to delete before the fresh run starts (``overwrite``).
  """

  out: Path
  resume: bool
  meta: dict
  changed: dict = dataclasses.field(default_factory=dict)
  delete: list = dataclasses.field(default_factory=list)


def run_files(out: str | Path) -> list[Path]:
  """The files and checkpoint folders of a run in ``out`` (other files there are not ours and stay)."""
  out = Path(out)
  if not out.exists():
    return []
  if not out.is_dir():
    raise RunDirectoryError(f"run directory {out} exists and is not a directory")
  return sorted(p for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith(CHECKPOINT_PREFIX))


def _describe(files: list[Path]) -> str:
  names = [p.name for p in files if not p.name.startswith(CHECKPOINT_PREFIX)]
  checkpoints = sum(p.name.startswith(CHECKPOINT_PREFIX) for p in files)
  if checkpoints:
    names.append(f"{checkpoints} checkpoint{'s' if checkpoints > 1 else ''}")
  return ", ".join(names)


def _jsonable(value: Any) -> Any:
  """``value`` as it reads back from JSON (tuples become lists), so that old and new compare alike."""
  return json.loads(json.dumps(value, default=str))


def _flat(meta: dict) -> dict:
  """The compared fields: the caller's configuration as is, the loop's as ``fit.<name>``, the data as ``data``."""
  flat = dict(meta.get("config") or {})
  flat.update({f"fit.{k}": v for k, v in (meta.get("fit") or {}).items()})
  if meta.get("data") is not None:
    flat["data"] = _data_identity(meta["data"])
  return flat


def _data_identity(data: Any) -> Any:
  """The data by content: each split's source kind and file sha256 (paths may move, contents must not)."""
  if not isinstance(data, dict):
    return data
  identity = {}
  for split, record in sorted(data.items()):
    if isinstance(record, dict) and "files" in record:
      identity[split] = [record.get("source")] + [f.get("sha256") for f in record.get("files") or []]
    else:
      identity[split] = record
  return identity


def differences(old: dict, new: dict) -> dict:
  """``{field: (old, new)}`` for every field whose value differs or that only one side has."""
  return {k: (old.get(k, ABSENT), new.get(k, ABSENT)) for k in sorted(set(old) | set(new))
          if old.get(k, ABSENT) != new.get(k, ABSENT)}


def _show(value: Any) -> str:
  return value if value == ABSENT else json.dumps(value)


def _read_old_meta(out: Path) -> dict | None:
  """The run's recorded settings: ``meta.json``, else (runs written before it existed) the first metrics line."""
  if (out / META).is_file():
    return json.loads((out / META).read_text())
  if (out / METRICS).is_file():
    lines = (out / METRICS).read_text().splitlines()
    first = json.loads(lines[0]) if lines else {}
    if first.get("event") == "start":
      return {"config": {k: v for k, v in first.items() if k != "event"}}
  return None


def plan_run(out: str | Path, *, resume: bool, overwrite: bool, config: dict | None, fit: dict,
             data: dict | None = None, safe: Iterable[str] = ()) -> RunPlan:
  """Decides what to do with ``out``; raises before anything is changed when the request is not allowed.

  Args:
    out: the run directory.
    resume: continue the run there.
    overwrite: delete the run there and start afresh (excludes ``resume``).
    config: the caller's resolved configuration (JSON-serialisable; e.g. a CLI's ``vars(args)``).
    fit: the loop's settings (``FIT_FIELDS`` of ``FitConfig``).
    data: data provenance, e.g. ``{"train": ..., "test": ...}`` records of ``mrl_jax.data.provenance``.
    safe: fields of ``config`` (and ``fit.<name>``, ``data``) that may differ on a resume; ``FIT_SAFE`` always may.

  Returns:
    The plan; carry it out with :func:`start_run` or :func:`record_resume`.

  Raises:
    RunExistsError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` was given.
    ResumeMismatchError: ``resume`` with settings that differ in fields outside ``safe``.
  """
  out = Path(out)
  if resume and overwrite:
    raise RunDirectoryError("resume and overwrite exclude each other: --resume continues the run in "
                            f"{out}, --overwrite deletes it")
  meta = {"format": FORMAT, "config": _jsonable(config or {}), "fit": _jsonable(fit), "data": _jsonable(data)}
  files = run_files(out)
  if not files:
    if resume:
      print(f"{out} holds no run to resume: starting a fresh run", file=sys.stderr)
    return RunPlan(out, resume=False, meta=meta)
  if overwrite:
    return RunPlan(out, resume=False, meta=meta, delete=files)
  if not resume:
    raise RunExistsError(f"{out} already holds a run ({_describe(files)}). Pass --resume (FitConfig.resume) to "
                         "continue it, or --overwrite (FitConfig.overwrite) to delete it and start afresh; or choose "
                         "another --out. Nothing was changed.")
  old = _read_old_meta(out)
  if old is None:
    print(f"{out} has no recorded configuration ({META} or a start line in {METRICS}): resuming without comparing "
          "settings", file=sys.stderr)
    return RunPlan(out, resume=True, meta=meta)
  # Data are compared only when both sides recorded them (a caller that passes no provenance makes no claim), the
  # loop's settings only when the old run recorded them (runs from before meta.json).
  old_flat, new_flat = _flat(old), _flat(meta)
  if "data" not in old_flat or "data" not in new_flat:
    old_flat.pop("data", None)
    new_flat.pop("data", None)
  if not old.get("fit"):
    new_flat = {k: v for k, v in new_flat.items() if not k.startswith("fit.")}
  diff = differences(old_flat, new_flat)
  allowed = set(safe) | set(FIT_SAFE)
  refused = {k: v for k, v in diff.items() if k not in allowed}
  if refused:
    lines = "\n".join(f"  {k}: {_show(o)} → {_show(n)}{'' if k in refused else '  (may change)'}"
                      for k, (o, n) in diff.items())
    may = ", ".join(sorted(allowed))
    raise ResumeMismatchError(
        f"cannot resume {out}: its configuration differs in {', '.join(refused)} (old → new):\n{lines}\n"
        f"Only these fields may change on a resume: {may}. Resume with the run's settings, or start a new run "
        "(another --out, or --overwrite to delete this one). Nothing was changed.")
  changed = {k: {"old": o, "new": n} for k, (o, n) in diff.items()}
  return RunPlan(out, resume=True, meta={**old, **meta, "created": old.get("created")}, changed=changed)


def _write_meta(out: Path, meta: dict) -> None:
  tmp = out / (META + ".tmp")
  tmp.write_text(json.dumps(meta, indent=1) + "\n")
  tmp.replace(out / META)  # atomic: a crash leaves the old file or the new one


def start_run(plan: RunPlan) -> None:
  """Starts a fresh run: deletes an overwritten run's files, writes ``meta.json`` and the metrics start line."""
  for path in plan.delete:
    if path.is_dir():
      shutil.rmtree(path)
    else:
      path.unlink(missing_ok=True)
  if plan.delete:
    print(f"deleted the previous run in {plan.out} ({_describe(plan.delete)}): --overwrite", file=sys.stderr)
  plan.out.mkdir(parents=True, exist_ok=True)
  meta = {**plan.meta, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  _write_meta(plan.out, meta)
  (plan.out / METRICS).write_text(json.dumps({"event": "start", **plan.meta["config"]}) + "\n")


def record_resume(plan: RunPlan, checkpoint: Path | None, epoch: int, position: int) -> None:
  """Records an accepted resume: a ``resume`` event in ``metrics.jsonl``, the new settings in ``meta.json``."""
  event = {"event": "resume", "changed": plan.changed, "checkpoint": None if checkpoint is None else checkpoint.name,
           "epoch": epoch, "position": position}
  with open(plan.out / METRICS, "a") as f:
    f.write(json.dumps(event) + "\n")
  # meta.json follows the accepted settings, so a later resume compares against what ran last; metrics.jsonl keeps
  # the start line and every change.
  _write_meta(plan.out, plan.meta)
