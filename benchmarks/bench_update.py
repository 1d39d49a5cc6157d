"""Pulsed-update speed: native FFI op vs pure-jnp reference vs AIHWKit 1.1.0, measured in one run.

Workload (as ``benchmarks/aihwkit_update_timing.py``): a 512×512 tile, batch 64, default
``UpdateParameters`` (BL ≤ 31, UM + UBLM), lr 0.1, x ~ U(−1, 1), d ~ U(−1, 1) rescaled to max|d| = 1 per
row, so with the default dw_min = 0.001 every row uses BL = 31. Devices: ``ConstantStepDevice()`` and
``SoftBoundsDevice()`` defaults (30 % device-to-device spread, 30 % cycle-to-cycle noise), and
ConstantStep with ``aggregate_pulses=True`` (AIHWKit's CUDA form: one summed step per row and
crosspoint), whose AIHWKit column is still AIHWKit's CPU update (the CPU has no summed form).

    python benchmarks/bench_update.py [--repeats 10] [--aihwkit-python PATH]

AIHWKit runs in its side venv (``$MRL_AIHWKIT_PYTHON`` or ``--aihwkit-python``; skipped when absent).
Prints a Markdown table of median milliseconds per update and ratios.
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

import jax
import jax.numpy as jnp
import numpy as np

import mrl_jax as M
from mrl_jax.update import pulsed_update

SIZE, BATCH, LR, SEEDS = 512, 64, 0.1, 8


def _inputs():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (BATCH, SIZE)).astype(np.float32)
  d = rng.uniform(-1, 1, (BATCH, SIZE)).astype(np.float32)
  d /= np.abs(d).max(axis=1, keepdims=True)
  return jnp.asarray(x), jnp.asarray(d)


def _median_ms(fn, args, repeats):
  out = fn(*args)
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def bench_device(device, up, repeats):
  x, d = _inputs()
  params = device.init(jax.random.key(0), (SIZE, SIZE))
  w = jnp.zeros((SIZE, SIZE), jnp.float32)
  res = {}
  for engine in ("native", "jnp"):
    fn = jax.jit(lambda w, k, e=engine: pulsed_update(w, params, x, d, LR, k, device, up, engine=e))
    res[engine] = _median_ms(fn, (w, jax.random.key(1)), repeats if engine == "native" else max(2, repeats // 4))
  # 8 device seeds (device parameters and keys differ), one program.
  seeds = jax.random.split(jax.random.key(2), SEEDS)
  ws = jnp.zeros((SEEDS, SIZE, SIZE), jnp.float32)
  ps = jax.vmap(lambda k: device.init(k, (SIZE, SIZE)))(seeds)
  fn = jax.jit(jax.vmap(lambda w, p, k: pulsed_update(w, p, x, d, LR, k, device, up, engine="native")))
  res["native_vmap8"] = _median_ms(fn, (ws, ps, seeds), max(2, repeats // 2))
  # In place: the weights are donated, as in a training step.
  fn = jax.jit(lambda w, k: pulsed_update(w, params, x, d, LR, k, device, up, engine="native"), donate_argnums=0)
  w_don = jnp.zeros((SIZE, SIZE), jnp.float32)
  times = []
  for i in range(repeats + 1):
    t0 = time.perf_counter()
    w_don = fn(w_don, jax.random.key(i))
    w_don.block_until_ready()
    times.append((time.perf_counter() - t0) * 1e3)
  res["native_donated"] = statistics.median(times[1:])
  return res


def aihwkit_times(python: str | None, repeats: int):
  if not python or not Path(python).exists():
    return None
  script = Path(__file__).with_name("aihwkit_update_timing.py")
  out = subprocess.run([python, str(script), "--repeats", str(repeats)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--aihwkit-python", default=os.environ.get("MRL_AIHWKIT_PYTHON", "/work/venvs/aihwkit/bin/python"))
  ap.add_argument("--aihwkit-repeats", type=int, default=3)
  args = ap.parse_args()
  ref = aihwkit_times(args.aihwkit_python, args.aihwkit_repeats)
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs; "
        f"{SIZE}x{SIZE}, batch {BATCH}, BL 31, median ms per update\n")
  print("| device | native | native, donated | pure jnp | 8 seeds vmapped (per seed) | AIHWKit 1.1.0 "
        "| jnp / native | AIHWKit / native |")
  print("|---|---|---|---|---|---|---|---|")
  plain, summed = M.UpdateParameters(), M.UpdateParameters(aggregate_pulses=True)
  for name, device, up, key in (("ConstantStep", M.ConstantStepDevice(), plain, "constant_step_ms"),
                                ("SoftBounds", M.SoftBoundsDevice(), plain, "soft_bounds_ms"),
                                ("ConstantStep, summed pulses", M.ConstantStepDevice(), summed, "constant_step_ms")):
    r = bench_device(device, up, args.repeats)
    a = ref[key] if ref else float("nan")
    print(f"| {name} | {r['native']:.1f} | {r['native_donated']:.1f} | {r['jnp']:.1f} | {r['native_vmap8']:.1f} "
          f"({r['native_vmap8'] / SEEDS:.1f}) | {a:.0f} | {r['jnp'] / r['native']:.1f}x | "
          f"{a / r['native']:.0f}x |")
  if ref is None:
    print("\nAIHWKit side venv not found: pass --aihwkit-python or set MRL_AIHWKIT_PYTHON.")


if __name__ == "__main__":
  sys.exit(main())
