"""Cost of transfer periods counted in rows (``units_in_mbatch=False``): mrl_jax native and jnp vs AIHWKit 1.1.0.

Workload: one TT-v1 update call (``TransferCompound`` of two ``SoftBoundsDevice(±1, dw_min 0.5)``, fast_lr 0.1,
perfect transfer reads, default ``UpdateParameters``) on the tiles of LeNet-5 at batch 8:

* ``conv1``: a 16×25 tile, 4,608 rows per update (8 images × 24×24 patches);
* ``fc1``: a 128×512 tile, 8 rows per update.

Periods: one mini-batch (``units_in_mbatch=True``), the same in rows (every period a multiple of the rows per
update: one batched gradient write), and a period that fires inside the mini-batch (rows written one by one).

    python benchmarks/bench_row_periods.py [--repeats 5] [--aihwkit-python PATH]

AIHWKit runs in its side venv (``$MRL_AIHWKIT_PYTHON`` or ``--aihwkit-python``; skipped when absent), by this file
with ``--aihwkit-side``. Prints a Markdown table of median milliseconds per update call and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LR = 0.05
TILES = {"conv1": (16, 25, 4608), "fc1": (128, 512, 8)}  # out, in, rows per update
CASES = {  # name: (tile, units_in_mbatch, transfer_every)
    "conv1, 1 mini-batch": ("conv1", True, 1.0),
    "conv1, 4608 rows (= 1 mini-batch)": ("conv1", False, 4608.0),
    "conv1, 48 rows (96 per update)": ("conv1", False, 48.0),
    "fc1, 1 mini-batch": ("fc1", True, 1.0),
    "fc1, 3 rows (2–3 per update)": ("fc1", False, 3.0),
}


def _inputs(tile: str):
  import numpy as np
  out, inp, rows = TILES[tile]
  rng = np.random.default_rng(0)
  return rng.uniform(0, 1, (rows, inp)).astype(np.float32), rng.uniform(-0.1, 0.1, (rows, out)).astype(np.float32)


def _median_ms(call, repeats: int) -> float:
  call()  # compile / warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
  return 1000 * statistics.median(times)


def mrl_jax_ms(case: str, engine: str, repeats: int) -> float:
  import jax
  import jax.numpy as jnp
  import mrl_jax as M
  from mrl_jax import optim
  from mrl_jax.optim.base import AnalogGradient
  tile, in_mbatch, every = CASES[case]
  out, inp, _ = TILES[tile]
  cfg = optim.TransferCompound(M.SoftBoundsDevice(dw_min=0.5), transfer_every=every, units_in_mbatch=in_mbatch,
                               fast_lr=0.1, transfer_io=M.PERFECT_IO, engine=engine)
  tx = optim.transfer_compound(cfg, LR, key=0)
  params = {"w": jnp.zeros((out, inp), jnp.float32)}
  x, d = (jnp.asarray(a) for a in _inputs(tile))
  step = jax.jit(lambda s: tx.update({"w": AnalogGradient(x, d)}, s, params)[1])
  state = [tx.init(params)]

  def call():
    state[0] = step(state[0])
    jax.block_until_ready(state[0])

  return _median_ms(call, repeats)


def aihwkit_side(repeats: int) -> None:
  """Runs in the AIHWKit venv: one JSON line ``{case: ms}``."""
  import torch
  from aihwkit.simulator.configs import UnitCellRPUConfig
  from aihwkit.simulator.configs.devices import SoftBoundsDevice, TransferCompound
  from aihwkit.simulator.parameters import IOParameters
  from aihwkit.simulator.tiles import AnalogTile
  torch.set_num_threads(1)
  result = {}
  for case, (tile_name, in_mbatch, every) in CASES.items():
    out, inp, _ = TILES[tile_name]
    compound = TransferCompound(unit_cell_devices=[SoftBoundsDevice(dw_min=0.5), SoftBoundsDevice(dw_min=0.5)],
                                transfer_every=every, units_in_mbatch=in_mbatch, fast_lr=0.1,
                                transfer_forward=IOParameters(is_perfect=True))
    tile = AnalogTile(out, inp, UnitCellRPUConfig(device=compound))
    tile.set_learning_rate(LR)
    x, d = (torch.from_numpy(a) for a in _inputs(tile_name))
    result[case] = _median_ms(lambda: tile.update(x, d), repeats)
  print(json.dumps(result))


def aihwkit_times(python: str, repeats: int):
  if not python or not Path(python).exists():
    return None
  done = subprocess.run([python, __file__, "--aihwkit-side", "--repeats", str(repeats)], capture_output=True,
                        text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--aihwkit-python", default=os.environ.get("MRL_AIHWKIT_PYTHON", "/work/venvs/aihwkit/bin/python"))
  ap.add_argument("--aihwkit-side", action="store_true", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.aihwkit_side:
    return aihwkit_side(args.repeats)
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  ref = aihwkit_times(args.aihwkit_python, args.repeats)
  print("| case | mrl_jax native ms | mrl_jax jnp ms | AIHWKit 1.1.0 ms (1 thread) | jnp / native | AIHWKit / native |")
  print("|---|---|---|---|---|---|")
  for case in CASES:
    native, jnp_ms = mrl_jax_ms(case, "native", args.repeats), mrl_jax_ms(case, "jnp", args.repeats)
    a = ref[case] if ref else None
    print(f"| {case} | {native:.2f} | {jnp_ms:.2f} | {'–' if a is None else f'{a:.2f}'} | {jnp_ms / native:.1f} | "
          f"{'–' if a is None else f'{a / native:.1f}'} |")


if __name__ == "__main__":
  main()
