"""The AIHWKit-vs-mrl_jax parity table of ``docs/results.md`` from the two sides' records.

    python scripts/parity_table.py docs/study_runs/aihwkit_parity.jsonl docs/study_runs/fair_s4 docs/study_runs/fair_s10

The first argument is ``benchmarks/aihwkit_parity_lenet.py``'s JSONL (AIHWKit 1.1.0, one line per seed); the others
are ``examples/sweep.py`` folders whose points hold the same fair settings (MRL with warm start ``none``). Prints one
markdown row per setting and state count: the epoch-1 test accuracy and training loss of each side as mean ± sample
std over its seeds (n), the seconds per seed, and the difference of the means in units of its standard error.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

# AIHWKit script name → sweep point name prefix and the sweep's warm-start field.
SWEEP_NAMES = {"FP": ("FP", None), "SGD": ("SGD", None), "TT-v1": ("TTv1", None), "TT-v2": ("TTv2", None),
               "MRL": ("MRL", "none")}


def mean_std(values) -> tuple[float, float, int]:
  v = np.asarray(values, dtype=float)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def aihwkit_rows(path: Path) -> dict:
  """``{(setting, n_states): {"acc": [...], "loss": [...], "seconds": [...]}}`` of epoch 1."""
  out = {}
  for line in path.read_text().splitlines():
    r = json.loads(line)
    first = r["records"][0]
    cell = out.setdefault((r["setting"], r["n_states"]), {"acc": [], "loss": [], "seconds": []})
    cell["acc"].append(first["test_acc"])
    cell["loss"].append(first["train_loss"])
    cell["seconds"].append(first["seconds"])
  return out


def sweep_rows(folders: list[Path]) -> dict:
  """The same cells from the sweep points' epoch-1 records (a vmapped program's seconds shared by its seeds)."""
  out = {}
  for folder in folders:
    for path in folder.glob("*.jsonl"):
      lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
      epochs = [r for r in lines[1:] if r.get("event") == "epoch"]
      if not lines or not epochs or lines[0].get("preset", "fair") != "fair":
        continue
      head = lines[0]
      for name, (setting, warm) in SWEEP_NAMES.items():
        # Records written before the setting was renamed call MRL by the reference's name, ResL.
        if head["setting"].replace("ResL", "MRL") == setting and head.get("warm_start") == warm:
          first = epochs[0]
          seeds = len(first["test_acc"])
          out[(name, head["n_states"])] = {"acc": first["test_acc"], "loss": first["train_loss"],
                                           "seconds": [first["seconds"] / seeds] * seeds}
  return out


def z_score(a, b) -> str:
  (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
  se = math.sqrt(sa**2 / na + sb**2 / nb)
  return "–" if se == 0 else f"{(mb - ma) / se:+.1f}"


def table(aihwkit: dict, ours: dict) -> str:
  fmt = lambda v: "{:.4f} ± {:.4f} ({})".format(*mean_std(v))
  lines = ["| setting | states | AIHWKit 1.1.0 test acc (n) | mrl_jax test acc (n) | Δ/SE | AIHWKit train loss "
           "| mrl_jax train loss | Δ/SE | AIHWKit s/seed | mrl_jax s/seed |", "|" + "---|" * 10]
  for key in sorted(aihwkit, key=lambda k: (list(SWEEP_NAMES).index(k[0]), k[1] or 0)):
    a, b = aihwkit[key], ours.get(key)
    states = "–" if key[1] is None else f"{key[1]:g}"
    if b is None:
      lines.append(f"| {key[0]} | {states} | {fmt(a['acc'])} | not run | | {fmt(a['loss'])} | | | "
                   f"{np.mean(a['seconds']):.0f} | |")
      continue
    lines.append(f"| {key[0]} | {states} | {fmt(a['acc'])} | {fmt(b['acc'])} | {z_score(a['acc'], b['acc'])} "
                 f"| {fmt(a['loss'])} | {fmt(b['loss'])} | {z_score(a['loss'], b['loss'])} "
                 f"| {np.mean(a['seconds']):.0f} | {np.mean(b['seconds']):.0f} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) < 2:
    raise SystemExit(__doc__)
  print(table(aihwkit_rows(Path(argv[0])), sweep_rows([Path(a) for a in argv[1:]])))


if __name__ == "__main__":
  main(sys.argv[1:])
