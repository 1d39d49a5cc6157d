"""A two-layer analog MLP on 7×7-pooled MNIST, for tests that train in a subprocess (sweeps, interrupts)."""

import jax
import jax.numpy as jnp
from flax import nnx

from mrl_jax.nn import AnalogLinear


class TinyMLP(nnx.Module):
  def __init__(self, hidden: int, rngs: nnx.Rngs, use_bias: bool = True):
    self.l1 = AnalogLinear(49, hidden, use_bias=use_bias, rngs=rngs)
    self.l2 = AnalogLinear(hidden, 10, use_bias=use_bias, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], 7, 4, 7, 4).mean(axis=(2, 4)).reshape(x.shape[0], -1)
    return jax.nn.log_softmax(self.l2(jnp.tanh(self.l1(x))))


class NestedNet(nnx.Module):
  """Two analog layers, one of them inside an ``nnx.List``: device-state paths of both shapes,
  ``("l1", "weight")`` and ``("blocks", 0, "weight")``."""

  def __init__(self, rngs: nnx.Rngs):
    self.l1 = AnalogLinear(4, 3, rngs=rngs)
    self.blocks = nnx.List([AnalogLinear(3, 2, rngs=rngs)])

  def __call__(self, x):
    return self.blocks[0](jnp.tanh(self.l1(x)))
