"""The loss-plateau controller that moves the MRL warm-start target (reference ``train()`` rules).

Evaluated once per epoch on the epoch-mean training loss. While fewer than ``aggressive_switches``
switches happened, a plateau is an increase of the loss (``Δ > aggressive_tol``) between the last two
epochs; afterwards it is ``≥ min_violations`` "violations" among the last ``window`` differences, where
a violation is ``Δ ≥ −drop_tol`` (``rule="loss_drop_below"``, MNIST) or ``Δ > rise_tol``
(``rule="loss_rise"``, CIFAR). A plateau counts a switch and clears the history.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax.numpy as jnp

from mrl_jax import _checks as C


@dataclasses.dataclass(frozen=True)
class PlateauRule:
  """Thresholds of the plateau controller (defaults: the reference LeNet-5/MNIST script).

  ``warn_after_updates``: while a warm start runs, ``optim.warm_start`` / ``warm_start_target`` warn
  (``WarmStartNotFedWarning``) once this many updates passed without an epoch loss (``epoch_loss=`` to
  ``update``, or ``end_epoch``) or a ``request_switch``; an epoch longer than this is fine to feed late, so raise it
  for such data (None: never warn). The other fields are the rule of the module docstring.
  """

  aggressive_switches: int = 4
  aggressive_tol: float = 1e-4
  window: int = 5
  min_violations: int = 2
  rule: str = "loss_drop_below"
  drop_tol: float = 0.01
  rise_tol: float = 1e-4
  warn_after_updates: Optional[int] = 10_000

  def __post_init__(self):
    if self.warn_after_updates is not None:
      C.integer("PlateauRule", "warn_after_updates", self.warn_after_updates, 1)
    C.check_fields(self, {"aggressive_switches": lambda o, n, v: C.integer(o, n, v, 0),
                          "aggressive_tol": C.non_negative, "window": lambda o, n, v: C.integer(o, n, v, 1, 64),
                          "min_violations": lambda o, n, v: C.integer(o, n, v, 1),
                          "rule": lambda o, n, v: C.choice(o, n, v, ("loss_drop_below", "loss_rise")),
                          "drop_tol": C.non_negative, "rise_tol": C.non_negative})
    if self.min_violations > self.window:
      raise ValueError(f"PlateauRule.min_violations = {self.min_violations} is invalid: allowed range is "
                       f"[1, window = {self.window}]")


MNIST_RULE = PlateauRule()
CIFAR_RULE = PlateauRule(rule="loss_rise")


class PlateauState(NamedTuple):
  """History of epoch losses since the last switch (ring of the last ``window + 1``) and counters."""

  history: jnp.ndarray  # float32[window + 1], most recent last
  count: jnp.ndarray  # int32 entries since the last switch
  switches: jnp.ndarray  # int32 switches so far


def plateau_init(rule: PlateauRule) -> PlateauState:
  return PlateauState(jnp.zeros((rule.window + 1,), jnp.float32), jnp.int32(0), jnp.int32(0))


def plateau_update(rule: PlateauRule, state: PlateauState, epoch_loss) -> tuple[jnp.ndarray, PlateauState]:
  """Appends the epoch's mean loss and decides whether the loss has plateaued.

  Returns:
    ``(plateau, new_state)``; ``plateau`` is a bool scalar. A non-finite loss is ignored (no switch).
  """
  loss = jnp.asarray(epoch_loss, jnp.float32)
  valid = jnp.isfinite(loss)
  history = jnp.where(valid, jnp.roll(state.history, -1).at[-1].set(loss), state.history)
  count = jnp.where(valid, jnp.minimum(state.count + 1, rule.window + 1), state.count)
  diffs = history[1:] - history[:-1]  # the last `window` differences
  aggressive = (count >= 2) & (diffs[-1] > rule.aggressive_tol)
  violation = diffs >= -rule.drop_tol if rule.rule == "loss_drop_below" else diffs > rule.rise_tol
  smooth = (count >= rule.window + 1) & (jnp.sum(violation) >= rule.min_violations)
  plateau = valid & jnp.where(state.switches < rule.aggressive_switches, aggressive, smooth)
  new = PlateauState(history=history, count=jnp.where(plateau, 0, count),
                     switches=state.switches + plateau.astype(jnp.int32))
  return plateau, new
