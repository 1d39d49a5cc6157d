"""The epoch boundary of a custom training loop: feed the MRL warm start's plateau controller.

The warm start moves down one tile when the epoch-mean training loss plateaus (``plateau.py``). ``fit`` tells the
controller about each epoch; a loop of your own has two equivalent ways, use one of them:

* pass ``epoch_loss=previous_epoch_mean_loss`` to ``tx.update`` on the first step of each epoch (NaN on the
  others), the optax extra-argument style of ``optax.contrib.reduce_on_plateau``; or
* call ``opt_state = end_epoch(config, opt_state, epoch_mean_loss)`` once after each epoch.

A loop that does neither leaves the warm start on its first target tile for ever. The transformation cannot see
epochs, and a host callback inside ``jit`` could stall asynchronous dispatch, so the warnings
(``WarmStartNotFedWarning``) come from the host: ``end_epoch`` warns when it is given no finite loss while a warm
start is still running, and ``warm_start`` / ``warm_start_target`` (what a loop reads to report the target) warn
once the state says ``PlateauRule.warn_after_updates`` (10,000) updates passed without a loss or a
``request_switch`` (``WarmStartState.feed_due_in`` counts them down in every update).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp

from mrl_jax.analog_state import analog_states, map_analog_states
from mrl_jax.optim.compound import TransferCompound, WarmStartNotFedWarning, WarmStartState, feed_limit
from mrl_jax.optim.plateau import plateau_update


def _value(node):
  """The array inside ``node``: itself, or the value of an nnx Variable (``nnx.Optimizer``'s state)."""
  return jax.tree.leaves(node)[0]


def _put(old, new):
  """``new`` in the container of ``old`` (an nnx Variable keeps being one)."""
  return jax.tree.map(lambda _: new, old)


def _concrete_float(x):
  try:
    return float(x)
  except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return None


def end_epoch(config: TransferCompound, opt_state, epoch_loss):
  """Feeds one epoch's mean training loss to the warm-start plateau controller of every transfer compound in
  ``opt_state``.

  Equivalent to passing ``epoch_loss`` to the next ``update``: a plateau sets the pending switch, and the next
  update moves the warm-start target down one tile (``request_switch`` does the same without a loss). Pure, so
  it may be jitted; for states batched over device seeds use ``jax.vmap(end_epoch, (None, 0, 0))``.

  Args:
    config: the ``TransferCompound`` the transformation was built from (its ``plateau`` rule decides).
    opt_state: an optimizer state holding ``transfer_compound`` states at any depth (``optax.partition``,
      ``nnx.Optimizer.opt_state``, a training state).
    epoch_loss: float, the epoch's mean training loss. None or a non-finite value changes nothing and, while a warm
      start is running, warns (``WarmStartNotFedWarning``) that the controller got no loss.

  Returns:
    ``opt_state`` with the plateau history and the pending switch updated; everything else unchanged.

  Raises:
    TypeError: ``config`` is not a ``TransferCompound``.
  """
  if not isinstance(config, TransferCompound):
    raise TypeError(f"end_epoch: config must be the TransferCompound of the transformation, got "
                    f"{type(config).__name__}")
  value = math.nan if epoch_loss is None else epoch_loss
  concrete = _concrete_float(value)
  if concrete is not None and not math.isfinite(concrete):
    running = [s for s in analog_states(opt_state) if isinstance(s.shared, WarmStartState)
               and (_concrete_float(_value(s.shared.target)) or -1) >= 0]
    if running:
      target = int(_value(running[0].shared.target))
      warnings.warn(f"end_epoch: epoch_loss = {epoch_loss!r} is not a finite loss, so the MRL warm start (mode "
                    f"{config.warm_start!r}) stays on tile {target}: pass the epoch's mean training loss",
                    WarmStartNotFedWarning, stacklevel=2)
    return opt_state

  def one(state):
    if not isinstance(state.shared, WarmStartState):
      return state
    warm = state.shared
    plateau_now = type(warm.plateau)(*(_value(f) for f in warm.plateau))
    switch, plateau = plateau_update(config.plateau, plateau_now, jnp.asarray(value, jnp.float32))
    pending = _value(warm.pending) | switch
    due_in = jnp.full_like(_value(warm.feed_due_in), feed_limit(config))
    new = warm._replace(pending=_put(warm.pending, pending),
                        plateau=type(warm.plateau)(*(_put(o, n) for o, n in zip(warm.plateau, plateau))),
                        feed_due_in=_put(warm.feed_due_in, due_in))
    return state._replace(shared=new)

  return map_analog_states(one, opt_state)
