"""Atomic, exact checkpoints of a whole training state (model, optimizer with its device state and
warm-start/plateau state, counters, data position) with orbax.

Typed PRNG keys are stored as their raw ``uint32`` data and re-wrapped on restore, so a resumed run
draws exactly the same random numbers. Restoring needs a template state of the same structure (build
the model and optimizer as for a fresh run); shapes and dtypes are checked leaf by leaf.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_META = "meta.json"


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_arrays(tree):
  leaves, _ = jax.tree.flatten(tree)
  return [np.asarray(jax.random.key_data(x)) if _is_key(x) else np.asarray(x) for x in leaves]


def save_checkpoint(directory: str | Path, step: int, state: Any, meta: dict | None = None, keep: int = 2) -> Path:
  """Writes ``directory/ckpt_<step>`` atomically (orbax writes to a temporary name and renames).

  Args:
    directory: run directory (created if needed).
    step: checkpoint index (e.g. the number of finished epochs).
    state: any PyTree of arrays (typed keys allowed).
    meta: JSON-serialisable metadata stored beside the arrays.
    keep: how many newest checkpoints to keep.
  """
  directory = Path(directory).resolve()
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"ckpt_{step:06d}"
  if path.exists():
    shutil.rmtree(path)
  arrays = {f"{i:05d}": a for i, a in enumerate(_to_arrays(state))}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path / "state", arrays)
    ckptr.wait_until_finished()
  tmp = path / (_META + ".tmp")
  tmp.write_text(json.dumps({"step": step, **(meta or {})}))
  tmp.replace(path / _META)  # the meta file marks a complete checkpoint
  for old in sorted(p for p in directory.glob("ckpt_*") if p != path)[:-max(keep - 1, 0) or None]:
    shutil.rmtree(old, ignore_errors=True)
  return path


def latest_checkpoint(directory: str | Path) -> Path | None:
  """The newest complete checkpoint in ``directory`` (one with its meta file), or None."""
  directory = Path(directory)
  done = sorted(p for p in directory.glob("ckpt_*") if (p / _META).exists() and (p / "state").exists())
  return done[-1] if done else None


def load_checkpoint(path: str | Path, template: Any) -> tuple[Any, dict]:
  """Restores ``(state, meta)`` from ``path`` into the structure of ``template``."""
  path = Path(path).resolve()
  leaves, treedef = jax.tree.flatten(template)
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(path / "state")
  if len(restored) != len(leaves):
    raise ValueError(f"checkpoint {path} has {len(restored)} arrays, the template has {len(leaves)}: "
                     "the model or optimizer configuration differs from the checkpointed run")
  out = []
  for i, ref in enumerate(leaves):
    arr = np.asarray(restored[f"{i:05d}"])
    if _is_key(ref):
      want = jax.random.key_data(ref)
      if arr.shape != want.shape:
        raise ValueError(f"checkpoint leaf {i}: key data shape {arr.shape} != {want.shape}")
      out.append(jax.random.wrap_key_data(jnp.asarray(arr, want.dtype), impl=jax.random.key_impl(ref)))
      continue
    ref_arr = np.asarray(ref)
    if arr.shape != ref_arr.shape or arr.dtype != ref_arr.dtype:
      raise ValueError(f"checkpoint leaf {i}: {arr.dtype}{arr.shape} does not match the template "
                       f"{ref_arr.dtype}{ref_arr.shape}")
    out.append(jnp.asarray(arr))
  meta = json.loads((path / _META).read_text())
  return jax.tree.unflatten(treedef, out), meta
