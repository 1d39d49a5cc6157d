"""What every analog training algorithm shares: the factored gradient, per-leaf keys, visible weights.

An analog tile is updated from the per-row layer input ``x`` and output gradient ``d`` (one pulse cycle
per row), not from a dense ``dW``. The gradient of an analog weight is therefore an
``AnalogGradient(x, d)`` node in the gradient tree (produced by the analog layers; see ``mrl_jax.nn``),
and every algorithm here is an optax ``GradientTransformationExtraArgs`` whose ``update`` maps
``AnalogGradient`` leaves to ordinary additive updates of the *visible* weights ``W̄`` while the device
state (tile conductances, device parameters, counters, keys) lives in the optimizer state. Digital
parameters are routed to ordinary optax transformations with ``optax.partition``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mrl_jax import _checks
from mrl_jax.analog_state import AnalogState, is_leaf_state


class AnalogGradient(NamedTuple):
  """The gradient of one analog weight ``[out, in]``: rows of layer inputs and output gradients.

  Attributes:
    x: ``float32[rows, in]`` layer inputs (samples, or patches of a convolution).
    d: ``float32[rows, out]`` gradients of the loss with respect to the layer outputs.
  """

  x: jax.Array
  d: jax.Array


ScalarOrSchedule = Union[float, Callable[[jax.Array], jax.Array]]


def is_analog_gradient(node: Any) -> bool:
  return isinstance(node, AnalogGradient)


def is_masked(node: Any) -> bool:
  return isinstance(node, optax.MaskedNode)


def learning_rate_at(learning_rate: ScalarOrSchedule, count) -> jax.Array:
  """The SGD learning rate at step ``count`` (float32)."""
  value = learning_rate(count) if callable(learning_rate) else learning_rate
  return jnp.asarray(value, jnp.float32)


def check_learning_rate(learning_rate: ScalarOrSchedule, owner: str) -> None:
  """Rejects a negative or non-finite learning rate when the transformation is built.

  A schedule is evaluated at count 0: a sign or unit mistake shows there, while later steps run under ``jit`` where
  a bad value can only be skipped (the tiles' non-finite policy), not reported. A traced value is left alone.

  Args:
    learning_rate: a number, a scalar array or a schedule ``count -> rate``.
    owner: the factory's name, for the message.

  Raises:
    ValueError: ``"<owner>: learning_rate = -0.1 is invalid: allowed range is finite values >= 0"``.
  """
  value, label = learning_rate, f"{owner}: learning_rate"
  if callable(learning_rate):
    value, label = learning_rate(jnp.int32(0)), f"{owner}: learning_rate(0)"
  if not isinstance(value, (int, float)):  # an array: read it back unless it is traced
    try:
      array = np.asarray(value)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
      return
    if array.size == 1 and array.dtype.kind in "fiu":
      # Through str, a float32 -0.1 reads -0.1 in the message rather than -0.10000000149011612.
      value = float(str(array.reshape(())[()]))
  _checks.finite_non_negative(label, value)


def schedule_count(own_count, shared_count=None) -> jax.Array:
  """The update count that drives periodic schedules (transfers, commits).

  ``shared_count`` is the ``count`` extra argument of ``update``: the number of updates before this one,
  which must equal the state's own counter. Pass it when vmapping over device seeds with ``in_axes=None``:
  an unbatched count keeps every ``lax.cond`` of the schedule a real branch, whereas the state's (batched)
  counter turns each into a select that runs both sides for every seed.
  """
  return own_count if shared_count is None else jnp.asarray(shared_count, jnp.int32)


def check_analog_gradient(g: Any, weight_shape) -> AnalogGradient:
  """Trace-time check that ``g`` is an ``AnalogGradient`` matching a ``[out, in]`` weight."""
  if not is_analog_gradient(g):
    raise TypeError(f"analog weight of shape {tuple(weight_shape)} received a {type(g).__name__} update; "
                    "analog algorithms need AnalogGradient(x, d) leaves (use the mrl_jax.nn analog layers or "
                    "route digital parameters elsewhere with optax.partition)")
  out_size, in_size = weight_shape
  if g.x.ndim != 2 or g.d.ndim != 2 or g.x.shape[1] != in_size or g.d.shape[1] != out_size \
      or g.x.shape[0] != g.d.shape[0]:
    raise ValueError(f"AnalogGradient for a weight {tuple(weight_shape)} needs x [rows, {in_size}] and "
                     f"d [rows, {out_size}]; got x {g.x.shape} and d {g.d.shape}")
  return g


def _is_analog_node(node) -> bool:
  return is_analog_gradient(node) or is_masked(node)


def map_analog_leaves(fn: Callable, updates, states, params, keys):
  """Applies ``fn(grad, state, weight, key) -> (update, new_state)`` to every analog leaf.

  ``updates``, ``params`` and ``keys`` share the params' structure; ``states`` (the device states) has the same
  leaves in the same order without the params' nnx Variables (``init_leaves``). Masked leaves
  (``optax.MaskedNode``) pass through. Returns ``(updates, states)`` trees.
  """
  grads, treedef = jax.tree.flatten(updates, is_leaf=_is_analog_node)
  leaves, state_def = jax.tree.flatten(states, is_leaf=lambda n: is_leaf_state(n) or is_masked(n))
  new_updates, new_states = [], []
  for g, s, w, k in zip(grads, leaves, treedef.flatten_up_to(params), treedef.flatten_up_to(keys), strict=True):
    u, s = (g, s) if is_masked(g) else fn(g, s, w, k)
    new_updates.append(u)
    new_states.append(s)
  return treedef.unflatten(new_updates), state_def.unflatten(new_states)


def init_leaves(key, params, make_leaf: Callable):
  """``(run_key, leaves)``: ``make_leaf(weight, key)`` for every unmasked weight of ``params``.

  The construction keys come from one half of ``key``, the returned run key (pulses, reads) from the other.
  ``leaves`` has the structure of ``params`` without its nnx Variables: a device state is a plain PyTree of arrays,
  which ``nnx.Optimizer`` keeps as it is (inside a Variable it would turn it into an ``nnx.State``).
  """
  k_init, k_run = jax.random.split(key)
  keys = leaf_keys(k_init, params)
  leaves = jax.tree.map(lambda w, k: w if is_masked(w) else make_leaf(w, k), params, keys, is_leaf=is_masked)
  is_variable = lambda n: isinstance(n, nnx.Variable)
  return k_run, jax.tree.map(lambda v: v.get_value() if is_variable(v) else v, leaves, is_leaf=is_variable)


# ---- the per-weight combinator --------------------------------------------------------------------

class StepInfo(NamedTuple):
  """What one update tells every weight's ``step_leaf``.

  Attributes:
    lr: float32 SGD learning rate of this update (the schedule at the state's ``count``).
    step: int32 number of this update, 1 for the first; drives periodic schedules (``schedule_count``).
    phase: what the algorithm's ``step_shared`` passes on to the weights (e.g. the warm-start target), else None.
  """

  lr: jax.Array
  step: jax.Array
  phase: Any = None


def per_weight(name: str, learning_rate: ScalarOrSchedule, key, *, init_leaf: Callable, step_leaf: Callable,
               visible: Callable, init_shared: Callable | None = None,
               step_shared: Callable | None = None) -> optax.GradientTransformationExtraArgs:
  """The optax transformation that runs an analog algorithm on every analog weight.

  An algorithm is described for one weight; this builds the rest once for all of them: the learning-rate
  check and schedule, one key per weight and update, the update count, masked leaves, the gradient checks,
  and the additive update ``visible(new) − params`` of the visible weights.

  Args:
    name: the factory's name, for messages.
    learning_rate: SGD learning rate or schedule.
    key: PRNG key or integer seed (``as_key``); one half draws every weight's construction key, the other its
      pulses.
    init_leaf: ``(weights, key) -> leaf`` the device state of a ``float32[out, in]`` weight.
    step_leaf: ``(leaf, grad, info, key) -> leaf`` one update of one weight (``grad`` an ``AnalogGradient``,
      ``info`` a ``StepInfo``).
    visible: ``leaf -> float32[out, in]`` the weights the model reads.
    init_shared: ``() -> shared`` state common to all weights (default: none).
    step_shared: ``(shared, extra_args) -> (shared, phase)`` advances it once per update, before the weights
      (``extra_args`` is the dict of ``update``'s keyword arguments); ``phase`` reaches every ``step_leaf``.

  Returns:
    ``optax.GradientTransformationExtraArgs`` with state ``AnalogState``. ``update(grads, state, params,
    count=None, **extra_args)`` needs ``params`` (the visible weights); ``count`` is ``schedule_count``'s.
  """
  check_learning_rate(learning_rate, name)
  key = as_key(key)

  def init_fn(params):
    k_run, leaves = init_leaves(key, params, init_leaf)
    return AnalogState(count=jnp.int32(0), key=k_run, leaves=leaves,
                       shared=None if init_shared is None else init_shared())

  def update_fn(updates, state: AnalogState, params=None, *, count=None, **extra):
    if params is None:
      raise ValueError(f"{name}.update needs params (the visible weights)")
    shared, phase = state.shared, None
    if step_shared is not None:
      shared, phase = step_shared(state.shared, extra)
    info = StepInfo(lr=learning_rate_at(learning_rate, state.count), step=schedule_count(state.count, count) + 1,
                    phase=phase)
    keys = leaf_keys(jax.random.fold_in(state.key, state.count), params)

    def one(g, leaf, w, k):
      check_analog_gradient(g, w.shape)
      new = step_leaf(leaf, g, info, k)
      return visible(new) - w, new

    new_updates, leaves = map_analog_leaves(one, updates, state.leaves, params, keys)
    return new_updates, AnalogState(count=state.count + 1, key=state.key, leaves=leaves, shared=shared)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def map_leaves(fn: Callable, state: AnalogState):
  """``fn(leaf)`` for every weight's device state of ``state``: a tree shaped like the params."""
  return jax.tree.map(fn, state.leaves, is_leaf=is_leaf_state)


ENGINES = ("auto", "native", "jnp")


def check_engine(owner: str, engine) -> None:
  """Rejects an unknown pulsed-update engine (``None`` keeps the configuration's)."""
  if engine is not None:
    _checks.choice(owner, "engine", engine, ENGINES)


def leaf_keys(key, tree):
  """One PRNG key per array leaf of ``tree`` (fold_in of the leaf's position)."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, [jax.random.fold_in(key, i) for i in range(len(leaves))])


def as_key(key) -> jax.Array:
  """A PRNG key from ``key``: a ``jax.random.key`` (or legacy ``uint32[2]`` key) as it is, an integer seed through
  ``jax.random.key``. The seed may be a Python int or an integer scalar array, which is what
  ``optax.inject_hyperparams`` makes of an int argument.

  Raises:
    TypeError: anything else, naming its type.
  """
  if isinstance(key, int) and not isinstance(key, bool):
    return jax.random.key(key)
  if isinstance(key, (jax.Array, np.ndarray, np.integer)):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape == (2,)):
      return key
    if jnp.issubdtype(key.dtype, jnp.integer) and key.ndim == 0:
      return jax.random.key(key)
    raise TypeError(f"key must be a PRNG key or an integer seed, got an array {key.dtype}{list(key.shape)}")
  raise TypeError(f"key must be a PRNG key or an integer seed, got {type(key).__name__}")
