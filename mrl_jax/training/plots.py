"""Plots of a run directory: loss/accuracy curves with the warm-start switch epochs marked, and
per-tile conductance histograms of an MRL checkpoint.

    python -m mrl_jax.training.plots RUN_DIR            # writes RUN_DIR/curves.png (+ tiles.png)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mrl_jax.tiles import analog_tiles


def read_metrics(run_dir: str | Path) -> list[dict]:
  """The per-epoch records of ``run_dir/metrics.jsonl``."""
  lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r.get("event") == "epoch"]


def switch_epochs(records: list[dict]) -> list[int]:
  """Epochs after which the warm-start target moved (from the logged ``warm_start_target``)."""
  out, prev = [], None
  for r in records:
    t = r.get("warm_start_target")
    if prev is not None and t is not None and t != prev:
      out.append(r["epoch"])
    prev = t
  return out


def plot_curves(run_dir: str | Path, path: str | Path | None = None) -> Path:
  """Writes the loss and accuracy per epoch of ``run_dir/metrics.jsonl`` (warm-start switches dashed) to ``path``
  (default ``run_dir/curves.png``) and returns it."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = read_metrics(run_dir)
  if not records:
    raise ValueError(f"{run_dir}/metrics.jsonl has no epoch records yet")
  epochs = [r["epoch"] for r in records]
  fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
  point = dict(marker="o", markersize=4)  # a run of one epoch is one point per curve, which a bare line hides
  ax_l.plot(epochs, [r["train_loss"] for r in records], label="train", **point)
  ax_l.plot(epochs, [r["test_loss"] for r in records], label="test", **point)
  ax_a.plot(epochs, [r["train_acc"] for r in records], label="train", **point)
  ax_a.plot(epochs, [r["test_acc"] for r in records], label="test", **point)
  for e in switch_epochs(records):
    for ax in (ax_l, ax_a):
      ax.axvline(e, color="gray", linestyle="--", linewidth=0.8)
  ax_l.set(xlabel="epoch", ylabel="loss", title="loss (dashed: warm-start switches)")
  ax_a.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
  for ax in (ax_l, ax_a):
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  path = Path(path or Path(run_dir) / "curves.png")
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_tile_histograms(tiles: dict[str, np.ndarray], path: str | Path) -> Path:
  """Histograms of the conductances of each tile: ``tiles = {layer: float32[K, out, in]}``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n_layers = len(tiles)
  n_tiles = max(t.shape[0] for t in tiles.values())
  fig, axes = plt.subplots(n_layers, n_tiles, figsize=(2.2 * n_tiles, 1.8 * n_layers), squeeze=False)
  for row, (name, stack) in enumerate(tiles.items()):
    for k in range(n_tiles):
      ax = axes[row][k]
      if k < stack.shape[0]:
        ax.hist(np.ravel(stack[k]), bins=40, color="tab:blue")
      ax.set_yticks([])
      if row == 0:
        ax.set_title(f"tile {k} (paper n={stack.shape[0] - 1 - k})", fontsize=8)
      if k == 0:
        ax.set_ylabel(name, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return Path(path)


def tiles_from_opt_state(opt_state) -> dict[str, np.ndarray]:
  """``{weight path: [K, out, in]}`` of every analog weight with several tiles (transfer and chopped compounds) in
  an optimizer state, keyed ``"conv1/weight"``; tile 0 first."""
  stacks: dict[str, list] = {}
  for tile in analog_tiles(opt_state):
    stacks.setdefault("/".join(map(str, tile.path)), []).append(np.asarray(tile.weights))
  return {path: np.stack(tiles) for path, tiles in stacks.items() if len(tiles) > 1}


def main(argv=None):
  p = argparse.ArgumentParser(description="Plot a run directory.")
  p.add_argument("run_dir")
  args = p.parse_args(argv)
  print(plot_curves(args.run_dir))


if __name__ == "__main__":
  main()
