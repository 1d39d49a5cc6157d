"""A jit-compiled, resumable training loop for nnx models with analog layers.

One training step is one jitted function over donated state: the analog-aware gradient
(``value_and_analog_grad``), the optax update (analog algorithms and digital optimizers), and the
application to the model. The host loop feeds batches, signals epoch boundaries to the warm-start
plateau controller (``epoch_loss``), evaluates, logs JSONL metrics, and writes atomic checkpoints of
everything (model, optimizer/device state, data position, partial epoch statistics) so that a killed
run resumes bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mrl_jax.data.batching import epoch_order
from mrl_jax.nn.tape import value_and_analog_grad
from mrl_jax.optim.base import AnalogGradient, is_analog_gradient
from mrl_jax.optim.compound import WarmStartNotFedWarning, warm_start
from mrl_jax.tile import skipped_updates
from mrl_jax.training import checkpoint as ckpt
from mrl_jax.training import rundir


class TrainState(NamedTuple):
  """Device-side training state: the whole model state and the optimizer state."""

  model: nnx.State
  opt: Any


def nll_loss(model, x, y):
  """Mean negative log-likelihood of log-probability outputs; aux = number of correct predictions."""
  logp = model(x)
  loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
  return loss, jnp.sum(jnp.argmax(logp, axis=-1) == y)


def init_state(model: nnx.Module, tx: optax.GradientTransformation):
  """``(graphdef, TrainState)`` for ``model`` and ``tx`` (the optimizer sees ``nnx.Param`` variables)."""
  graphdef, state = nnx.split(model)
  return graphdef, TrainState(model=state, opt=tx.init(nnx.state(model, nnx.Param)))


def combine_batch_shards(loss, aux, grads, axis_name: str):
  """What one device would have computed from the whole batch, inside ``shard_map`` over ``axis_name``.

  Assumes a loss that is the mean over the batch and an ``aux`` that adds up (e.g. correct predictions).
  Analog gradients: the rows of every shard are gathered in batch order and ``d`` is rescaled from the
  shard mean to the batch mean (exact for a power-of-two number of shards), so every tile receives the
  same pulses as without sharding. Digital gradients and the loss: mean over shards (the float summation
  order may differ from one device). Batch-norm statistics stay per shard.
  """
  n = jnp.float32(jax.lax.axis_size(axis_name))

  def combine(g):
    if is_analog_gradient(g):
      gather = lambda a: jax.lax.all_gather(a, axis_name, axis=0, tiled=True)
      return AnalogGradient(gather(g.x), gather(g.d) / n)
    return jax.lax.pmean(g, axis_name)

  grads = jax.tree.map(combine, grads, is_leaf=is_analog_gradient)
  return jax.lax.pmean(loss, axis_name), jax.lax.psum(aux, axis_name), grads


def train_step_fn(graphdef, tx: optax.GradientTransformation, loss_fn: Callable = nll_loss,
                  batch_axis: str | None = None):
  """The pure training step ``step(state, x, y, epoch_loss, count=None) -> (state, loss, aux)`` (not jitted).

  ``epoch_loss``: float32, the previous epoch's mean training loss on the first step of an epoch,
  NaN otherwise (drives the MRL warm-start plateau controller; ignored by other algorithms).
  ``count``: optional int32, the number of steps before this one; give it unbatched when vmapping the
  step over device seeds so that transfer schedules stay branches (``optim.base.schedule_count``).
  ``batch_axis``: the mesh axis the batch is split over when the step runs inside ``shard_map``
  (``combine_batch_shards``); None for an unsharded batch.
  """

  def step(state: TrainState, x, y, epoch_loss, count=None):
    model = nnx.merge(graphdef, state.model)
    written = jax.tree.map(lambda a: a, nnx.state(model, nnx.Not(nnx.Param)))  # a snapshot, not the Variables
    (loss, aux), grads = value_and_analog_grad(loss_fn, has_aux=True)(model, x, y)
    if batch_axis is not None:
      loss, aux, grads = combine_batch_shards(loss, aux, grads, batch_axis)
    params = nnx.state(model, nnx.Param)
    extra = {} if count is None else {"count": count}
    updates, opt = tx.update(grads, state.opt, params, epoch_loss=epoch_loss, **extra)
    nnx.update(model, optax.apply_updates(params, updates))
    # Parameters are guarded by the optimizers' non-finite policy; a non-finite loss may also have passed
    # NaNs into state the forward pass writes (batch-norm statistics), so that keeps its old value.
    finite = jnp.isfinite(loss)
    nnx.update(model, jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                   nnx.state(model, nnx.Not(nnx.Param)), written))
    return TrainState(nnx.state(model), opt), loss, aux

  return step


def make_train_step(graphdef, tx: optax.GradientTransformation, loss_fn: Callable = nll_loss):
  """``train_step_fn`` jitted with the state donated (updated in place)."""
  return jax.jit(train_step_fn(graphdef, tx, loss_fn), donate_argnums=0)


def make_multi_step(graphdef, tx: optax.GradientTransformation, loss_fn: Callable = nll_loss):
  """``k`` training steps in one dispatch: ``multi(state, xs, ys, epoch_losses) -> (state, losses, aux)``.

  ``xs``, ``ys``, ``epoch_losses`` carry a leading axis of ``k`` steps (one compiled program per ``k``); the
  steps run under ``lax.scan`` in one jitted, donated program, so the per-call cost (dispatching every leaf of
  the state, a host sync per step) is paid once per ``k`` steps. Equal, bit for bit, to ``k`` calls of
  ``make_train_step`` (``tests/test_training.py``).
  """
  step = train_step_fn(graphdef, tx, loss_fn)

  def multi(state, xs, ys, epoch_losses):
    def body(carry, inputs):
      carry, loss, aux = step(carry, *inputs)
      return carry, (loss, aux)

    state, (losses, aux) = jax.lax.scan(body, state, (xs, ys, epoch_losses))
    return state, losses, aux

  return jax.jit(multi, donate_argnums=0)


def make_eval_step(graphdef, loss_fn: Callable = nll_loss):
  """Returns ``evaluate(model_state, x, y) -> (loss, aux)`` (jitted; the model state is not changed)."""

  @jax.jit
  def evaluate(model_state, x, y):
    return loss_fn(nnx.merge(graphdef, model_state), x, y)

  return evaluate


@dataclasses.dataclass
class FitConfig:
  """Loop settings.

  Attributes:
    epochs: number of epochs.
    batch_size: training batch size (incomplete last batches are dropped).
    eval_batch_size: evaluation batch size.
    out_dir: run directory (meta.json, metrics.jsonl, checkpoints); None disables them. A directory that already
      holds a run needs ``resume`` or ``overwrite`` (see :mod:`mrl_jax.training.rundir`).
    resume: continue from the newest checkpoint in ``out_dir``; the run's recorded configuration must match except
      in ``resume_safe_fields``.
    overwrite: delete the run in ``out_dir`` (its meta.json, metrics.jsonl, checkpoints and plots) and start afresh.
    resume_safe_fields: fields of ``run_meta`` that may differ on a resume (``epochs``, say); the loop's own
      ``epochs``, ``eval_batch_size`` and ``checkpoint_every_steps`` always may.
    checkpoint_every_steps: extra mid-epoch checkpoints (0 = only at epoch ends); with ``steps_per_dispatch`` k
      the checkpoint is written at the end of the dispatch that reaches the step.
    steps_per_dispatch: at most this many training steps per jitted call (``make_multi_step``); results are
      identical for every value. The loop uses k = the largest divisor of the epoch's batch count that is at most
      this, so one program serves the whole run (a second would cost another compilation); after a resume from a
      position that is not a multiple of k, the batches up to the next multiple run one per call.
    seed: data-order seed.
    progress: show a tqdm bar.
    non_finite: what a step with a non-finite loss or skipped tile updates does: ``"skip"`` (the
      updates are skipped and counted; epoch records carry ``skipped_updates`` and ``non_finite_steps``)
      or ``"raise"`` (additionally write a checkpoint of the unchanged state and raise
      ``FloatingPointError`` naming the step and the tiles; with ``steps_per_dispatch`` > 1, at the end of the
      dispatch that held the step: the steps after it in that dispatch have run).
  """

  epochs: int
  batch_size: int
  eval_batch_size: int = 1000
  out_dir: Optional[str] = None
  resume: bool = False
  overwrite: bool = False
  resume_safe_fields: tuple[str, ...] = ()
  checkpoint_every_steps: int = 0
  steps_per_dispatch: int = 1
  seed: int = 0
  progress: bool = True
  non_finite: str = "skip"

  def __post_init__(self):
    for name in ("epochs", "batch_size", "eval_batch_size", "steps_per_dispatch"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"FitConfig.{name} = {value!r} is invalid: allowed range is integers >= 1")
    if self.resume and self.overwrite:
      raise ValueError("FitConfig.resume and FitConfig.overwrite are both True: they exclude each other (resume "
                       "continues the run in out_dir, overwrite deletes it)")
    if self.non_finite not in NON_FINITE_POLICIES:
      raise ValueError(f"FitConfig.non_finite = {self.non_finite!r} is invalid: allowed is one of "
                       f"{', '.join(map(repr, NON_FINITE_POLICIES))}")


NON_FINITE_POLICIES = ("skip", "raise")


class TrainingInterrupted(KeyboardInterrupt):
  """Training stopped on Ctrl-C (SIGINT).

  Attributes:
    checkpoint: the newest complete checkpoint (None without ``out_dir`` or if none was written yet).
    epoch: finished epochs at that point.
    position: batches of the next epoch done at that point.
  """

  def __init__(self, checkpoint: Path | None, epoch: int, position: int):
    if position:
      when = f"in epoch {epoch + 1} after batch {position}"
    else:
      when = f"at the end of epoch {epoch}" if epoch else "before the first step"
    where = f"last checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint written"
    super().__init__(f"training interrupted {when}; {where}")
    self.when = when
    self.checkpoint, self.epoch, self.position = checkpoint, epoch, position


class _StopRequest:
  """Set by the first Ctrl-C: the loop finishes its step, checkpoints and raises ``TrainingInterrupted``."""

  def __init__(self):
    self.requested = False


@contextlib.contextmanager
def _stop_on_sigint(stop: _StopRequest, immediate: Callable[[], BaseException]):
  """Turns SIGINT into ``stop.requested`` while the block runs; a second SIGINT raises ``immediate()`` at once.

  Signal handlers can only be set from the main thread, so elsewhere (and where SIGINT is ignored, as in a
  background job) nothing changes. The previous handler is restored afterwards.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.getsignal(signal.SIGINT)
  if previous is signal.SIG_IGN:
    yield
    return

  def handler(signum, frame):
    if stop.requested:
      raise immediate()
    # Only a flag: raising here could land mid-step, after the step donated the state it was given.
    stop.requested = True

  signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def evaluate_dataset(evaluate, model_state, images, labels, batch_size: int):
  """Mean loss and accuracy over a dataset (all samples; the last batch may be smaller)."""
  total_loss, correct = 0.0, 0
  for i in range(0, len(images), batch_size):
    x, y = images[i:i + batch_size], labels[i:i + batch_size]
    loss, aux = evaluate(model_state, jnp.asarray(x), jnp.asarray(y))
    total_loss += float(loss) * len(x)
    correct += int(aux)
  return total_loss / len(images), correct / len(images)


@contextlib.contextmanager
def feeding_epoch_losses():
  """The context of a loop that passes every epoch's mean loss to the optimizer (``fit``, the sweep): the MRL warm
  start's ``WarmStartNotFedWarning`` there can only mean an epoch longer than ``PlateauRule.warn_after_updates``
  (fed late, not missing), so it is silenced."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", WarmStartNotFedWarning)
    yield


def fit(model: nnx.Module, tx: optax.GradientTransformation, train: tuple, test: tuple, cfg: FitConfig,
        loss_fn: Callable = nll_loss, to_input: Callable = lambda x: x, run_meta: dict | None = None,
        on_epoch: Callable | None = None, provenance: dict | None = None):
  """Trains ``model`` with ``tx`` and returns ``(model, history, state)``.

  With ``out_dir``, the run directory is checked first (:mod:`mrl_jax.training.rundir`): an existing run needs
  ``resume`` or ``overwrite``, and a resume must keep the recorded configuration. Ctrl-C (SIGINT, when ``fit`` runs
  in the main thread) finishes the current step, writes a checkpoint and raises :class:`TrainingInterrupted`; a
  second Ctrl-C raises it at once, naming the newest checkpoint already written.

  Args:
    model: an nnx model (analog layers and digital parameters).
    tx: the optax transformation over the model's ``nnx.Param`` state.
    train, test: ``(images, labels)`` numpy arrays.
    cfg: loop settings.
    loss_fn: ``loss_fn(model, x, y) -> (loss, n_correct)``.
    to_input: maps a numpy image batch to the model input (e.g. uint8 → float32 in [0, 1]).
    run_meta: the caller's resolved configuration (JSON): stored in ``meta.json``, every checkpoint and the first
      metrics line, and compared on a resume.
    on_epoch: called with ``(epoch_record, state)`` after every epoch.
    provenance: where the data came from (e.g. ``{"train": ..., "test": ...}`` of ``mrl_jax.data.provenance``):
      stored in ``meta.json``; on a resume the files' sha256 must match.

  Returns:
    ``(model, history, state)``: the trained model (state merged back), the per-epoch records and the final
    ``TrainState``.

  Raises:
    rundir.RunExistsError, rundir.ResumeMismatchError: the run directory cannot be used as asked (nothing changed).
    TrainingInterrupted: on Ctrl-C.
  """
  out = Path(cfg.out_dir) if cfg.out_dir else None
  plan = None
  if out is not None:  # before anything else: a refused request must not have changed the directory
    plan = rundir.plan_run(out, resume=cfg.resume, overwrite=cfg.overwrite, config=run_meta,
                           fit={k: getattr(cfg, k) for k in rundir.FIT_FIELDS}, data=provenance,
                           safe=cfg.resume_safe_fields)
  graphdef, state = init_state(model, tx)
  step = make_train_step(graphdef, tx, loss_fn)  # jit compiles each program on its first call only
  multi_step = make_multi_step(graphdef, tx, loss_fn)
  evaluate = make_eval_step(graphdef, loss_fn)
  meta = {"epoch": 0, "position": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "last_epoch_loss": None,
          "non_finite_steps": 0, "history": []}
  images, labels = train
  n_batches = len(images) // cfg.batch_size
  if n_batches == 0:
    raise ValueError(f"batch_size = {cfg.batch_size} is larger than the training set ({len(images)} samples)")
  group = max(k for k in range(1, min(cfg.steps_per_dispatch, n_batches) + 1) if n_batches % k == 0)
  if plan is not None and plan.resume:
    latest = ckpt.latest_checkpoint(out)
    if latest is not None:
      state, saved = ckpt.load_checkpoint(latest, state)
      meta.update({k: saved[k] for k in meta if k in saved})
      print(f"resumed from {latest} (epoch {meta['epoch']}, batch {meta['position']})", file=sys.stderr)
    else:
      print(f"{out} holds no complete checkpoint yet: its run starts again from the beginning", file=sys.stderr)
    rundir.record_resume(plan, latest, meta["epoch"], meta["position"])
  elif plan is not None:
    rundir.start_run(plan)
  saved_at = {"key": None, "path": None}

  def save(meta_now):
    if out is None:
      return None
    key = (meta_now["epoch"], meta_now["position"])
    if saved_at["key"] != key:  # an interrupt right after a periodic checkpoint reuses it
      saved_at["path"] = ckpt.save_checkpoint(out, meta_now["epoch"] * 1_000_000 + meta_now["position"], state,
                                              {**meta_now, "run": run_meta or {}})
      saved_at["key"] = key
    return saved_at["path"]

  stop = _StopRequest()

  def interrupted_now():
    # Second Ctrl-C, possibly mid-step: only checkpoints already complete on disk count.
    return TrainingInterrupted(ckpt.latest_checkpoint(out) if out is not None else None, meta["epoch"],
                               meta["position"])

  def stop_if_requested():
    # Called where the state and meta["position"] describe the same point (the step's results are in).
    if stop.requested:
      raise TrainingInterrupted(save(meta), meta["epoch"], meta["position"])

  with _stop_on_sigint(stop, interrupted_now), feeding_epoch_losses():
    while meta["epoch"] < cfg.epochs:
      epoch = meta["epoch"]
      order = epoch_order(len(images), cfg.seed, epoch)[: n_batches * cfg.batch_size].reshape(n_batches, -1)
      bar = _progress(cfg.progress, n_batches, meta["position"], f"epoch {epoch + 1}/{cfg.epochs}")
      t0 = time.time()
      try:
        b = meta["position"]
        while b < n_batches:
          k = group if b % group == 0 else 1
          signals = [meta["last_epoch_loss"] if (c == 0 and meta["last_epoch_loss"] is not None) else math.nan
                     for c in range(b, b + k)]
          batches = [(to_input(images[order[c]]), jnp.asarray(labels[order[c]])) for c in range(b, b + k)]
          if k == 1:
            state, loss, correct = step(state, *batches[0], jnp.float32(signals[0]))
            losses, corrects = [float(loss)], [int(correct)]
          else:
            # A model input may be a pytree (e.g. the CIFAR example's TrainBatch): stack it leaf by leaf.
            xs = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[x for x, _ in batches])
            state, loss, correct = multi_step(state, xs,
                                              jnp.stack([y for _, y in batches]), jnp.asarray(signals, jnp.float32))
            losses, corrects = np.asarray(loss).tolist(), np.asarray(correct).tolist()
          b += k
          meta["position"] = b
          failed = None
          for c, (loss_c, correct_c) in enumerate(zip(losses, corrects), start=b - k):
            if not math.isfinite(loss_c):
              # The step's updates were skipped (tiles and digital parameters), so the state is still good.
              meta["non_finite_steps"] += 1
              failed = failed or (c, loss_c)
            else:
              meta["loss_sum"] += loss_c
              meta["correct"] += int(correct_c)
              meta["seen"] += 1
          if failed is not None and cfg.non_finite == "raise":
            save(meta)
            raise FloatingPointError(
                f"non-finite training loss {failed[1]} at epoch {epoch + 1}, batch {failed[0] + 1}; the step's "
                f"updates were skipped and the state after batch {b} was checkpointed. Skipped tile updates so "
                f"far: {_skip_summary(state.opt)}")
          if bar is not None:
            bar.update(k)
            if (b - k) // 50 != b // 50 or b - k == 0:
              bar.set_postfix(loss=f"{meta['loss_sum'] / max(meta['seen'], 1):.4f}",
                              acc=f"{meta['correct'] / max(meta['seen'] * cfg.batch_size, 1):.3f}")
          every = cfg.checkpoint_every_steps
          if every and (b - k) // every != b // every and b < n_batches:
            save(meta)
          stop_if_requested()
      finally:
        if bar is not None:
          bar.close()
      train_loss = meta["loss_sum"] / max(meta["seen"], 1)
      train_acc = meta["correct"] / max(meta["seen"] * cfg.batch_size, 1)
      test_loss, test_acc = evaluate_dataset(evaluate, state.model, to_input(test[0]), test[1],
                                             cfg.eval_batch_size)
      record = {"event": "epoch", "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                "test_loss": test_loss, "test_acc": test_acc, "seconds": time.time() - t0}
      record.update(_warm_start_info(state.opt), non_finite_steps=meta["non_finite_steps"],
                    skipped_updates=sum(int(v) for v in skipped_updates(state.opt).values()))
      meta["history"].append(record)
      meta.update(epoch=epoch + 1, position=0, loss_sum=0.0, correct=0, seen=0, last_epoch_loss=train_loss,
                  non_finite_steps=0)
      print(f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.4f} | test loss {test_loss:.4f} "
            f"acc {test_acc:.4f} ({record['seconds']:.1f}s)", file=sys.stderr)
      if out is not None:
        with open(out / rundir.METRICS, "a") as f:
          f.write(json.dumps(record) + "\n")
      save(meta)
      if on_epoch is not None:
        on_epoch(record, state)
      stop_if_requested()
  nnx.update(model, state.model)
  return model, meta["history"], state


def _skip_summary(opt_state) -> str:
  counts = {path: int(v) for path, v in skipped_updates(opt_state).items() if int(v)}
  return ", ".join(f"{path}: {n}" for path, n in counts.items()) or "none"


def _warm_start_info(opt_state) -> dict:
  """Warm-start target and plateau switch count if the optimizer holds a transfer compound."""
  warm = warm_start(opt_state)
  if warm is None:
    return {}
  return {"plateau_switches": int(warm.plateau.switches), "warm_start_target": int(warm.target)}


def _progress(enabled: bool, total: int, initial: int, desc: str):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, leave=False, file=sys.stderr)
