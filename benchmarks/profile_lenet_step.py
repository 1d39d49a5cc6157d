"""Where the time of a LeNet-5 training step goes (batch 8, 4-state SoftBounds, native engine, CPU).

    python benchmarks/profile_lenet_step.py [--steps 40] [--settings MRL TT-v1]

Each part is timed as its own jitted program on the shapes and values of a real step (median over
``--steps`` runs after warm-up), so the parts add up only approximately to the whole step:

* forward, forward + backward: the model's MVMs, im2col patches, activations and the loss (what the FP step
  does without its SGD update); im2col alone for the two convolutions;
* the pulsed update of each analog layer, split by the kernel's own phase timers into pulse-train lines (update
  management and the random bits of every x and d line) and pulses (coincidence counts, per-pulse noise,
  device math);
* the whole optimizer update (all pulsed updates, transfers and warm-start bookkeeping), and the same with zero
  gradients (no pulses: transfers and bookkeeping);
* dispatch: a jitted program that only passes the donated training state through.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrl_jax import _native, data, optim, pulses  # noqa: E402
from mrl_jax.models import LeNet5  # noqa: E402
from mrl_jax.nn import analog_partition, value_and_analog_grad  # noqa: E402
from mrl_jax.optim.base import is_analog_gradient  # noqa: E402
from mrl_jax.training.loop import init_state, make_train_step, nll_loss  # noqa: E402
from mrl_jax.update import pulsed_update  # noqa: E402

BATCH = 8


def median_ms(fn, steps: int, warmup: int = 3) -> float:
  """Median wall milliseconds of ``fn()`` (which must block on its result)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def analog_config(setting: str):
  return optim.ttv1(4) if setting == "TT-v1" else optim.mrl_mnist(4)


def make_tx(setting: str, params):
  if setting == "FP":
    analog = optax.chain(optim.densify(), optax.sgd(0.05))
  else:
    analog = optim.transfer_compound(analog_config(setting), 0.05, key=0)
  return analog_partition(analog, optax.sgd(0.05), params)


def count_pulses(cfg, g, lr: float, key) -> int:
  """Device pulses of one pulsed update of the fast tile with these rows (the jnp reference's counts)."""
  kw = jax.random.key_data(key)
  counts = jax.jit(jax.vmap(lambda r, x, d: pulses.row_counts(cfg.update, kw, r, x, d, jnp.float32(lr),
                                                              cfg.gradient_granularity)[0].sum()))
  return int(counts(jnp.arange(g.x.shape[0], dtype=jnp.uint32), g.x, g.d).sum())


def profile(setting: str, steps: int) -> list[tuple[str, float, str]]:
  """``[(part, ms, note)]`` for one setting."""
  images, labels = data.embedded_mnist("train")
  x, y = data.to_float(images[:BATCH]), jnp.asarray(labels[:BATCH])
  nan = jnp.float32(jnp.nan)
  model = LeNet5(rngs=nnx.Rngs(0))
  tx = make_tx(setting, nnx.state(model, nnx.Param))
  graphdef, state = init_state(model, tx)
  step = make_train_step(graphdef, tx)
  holder = [state]

  def run_step():
    holder[0], loss, _ = step(holder[0], x, y, nan)
    jax.block_until_ready(loss)

  rows = [("whole training step, 1 per call", median_ms(run_step, steps), "jit, donated state")]
  try:
    from mrl_jax.training.loop import make_multi_step
  except ImportError:  # a tree from before steps per dispatch
    make_multi_step = None
  if make_multi_step is not None:
    multi = make_multi_step(graphdef, tx)
    k = 8
    xs, ys = jnp.stack([x] * k), jnp.stack([y] * k)
    nans = jnp.full((k,), jnp.nan, jnp.float32)

    def run_multi():
      holder[0], loss, _ = multi(holder[0], xs, ys, nans)
      jax.block_until_ready(loss)

    rows.append((f"whole training step, {k} per call", median_ms(run_multi, max(steps // k, 5)) / k,
                 "lax.scan in one jitted call (fit's steps_per_dispatch)"))
  model = nnx.merge(graphdef, holder[0].model)

  forward = jax.jit(lambda m, x, y: nll_loss(m, x, y)[0])
  rows.append(("forward (MVMs, im2col, loss)", median_ms(lambda: forward(model, x, y).block_until_ready(), steps), ""))
  grad_fn = jax.jit(lambda m, x, y: value_and_analog_grad(nll_loss, has_aux=True)(m, x, y))
  (_, _), grads = grad_fn(model, x, y)
  rows.append(("forward + backward", median_ms(lambda: jax.block_until_ready(grad_fn(model, x, y)), steps),
               "analog-aware gradient (rows x, output gradients d)"))
  h1 = jnp.tanh(model.conv1(x))
  pooled = nnx.max_pool(h1, (2, 2), (2, 2))
  for name, layer, inp in (("conv1", model.conv1, x), ("conv2", model.conv2, pooled)):
    patches = jax.jit(layer.patches)
    rows.append((f"  im2col {name}", median_ms(lambda: patches(inp).block_until_ready(), steps),
                 f"{tuple(patches(inp).shape)}"))

  if setting != "FP":
    cfg = analog_config(setting)
    device = cfg.device_of(0)
    analog = {jax.tree_util.keystr(p): g for p, g in
              jax.tree_util.tree_flatten_with_path(grads, is_leaf=is_analog_gradient)[0] if is_analog_gradient(g)}
    total = 0.0
    lr = (cfg.fast_lr * (0.05 if cfg.scale_fast_lr else 1.0)) if cfg.fast_lr is not None else 0.05  # the gradient write's rate
    for path, g in analog.items():
      w_shape = (g.d.shape[1], g.x.shape[1])
      params = device.init(jax.random.key(1), w_shape)
      w0 = jnp.zeros(w_shape, jnp.float32)
      upd = jax.jit(lambda w, k, g=g, params=params: pulsed_update(w, params, g.x, g.d, jnp.float32(lr), k, device,
                                                                   cfg.update, engine="native",
                                                                   dw=cfg.gradient_granularity))
      keys = iter(jax.random.split(jax.random.key(2), 10 * steps + 10))
      ms = median_ms(lambda: upd(w0, next(keys)).block_until_ready(), steps)
      name = path.split("'")[1] if "'" in path else path
      note = f"{count_pulses(cfg, g, lr, key=jax.random.key(3)):,} device pulses"
      if hasattr(_native._mrl_cpu, "phase_times"):  # the kernel's phase timers (absent before they were added)
        _native._mrl_cpu.phase_times()
        for _ in range(steps):
          upd(w0, next(keys)).block_until_ready()
        calls, lines_s, pulses_s = _native._mrl_cpu.phase_times()
        note += f"; pulse lines {1e3 * lines_s / calls:.2f} ms, pulses {1e3 * pulses_s / calls:.2f} ms"
      rows.append((f"  pulsed update {name} [{w_shape[0]}x{w_shape[1]}], {g.x.shape[0]} rows", ms, note))
      total += ms
    rows.append(("pulsed updates, all layers", total, "sum of the rows above"))
    opt_update = jax.jit(lambda g, s, p, c: tx.update(g, s, p, count=c)[1], donate_argnums=1)
    params = nnx.state(model, nnx.Param)
    counter = iter(range(10 ** 6))
    opt_holder = [jax.tree.map(jnp.copy, holder[0].opt)]

    def run_opt():
      opt_holder[0] = opt_update(grads, opt_holder[0], params, jnp.int32(next(counter)))
      jax.block_until_ready(opt_holder[0])

    full = median_ms(run_opt, steps)
    rows.append(("optimizer update", full, "pulsed updates + transfers + schedule (donated state, median over "
                                           "transfer periods)"))
    zero = jax.tree.map(lambda g: type(g)(g.x * 0, g.d * 0) if is_analog_gradient(g) else g * 0, grads,
                        is_leaf=is_analog_gradient)

    def run_zero():
      opt_holder[0] = opt_update(zero, opt_holder[0], params, jnp.int32(next(counter)))
      jax.block_until_ready(opt_holder[0])

    rows.append(("  optimizer update with zero gradients", median_ms(run_zero, steps),
                 "no pulses: transfers, schedule, key splits, skipped kernel calls, its dispatch"))

  passthrough = jax.jit(lambda s: s, donate_argnums=0)

  def run_pass():
    holder[0] = passthrough(holder[0])
    jax.block_until_ready(holder[0])

  rows.append(("dispatch (state pass-through)", median_ms(run_pass, steps), "jit call with the donated state"))
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=40)
  ap.add_argument("--settings", nargs="+", default=["MRL", "TT-v1", "FP"], choices=("MRL", "TT-v1", "FP"))
  args = ap.parse_args()
  variant = _native.cpu_variant() if hasattr(_native, "cpu_variant") else "best available"
  print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, native variant {variant}; LeNet-5 batch {BATCH}, "
        f"median ms over {args.steps} runs\n")
  for setting in args.settings:
    print(f"### {setting}\n\n| part | ms | note |\n|---|---|---|")
    for part, ms, note in profile(setting, args.steps):
      print(f"| {part} | {ms:.2f} | {note} |")
    print()


if __name__ == "__main__":
  main()
