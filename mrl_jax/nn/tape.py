"""The gradient tape of analog layers: per-row inputs ``x`` and output gradients ``d``.

An analog tile is trained from the rows ``(x, d)`` of each step, not from ``dW``. During
``value_and_analog_grad`` every analog layer records its input rows and adds a zero "probe" to its
output rows; the gradient of the loss with respect to that probe is ``d``. The probe shapes are
found by a shape-only pass (``jax.eval_shape``, trace time only), so a step costs one forward and one
backward pass, as usual.
"""

from __future__ import annotations

import contextvars
import itertools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mrl_jax.optim.base import AnalogGradient

_IDS = itertools.count()
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("mrl_jax_tape", default=None)


def new_id(prefix: str) -> str:
  """A process-unique id for an analog layer (static module attribute)."""
  return f"{prefix}_{next(_IDS)}"


class _Tape:

  def __init__(self, probes=None):
    self.probes = probes
    self.shapes: dict = {}
    self.inputs: dict = {}


def record(tape_id: str, x, y):
  """Called by analog layers on their MVM rows ``x [n, in] → y [n, out]``; returns ``y`` (+ probe)."""
  tape = _ACTIVE.get()
  if tape is None:
    return y
  if tape_id in tape.inputs:
    raise ValueError(f"analog layer {tape_id} was called twice in one differentiated step; use one analog layer "
                     "per call site")
  tape.inputs[tape_id] = x
  tape.shapes[tape_id] = y.shape
  return y if tape.probes is None else y + tape.probes[tape_id]


def analog_weight_paths(model: nnx.Module) -> dict:
  """``{tape_id: state path of the layer's AnalogWeight}`` for every analog layer of ``model``: every module that
  records on the tape (its ``tape_id`` comes from ``new_id``)."""
  return {m.tape_id: tuple(path) + ("weight",) for path, m in nnx.iter_modules(model)
          if isinstance(getattr(m, "tape_id", None), str)}


def value_and_analog_grad(loss_fn: Callable, has_aux: bool = False):
  """Like ``nnx.value_and_grad`` over ``nnx.Param`` (analog weights included), for analog models.

  Args:
    loss_fn: ``loss_fn(model, *args, **kwargs) -> loss`` (or ``(loss, aux)`` with ``has_aux``).

  Returns:
    ``fn(model, *args, **kwargs) -> (value, grads)`` where ``value`` is ``loss`` or ``(loss, aux)`` and
    ``grads`` is an ``nnx.State`` of the model's ``nnx.Param`` variables in which every
    ``AnalogWeight`` holds an ``AnalogGradient(x, d)`` instead of a dense gradient. Updates of other
    model state (RNG counters, batch statistics) are written back to ``model``.
  """

  def wrapped(model: nnx.Module, *args, **kwargs):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def run(params, tape: _Tape):
      m = nnx.merge(graphdef, params, rest, copy=True)  # non-Param state (RNG counts, BatchStats) is written here
      token = _ACTIVE.set(tape)
      try:
        out = loss_fn(m, *args, **kwargs)
      finally:
        _ACTIVE.reset(token)
      return out, nnx.state(m, nnx.Not(nnx.Param))

    shape_tape = _Tape()
    jax.eval_shape(lambda p: run(p, shape_tape), params)
    probes = {k: jnp.zeros(s, jnp.float32) for k, s in shape_tape.shapes.items()}

    def objective(params, probes):
      tape = _Tape(probes)
      out, new_rest = run(params, tape)
      loss, aux = out if has_aux else (out, None)
      return loss, (aux, dict(tape.inputs), new_rest)

    (loss, (aux, inputs, new_rest)), (g_params, g_probes) = jax.value_and_grad(
        objective, argnums=(0, 1), has_aux=True)(params, probes)
    nnx.update(model, new_rest)
    paths = {path: tape_id for tape_id, path in analog_weight_paths(model).items()}
    flat = []
    for path, var in g_params.flat_state():
      tape_id = paths.get(tuple(path))
      if tape_id is not None:
        w = var.get_value()
        if tape_id in inputs:
          grad = AnalogGradient(inputs[tape_id], g_probes[tape_id])
        else:  # layer unused in this loss: zero rows, no pulses
          grad = AnalogGradient(jnp.zeros((0, w.shape[1]), jnp.float32), jnp.zeros((0, w.shape[0]), jnp.float32))
        var = var.replace(value=grad)
      flat.append((path, var))
    grads = nnx.State.from_flat_path(flat)
    return ((loss, aux) if has_aux else loss), grads

  return wrapped
