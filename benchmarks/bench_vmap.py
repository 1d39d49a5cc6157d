"""Cost of training several device seeds in one vmapped program: LeNet-5 MRL step (4 states, batch 8).

    python benchmarks/bench_vmap.py [--seeds 1 4 16] [--steps 50] [--setting MRL|SGD]

Prints the mean ms per vmapped step (over ``--steps`` consecutive steps, so that every transfer period up to
T_2 = 50 is included in proportion) and per seed. Goal: per-seed cost not above a single run on CPU; on an
H200, 16 seeds within 3× one seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrl_jax import optim  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.nn import analog_partition  # noqa: E402
from mrl_jax.training.loop import TrainState, train_step_fn  # noqa: E402


def bench(n_seeds: int, steps: int, setting: str) -> float:
  make_model = lambda key: LeNet5(rngs=nnx.Rngs(params=key))
  template = nnx.state(make_model(jax.random.key(0)), nnx.Param)

  def make_tx(key):
    if setting == "SGD":
      analog = optim.analog_sgd(optim.mrl_mnist(4).device, 0.05, key=key)
    else:
      analog = optim.transfer_compound(optim.mrl_mnist(4), 0.05, key=key)
    return analog_partition(analog, optax.sgd(0.05), template)

  step = train_step_fn(nnx.graphdef(make_model(jax.random.key(0))), make_tx(jax.random.key(0)))

  def init(key):
    model = make_model(key)
    return TrainState(nnx.state(model), make_tx(key).init(nnx.state(model, nnx.Param)))

  if n_seeds == 0:  # the single, unvmapped run every vmapped seed is compared with
    state = jax.jit(init)(jax.random.key(0))
    fn = jax.jit(step, donate_argnums=0)
    signal = jnp.float32(jnp.nan)
  else:
    state = jax.jit(jax.vmap(init))(jax.random.split(jax.random.key(0), n_seeds))
    fn = jax.jit(jax.vmap(step, in_axes=(0, None, None, 0, None)), donate_argnums=0)
    signal = jnp.full((n_seeds,), jnp.nan)
  x = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
  y = jnp.arange(8) % 10
  count = 0
  for _ in range(2):
    state, loss, _ = fn(state, x, y, signal, jnp.int32(count))
    count += 1
  jax.block_until_ready(loss)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, loss, _ = fn(state, x, y, signal, jnp.int32(count))
    count += 1
  jax.block_until_ready(loss)
  return (time.perf_counter() - t0) * 1e3 / steps


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
  ap.add_argument("--steps", type=int, default=50)
  ap.add_argument("--setting", default="MRL", choices=("MRL", "SGD"))
  args = ap.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}; LeNet-5 {args.setting} step, batch 8\n")
  print("| seeds | ms per step | ms per seed | per seed vs single run |")
  print("|---|---|---|---|")
  single = bench(0, args.steps, args.setting)
  print(f"| single run (no vmap) | {single:.1f} | {single:.1f} | 1.00 |", flush=True)
  for n in args.seeds:
    ms = bench(n, args.steps, args.setting)
    print(f"| {n} | {ms:.1f} | {ms / n:.1f} | {ms / n / single:.2f} |", flush=True)


if __name__ == "__main__":
  main()
