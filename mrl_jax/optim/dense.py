"""Floating-point baselines on analog models: turn ``AnalogGradient`` leaves into dense gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mrl_jax.optim import base


def densify() -> optax.GradientTransformation:
  """Replaces every ``AnalogGradient(x, d)`` by the dense gradient ``dᵀx`` (``[out, in]``), so any optax
  optimizer can follow: ``optax.chain(densify(), optax.sgd(lr))`` is FP SGD on the visible weights."""

  def update_fn(updates, state, params=None):
    del params
    dense = lambda g: jnp.matmul(g.d.T, g.x, precision=jax.lax.Precision.HIGHEST) if base.is_analog_gradient(g) else g
    return jax.tree.map(dense, updates, is_leaf=base.is_analog_gradient), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
