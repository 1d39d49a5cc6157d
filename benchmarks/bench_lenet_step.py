"""LeNet-5 training-step speed at batch 8: FP, TT-v1 and MRL (4 states), beside AIHWKit 1.1.0.

    python benchmarks/bench_lenet_step.py [--steps 40] [--dispatch 8] [--aihwkit-python PATH]

Milliseconds per training step (forward, analog-aware backward, optimizer with pulsed updates and transfers) on
consecutive embedded-MNIST batches, after warm-up: median over ``--steps`` single jitted steps, and the same
steps ``--dispatch`` at a time in one ``lax.scan`` program (``training.loop.make_multi_step``, what ``fit`` runs).
The two are timed in alternating rounds so that load on a shared machine hits both alike. AIHWKit runs
``benchmarks/aihwkit_lenet_timing.py`` in its side venv (``$MRL_AIHWKIT_PYTHON``) when present. The last
column estimates one full-MNIST epoch (7,500 steps of batch 8) from the dispatched step time; the ratios use the
dispatched times too (the single-step times where a tree has no dispatch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrl_jax import data, optim  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.nn import analog_partition  # noqa: E402
from mrl_jax.training.loop import init_state, make_train_step  # noqa: E402

try:
  from mrl_jax.training.loop import make_multi_step  # noqa: E402
except ImportError:  # a tree from before steps per dispatch: that column is n/a
  make_multi_step = None

BATCH = 8
EPOCH_STEPS = 60000 // BATCH


def optimizer(setting: str, params, engine: str):
  lr = 0.05
  if setting == "FP":
    analog = optax.chain(optim.densify(), optax.sgd(lr))
  elif setting == "TT-v1":
    analog = optim.transfer_compound(optim.ttv1(4).replace(engine=engine), lr, key=0)
  else:
    analog = optim.transfer_compound(optim.mrl_mnist(4).replace(engine=engine), lr, key=0)
  return analog_partition(analog, optax.sgd(lr), params)


def time_steps(setting: str, steps: int, dispatch: int, engine: str = "auto") -> tuple[float, float]:
  """Median ms per step: one step per call, and ``dispatch`` steps per call."""
  model = LeNet5(rngs=nnx.Rngs(0))
  tx = optimizer(setting, nnx.state(model, nnx.Param), engine)
  graphdef, state = init_state(model, tx)
  step = make_train_step(graphdef, tx)
  multi = make_multi_step(graphdef, tx) if make_multi_step is not None else None
  images, labels = data.embedded_mnist("train")
  n = dispatch * steps
  xs = data.to_float(images[: n * BATCH]).reshape((steps, dispatch, BATCH) + images.shape[1:])
  ys = jnp.asarray(labels[: n * BATCH]).reshape(steps, dispatch, BATCH)
  nan = jnp.full((dispatch,), jnp.nan, jnp.float32)
  holder = [state]

  def single(i):
    for c in range(dispatch):
      holder[0], loss, _ = step(holder[0], xs[i, c], ys[i, c], nan[0])
      jax.block_until_ready(loss)

  def grouped(i):
    holder[0], loss, _ = multi(holder[0], xs[i], ys[i], nan)
    jax.block_until_ready(loss)

  fns = (single, grouped) if multi is not None else (single,)
  for fn in fns:
    fn(0)  # compile
  per_step = {single: [], grouped: [float("nan")]}
  for i in range(steps):
    for fn in fns:
      t0 = time.perf_counter()
      fn(i)
      per_step[fn].append((time.perf_counter() - t0) * 1e3 / dispatch)
  return statistics.median(per_step[single]), statistics.median(per_step[grouped])


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=40, help="rounds (each: --dispatch single steps and one dispatch)")
  ap.add_argument("--dispatch", type=int, default=8, help="steps per dispatch")
  ap.add_argument("--aihwkit-python", default=os.environ.get("MRL_AIHWKIT_PYTHON", "/work/venvs/aihwkit/bin/python"))
  args = ap.parse_args()
  ref = None
  script = Path(__file__).with_name("aihwkit_lenet_timing.py")
  if args.aihwkit_python and Path(args.aihwkit_python).exists() and script.exists():
    out = subprocess.run([args.aihwkit_python, str(script), "--steps", "10"], capture_output=True, text=True)
    if out.returncode == 0:
      ref = json.loads(out.stdout.strip().splitlines()[-1])
  fp_single, fp = time_steps("FP", args.steps, args.dispatch)
  print(f"jax {jax.__version__}, {os.cpu_count()} CPUs; LeNet-5, batch {BATCH}, 4-state SoftBounds, embedded MNIST, "
        f"median ms/step\n")
  print(f"| setting | mrl_jax, 1 step/call | mrl_jax, {args.dispatch} steps/call | mrl_jax jnp engine, 1 step/call | "
        f"AIHWKit 1.1.0 | AIHWKit / mrl_jax | mrl_jax / FP-JAX | full-MNIST epoch (s) |")
  print("|---|---|---|---|---|---|---|---|")
  for setting in ("FP", "TT-v1", "MRL"):
    single, grouped = (fp_single, fp) if setting == "FP" else time_steps(setting, args.steps, args.dispatch, "native")
    jnp_ms = float("nan") if setting == "FP" else time_steps(setting, max(3, args.steps // 8), 1, "jnp")[0]
    a = ref.get(setting, float("nan")) if ref else float("nan")
    best, fp_best = (single, fp_single) if math.isnan(grouped) else (grouped, fp)
    print(f"| {setting} | {single:.2f} | {grouped:.2f} | {jnp_ms:.1f} | {a:.1f} | {a / best:.1f}x | "
          f"{best / fp_best:.2f}x | {best * EPOCH_STEPS / 1e3:.0f} |")
  if ref is None:
    print("\nAIHWKit timings unavailable (side venv or benchmarks/aihwkit_lenet_timing.py missing).")


if __name__ == "__main__":
  main()
