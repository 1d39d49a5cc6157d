"""Training N device instances of one configuration in one jit + vmap program.

Each seed draws its own initial weights and its own device-to-device variation (the optimizer's
construction key); all seeds see the same data order. The seed axis is sharded over every device of the
program (``jax.sharding.NamedSharding`` on a ``("seeds", "batch")`` mesh, the step under ``jax.shard_map`` so
that each device runs the pulsed-update kernels of its own seeds only), so the same code runs on one CPU,
several GPUs, or several processes and hosts under ``jax.distributed`` unchanged; with one device it is a
plain ``vmap``. Devices beyond those the seeds fill split the batch (``training.loop.combine_batch_shards``:
every tile still sees every row of the batch).

Under ``jax.distributed`` (multi-controller JAX) every process runs this same code on the same host data;
the mesh spans the devices of all processes, and each process supplies, and reads back, only the shards on
its own devices: ``train_seeds`` returns the metrics of the seeds this process holds, tagged with their
indices.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mrl_jax.data.batching import epoch_order
from mrl_jax.optim.compound import warm_start_target
from mrl_jax.training.loop import TrainState, feeding_epoch_losses, nll_loss, train_step_fn


def sweep_mesh(n_seeds: int, batch_size: int = 1) -> Mesh | None:
  """A ``("seeds", "batch")`` mesh over all devices of the program (None for one device).

  The seed axis takes as many devices as divide ``n_seeds``; the devices left over split the batch (as
  many as divide ``batch_size``). Devices are ordered by process, so a seed's batch shards share a process
  where they can (their gradients are gathered every step).

  Raises:
    ValueError: under ``jax.distributed``, when the mesh would leave a process without a device (that
      process would have nothing to run).
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  s = max(d for d in range(1, len(devices) + 1) if n_seeds % d == 0)
  b = max(d for d in range(1, len(devices) // s + 1) if batch_size % d == 0)
  used = devices[: s * b]
  idle = sorted({d.process_index for d in devices} - {d.process_index for d in used})
  if idle:
    raise ValueError(f"{n_seeds} seeds and batch size {batch_size} use {s * b} of the {len(devices)} devices of "
                     f"{jax.process_count()} processes, which leaves process(es) {idle} without work: use a "
                     f"multiple of {len(devices)} seeds, or fewer processes")
  return Mesh(np.array(used).reshape(s, b), ("seeds", "batch")) if s * b > 1 else None


def _global(host, mesh: Mesh | None, spec: PartitionSpec):
  """A host value that every process holds in full, as an array laid out by ``spec`` on ``mesh``.

  Each process supplies the shards of its own devices (``make_array_from_callback``): a mesh that spans
  processes cannot take a whole host array (``device_put`` would compare it across processes first).
  """
  if mesh is None:
    return host
  if jnp.issubdtype(host.dtype, jax.dtypes.prng_key):
    data = _global(jax.random.key_data(host), mesh, spec)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(host))
  host = np.asarray(host)
  return jax.make_array_from_callback(host.shape, NamedSharding(mesh, spec), lambda index: host[index])


def _shard(tree, mesh: Mesh | None):
  return jax.tree.map(lambda a: _global(a, mesh, PartitionSpec("seeds")), tree)


def _local_seeds(n_seeds: int, mesh: Mesh | None) -> list[int]:
  """The seeds this process reports: those on its devices, except that a seed whose batch is split over the
  devices of several processes is reported by the lowest of them only (each seed once over all processes)."""
  if mesh is None:
    return list(range(n_seeds))
  owner = {}
  for device, (rows,) in NamedSharding(mesh, PartitionSpec("seeds")).devices_indices_map((n_seeds,)).items():
    for s in range(*rows.indices(n_seeds)):
      owner[s] = min(owner.get(s, device.process_index), device.process_index)
  return [s for s in range(n_seeds) if owner[s] == jax.process_index()]


def _read(a: jax.Array, seeds: list[int]) -> np.ndarray:
  """The values of ``seeds`` (leading axis) from this process's shards of ``a``: no cross-process traffic."""
  values = {}
  for shard in a.addressable_shards:
    rows = shard.index[0] if shard.index else slice(None)
    for s, v in zip(range(*rows.indices(a.shape[0])), np.asarray(shard.data)):
      values.setdefault(s, v)
  return np.asarray([values[s] for s in seeds])


def train_seeds(make_model: Callable[[jax.Array], nnx.Module], make_tx: Callable[[jax.Array], optax.GradientTransformation],
                train: tuple, test: tuple, *, seeds: int, epochs: int, batch_size: int, data_seed: int = 0,
                to_input: Callable = lambda x: x, loss_fn: Callable = nll_loss, eval_batch_size: int = 1000,
                shard: bool = True, plateau_every: int | None = None, steps_per_dispatch: int = 8,
                on_epoch: Callable[[dict, TrainState], None] | None = None) -> list[dict]:
  """Trains ``seeds`` instances in one program and returns per-epoch records with per-seed metrics.

  Args:
    make_model: ``key -> nnx model`` (weights drawn from ``key``).
    make_tx: ``key -> optax transformation`` (device parameters and pulses drawn from ``key``); the
      transformation's static structure must not depend on the key.
    train, test: ``(images, labels)`` numpy arrays.
    seeds: number of device instances.
    epochs, batch_size, data_seed: loop settings (the data order is shared by all seeds).
    to_input: numpy batch → model input.
    shard: shard the seed axis (and, with devices to spare, the batch) over the devices of the program
      (those of every process under ``jax.distributed``, where it must be True).
    plateau_every: mini-batches between the loss signals of the warm-start plateau controller (the mean
      training loss of that window); None signals once per epoch, as ``fit`` does.
    steps_per_dispatch: at most this many steps per jitted call (``lax.scan``), as ``FitConfig``: the largest
      divisor of the epoch's batch count up to it; the results are the same for every value.
    on_epoch: called with ``(epoch_record, state)`` after every epoch (``state``: the seed-batched ``TrainState``).

  Returns:
    ``[{"epoch", "seed_indices": [seed indices], "train_loss": [per seed], "test_loss": [...], "test_acc": [...],
    "warm_start_target": [...] (MRL only), "seconds"}]``, for the seeds this process reports: those on its
    devices (every seed in a single process; a seed whose batch spans processes, by the lowest of them).

  Raises:
    ValueError: ``shard=False`` under ``jax.distributed``, or a seed count that leaves a process idle
      (``sweep_mesh``).
  """
  if not shard and jax.process_count() > 1:
    raise ValueError(f"train_seeds(shard=False) runs every seed in every one of the {jax.process_count()} "
                     "processes; under jax.distributed the seeds must be sharded (shard=True)")
  keys = jax.random.split(jax.random.key(data_seed), seeds)
  graphdef = nnx.graphdef(make_model(keys[0]))
  tx0 = make_tx(keys[0])
  mesh = sweep_mesh(seeds, batch_size) if shard else None
  split_batch = mesh is not None and mesh.shape["batch"] > 1
  step = train_step_fn(graphdef, tx0, loss_fn, batch_axis="batch" if split_batch else None)

  def init(key):
    k_model, k_tx = jax.random.split(key)
    model = make_model(k_model)
    return TrainState(nnx.state(model), make_tx(k_tx).init(nnx.state(model, nnx.Param)))

  # Every process initializes every seed (cheap, and the same bits as one process) and keeps its own shards.
  state = _shard(jax.jit(jax.vmap(init))(keys), mesh)
  local = _local_seeds(seeds, mesh)

  images, labels = train
  n_batches = len(images) // batch_size
  window = plateau_every or n_batches
  group = max(k for k in range(1, min(steps_per_dispatch, n_batches) + 1) if n_batches % k == 0)

  def steps(state, xs, ys, counts, window_sum, loss_sum):
    # ``group`` steps; the data and the step count are shared by all seeds (unbatched), so the transfer
    # schedule's conditions stay branches; each seed's keys live in its own state. The plateau signal (the
    # previous window's mean loss) is formed here from the carried window sum, as the host did per step.
    def body(carry, inputs):
      state, window_sum, loss_sum = carry
      x, y, count = inputs
      fire = (count > 0) & (count % window == 0)
      signal = jnp.where(fire, window_sum / window, jnp.nan).astype(jnp.float32)
      window_sum = jnp.where(fire, 0.0, window_sum)
      state, loss, _ = jax.vmap(step, in_axes=(0, None, None, 0, None))(state, x, y, signal, count)
      return (state, window_sum + loss, loss_sum + loss), None

    (state, window_sum, loss_sum), _ = jax.lax.scan(body, (state, window_sum, loss_sum), (xs, ys, counts))
    return state, window_sum, loss_sum

  seeds_axis, batch_axis, shared = PartitionSpec("seeds"), PartitionSpec(None, "batch"), PartitionSpec()
  if mesh is not None:
    # Each device vmaps over its own seeds and its slice of the batch. Under plain jit the partitioner
    # would all-gather the operands of the pulsed-update custom call, and every device would update every
    # seed's tiles.
    steps = jax.shard_map(steps, mesh=mesh, in_specs=(seeds_axis, batch_axis, batch_axis, shared, seeds_axis,
                                                       seeds_axis),
                          out_specs=seeds_axis, check_vma=False)
  train_steps = jax.jit(steps, donate_argnums=(0, 4, 5))

  def evaluate(model_state, x, y):
    # One seed after the other (lax.map, not vmap): each seed's metrics then come from the same per-seed
    # program however many seeds a device holds, so the records agree bit for bit across device and process
    # counts (a vmapped matmul over 4 seeds rounds differently from one over 1 seed).
    return jax.lax.map(lambda s: loss_fn(nnx.merge(graphdef, s), x, y), model_state)

  if mesh is not None:
    evaluate = jax.shard_map(evaluate, mesh=mesh, in_specs=(seeds_axis, shared, shared), out_specs=seeds_axis,
                             check_vma=False)
  evaluate = jax.jit(evaluate)

  records = []
  window_sum = _shard(jnp.zeros(seeds, jnp.float32), mesh)
  with feeding_epoch_losses():
    for epoch in range(epochs):
      t0 = time.time()
      order = epoch_order(len(images), data_seed, epoch)[: n_batches * batch_size].reshape(n_batches, -1)
      loss_sum = _shard(jnp.zeros(seeds, jnp.float32), mesh)
      for b in range(0, n_batches, group):
        idx = order[b:b + group]
        counts = np.arange(epoch * n_batches + b, epoch * n_batches + b + group, dtype=np.int32)
        xs = np.asarray(to_input(images[idx.reshape(-1)])).reshape((group, batch_size) + images.shape[1:])
        state, window_sum, loss_sum = train_steps(
            state, _global(xs, mesh, batch_axis), _global(labels[idx], mesh, batch_axis),
            _global(counts, mesh, shared), window_sum, loss_sum)
      train_loss = _read(loss_sum, local) / n_batches
      test_loss, correct = np.zeros(len(local)), np.zeros(len(local))
      for i in range(0, len(test[0]), eval_batch_size):
        x, y = np.asarray(to_input(test[0][i:i + eval_batch_size])), test[1][i:i + eval_batch_size]
        l, c = evaluate(state.model, _global(x, mesh, shared), _global(y, mesh, shared))
        test_loss += _read(l, local) * len(y)
        correct += _read(c, local)
      record = {"epoch": epoch + 1, "seed_indices": local, "train_loss": train_loss.tolist(),
                "test_loss": (test_loss / len(test[0])).tolist(), "test_acc": (correct / len(test[0])).tolist(),
                "seconds": time.time() - t0}
      record.update(_warm_start_targets(state.opt, local))
      records.append(record)
      if on_epoch is not None:
        on_epoch(record, state)
  return records


def _warm_start_targets(opt_state, seeds: list[int]) -> dict:
  """``{"warm_start_target": [per seed of seeds]}`` of the first transfer compound, if any."""
  target = warm_start_target(opt_state)
  return {} if target is None else {"warm_start_target": _read(target, seeds).tolist()}


def summarize(records: list[dict]) -> dict:
  """Mean ± std over seeds of the final test accuracy and training loss."""
  final = records[-1]
  acc, loss = np.asarray(final["test_acc"]), np.asarray(final["train_loss"])
  ddof = 1 if len(acc) > 1 else 0
  return {"test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std(ddof=ddof)),
          "train_loss_mean": float(loss.mean()), "train_loss_std": float(loss.std(ddof=ddof)),
          "seeds": len(acc), "epochs": final["epoch"], "seconds": float(sum(r["seconds"] for r in records))}

