"""The device state of the analog algorithms inside an optimizer state, and the one way into it.

Every analog algorithm (``mrl_jax.optim``) keeps its tiles in an ``AnalogState``: a count, a key, one device
state per analog weight (``leaves``, a tree shaped like the params) and the state its weights share. Wrapped by
``optax.partition``, ``chain`` or ``inject_hyperparams``, or batched over device seeds, it sits somewhere inside
the optimizer state; ``weight_states`` finds every weight's device state and keys it by the weight's path as
``nnx.state(model)`` names it (``("l1", "weight")``), the way optax's ``tree_utils.tree_get`` reads a state by
name. This module sits below the tiles and the algorithms, so both can use it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax


class AnalogState(NamedTuple):
  """The state of every analog algorithm.

  Attributes:
    count: int32 updates so far (the learning-rate schedule's step).
    key: PRNG key of the run; update ``n`` draws from ``fold_in(key, n)``, one key per weight.
    leaves: the device state of every analog weight, a tree shaped like the params (the algorithm's
      ``*LeafState``, or a ``TileState`` for analog SGD).
    shared: state of the algorithm that is one for all of its weights (a transfer compound's warm-start
      phase), else None.
  """

  count: jax.Array
  key: jax.Array
  leaves: Any
  shared: Any = None


def is_leaf_state(node) -> bool:
  """Whether ``node`` is one weight's device state in ``AnalogState.leaves``: a NamedTuple other than a masked
  node (dicts, lists and nnx Variables are the structure of the params above it)."""
  # The type's _fields, not the node's: an nnx Variable forwards attribute reads to the value it holds.
  return isinstance(node, tuple) and hasattr(type(node), "_fields") and not isinstance(node, optax.MaskedNode)


def _is_analog_state(node) -> bool:
  return isinstance(node, AnalogState)


def analog_states(tree) -> list[AnalogState]:
  """Every ``AnalogState`` in ``tree`` (an optimizer or training state), in tree order."""
  return [n for n in jax.tree.leaves(tree, is_leaf=_is_analog_state) if _is_analog_state(n)]


def map_analog_states(fn: Callable[[AnalogState], AnalogState], tree):
  """``tree`` with every ``AnalogState`` replaced by ``fn(state)`` (the rest unchanged)."""
  return jax.tree.map(lambda n: fn(n) if _is_analog_state(n) else n, tree, is_leaf=_is_analog_state)


def _name(entry):
  return entry.key if isinstance(entry, jax.tree_util.DictKey) else entry.idx


def weight_path(path) -> tuple:
  """The params path of a ``jax.tree_util`` key path into ``AnalogState.leaves``: its dict keys and list indices,
  as ``nnx.state(model)`` names a variable (the nnx Variable's own ``.value`` step dropped)."""
  return tuple(_name(p) for p in path if isinstance(p, (jax.tree_util.DictKey, jax.tree_util.SequenceKey)))


def weight_states(tree) -> dict[tuple, Any]:
  """``{params path: device state}`` of every analog weight in ``tree``.

  Args:
    tree: an optimizer state (or anything holding one, such as a training state), batched or not.

  Returns:
    a dict keyed like ``nnx.to_flat_state(nnx.state(model))`` (``("l1", "weight")``; ``("w",)`` for params
    ``{"w": ...}``) whose values are the weights' device states (``CompoundLeafState``, ``ChoppedLeafState``,
    ``MixedPrecisionLeafState``, or a ``TileState`` for analog SGD).
  """
  out = {}
  for state in analog_states(tree):
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.leaves, is_leaf=is_leaf_state)[0]:
      out[weight_path(path)] = leaf
  return out


def map_weight_state(tree, path: tuple, fn: Callable[[Any], Any]):
  """``tree`` with the device state of the analog weight at ``path`` replaced by ``fn(state)``: the setter twin of
  ``weight_states`` (optax's ``tree_utils.tree_set``); the rest of ``tree`` is unchanged, wrappers included.

  Args:
    tree: an optimizer state (or anything holding one), batched or not.
    path: a key of ``weight_states(tree)``.
    fn: ``device state -> device state`` of the same structure.
  """

  def in_state(state: AnalogState) -> AnalogState:
    one = lambda p, leaf: fn(leaf) if is_leaf_state(leaf) and weight_path(p) == path else leaf
    return state._replace(leaves=jax.tree_util.tree_map_with_path(one, state.leaves, is_leaf=is_leaf_state))

  return map_analog_states(in_state, tree)


def path_str(path: tuple) -> str:
  """``"['l1']['weight']"``: a params path as ``jax.tree_util.keystr`` writes it."""
  return "".join(f"[{p!r}]" for p in path)
