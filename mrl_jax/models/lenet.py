"""The fully analog LeNet-5 of the MRL reference script (``Mnist_LeNet5.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mrl_jax.io import PERFECT_IO, IOParameters
from mrl_jax.nn import AnalogConv2d, AnalogLinear, max_pool


class LeNet5(nnx.Module):
  """conv 1→16 k5, tanh, maxpool 2, conv 16→32 k5, tanh, maxpool 2, tanh, flatten (512),
  linear 512→128, tanh, linear 128→10, log-softmax. Tiles: 16×25, 32×400, 128×512, 10×128.

  Args:
    rngs: ``nnx.Rngs`` (``params``; ``noise`` for noisy I/O).
    forward_io, backward_io: I/O of every analog layer (default perfect, as the reference's MRL setting).
    learn_out_scale: a learned digital output scalar per layer (AIHWKit ``learn_out_scaling``, which the
      reference sets for TT-v1 … TT-v4).
    weight_scaling_omega, weight_scaling_columnwise: AIHWKit's weight mapping of every analog layer (ω = 0: none;
      the reference's TT-v3/TT-v4 use ω = 0.6 columnwise), see ``mrl_jax.nn.map_weights``.
  """

  def __init__(self, *, rngs: nnx.Rngs, forward_io: IOParameters = PERFECT_IO,
               backward_io: IOParameters = PERFECT_IO, in_channels: int = 1, learn_out_scale: bool = False,
               weight_scaling_omega: float = 0.0, weight_scaling_columnwise: bool = False):
    io = dict(forward_io=forward_io, backward_io=backward_io, learn_out_scale=learn_out_scale,
              weight_scaling_omega=weight_scaling_omega, weight_scaling_columnwise=weight_scaling_columnwise,
              rngs=rngs)
    self.conv1 = AnalogConv2d(in_channels, 16, 5, **io)
    self.conv2 = AnalogConv2d(16, 32, 5, **io)
    self.fc1 = AnalogLinear(512, 128, **io)
    self.fc2 = AnalogLinear(128, 10, **io)

  def __call__(self, x):
    """``x``: ``float32[N, 28, 28, C]`` in [0, 1] → log-probabilities ``[N, 10]``."""
    pool = lambda h: max_pool(h, (2, 2))  # nnx.max_pool's values and gradients, faster (mrl_jax.nn.pooling)
    h = pool(jnp.tanh(self.conv1(x)))
    h = jnp.tanh(pool(jnp.tanh(self.conv2(h))))
    h = h.reshape(h.shape[0], -1)
    h = jnp.tanh(self.fc1(h))
    return jax.nn.log_softmax(self.fc2(h))
