"""LeNet-5 training-step speed at batch 8: FP, TT-v1 and MRL (4 states), beside AIHWKit 1.1.0.

    python benchmarks/bench_lenet_step.py [--steps 30] [--aihwkit-python PATH]

Median milliseconds per jitted training step (forward, analog-aware backward, optimizer with pulsed
updates and transfers) after warm-up. AIHWKit runs ``benchmarks/aihwkit_lenet_timing.py`` in its side venv
(``$MRL_AIHWKIT_PYTHON``) when present.
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
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrl_jax import optim  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.nn import analog_partition  # noqa: E402
from mrl_jax.training.loop import init_state, make_train_step  # noqa: E402

BATCH = 8


def optimizer(setting: str, params, engine: str):
  lr = 0.05
  if setting == "FP":
    analog = optax.chain(optim.densify(), optax.sgd(lr))
  elif setting == "TT-v1":
    analog = optim.transfer_compound(optim.ttv1(4).replace(engine=engine), lr, key=0)
  else:
    analog = optim.transfer_compound(optim.resl_mnist(4).replace(engine=engine), lr, key=0)
  return analog_partition(analog, optax.sgd(lr), params)


def time_steps(setting: str, steps: int, engine: str = "auto") -> float:
  model = LeNet5(rngs=nnx.Rngs(0))
  tx = optimizer(setting, nnx.state(model, nnx.Param), engine)
  graphdef, state = init_state(model, tx)
  step = make_train_step(graphdef, tx)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((BATCH, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32)
  nan = jnp.float32(jnp.nan)
  for _ in range(3):
    state, loss, _ = step(state, x, y, nan)
  jax.block_until_ready(loss)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, loss, _ = step(state, x, y, nan)
    jax.block_until_ready(loss)
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=30)
  ap.add_argument("--aihwkit-python", default=os.environ.get("MRL_AIHWKIT_PYTHON", "/work/venvs/aihwkit/bin/python"))
  args = ap.parse_args()
  ref = None
  script = Path(__file__).with_name("aihwkit_lenet_timing.py")
  if args.aihwkit_python and Path(args.aihwkit_python).exists() and script.exists():
    out = subprocess.run([args.aihwkit_python, str(script), "--steps", "10"], capture_output=True, text=True)
    if out.returncode == 0:
      ref = json.loads(out.stdout.strip().splitlines()[-1])
  fp = time_steps("FP", args.steps)
  print(f"jax {jax.__version__}, {os.cpu_count()} CPUs; LeNet-5, batch {BATCH}, 4-state SoftBounds, median ms/step\n")
  print("| setting | mrl_jax (native) | mrl_jax (jnp) | AIHWKit 1.1.0 | AIHWKit / mrl_jax | mrl_jax / FP-JAX |")
  print("|---|---|---|---|---|---|")
  for setting in ("FP", "TT-v1", "MRL"):
    native = fp if setting == "FP" else time_steps(setting, args.steps, "native")
    ref_jnp = float("nan") if setting == "FP" else time_steps(setting, max(3, args.steps // 5), "jnp")
    a = ref.get(setting, float("nan")) if ref else float("nan")
    print(f"| {setting} | {native:.1f} | {ref_jnp:.1f} | {a:.1f} | {a / native:.1f}x | {native / fp:.1f}x |")
  if ref is None:
    print("\nAIHWKit timings unavailable (side venv or benchmarks/aihwkit_lenet_timing.py missing).")


if __name__ == "__main__":
  main()
