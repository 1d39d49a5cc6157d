"""Max pooling over non-overlapping windows, with the gradient going to the first maximum of each window.

``nnx.max_pool``'s gradient is a variadic ``reduce_window`` that tracks an index per element, the slowest op of a
LeNet-5 training step on the CPU (0.4 ms of 4.3). For windows that tile the input (stride = size, as in the
reference models) a reshape exposes each window as one axis: the forward is a plain max and the backward a
one-hot of ``argmax``, which is the first maximum in row-major window order, the element torch's ``max_pool2d``
(and XLA's select-and-scatter) routes a tied window's gradient to. Values and gradients equal ``nnx.max_pool``'s
bit for bit (``tests/test_nn.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _windows(x, size):
  """``[N, H, W, C] → [N, H/sh, W/sw, C, sh·sw]`` (window elements last, row-major)."""
  n, h, w, c = x.shape
  sh, sw = size
  x = x.reshape(n, h // sh, sh, w // sw, sw, c)
  return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // sh, w // sw, c, sh * sw)


def _unwindows(g, size):
  n, ho, wo, c, _ = g.shape
  sh, sw = size
  return g.reshape(n, ho, wo, c, sh, sw).transpose(0, 1, 4, 2, 5, 3).reshape(n, ho * sh, wo * sw, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _pool(x, size):
  return jnp.max(_windows(x, size), axis=-1)


def _pool_fwd(x, size):
  win = _windows(x, size)
  return jnp.max(win, axis=-1), jnp.argmax(win, axis=-1)


def _pool_bwd(size, first, g):
  # Materialise the incoming cotangent: fused into this scatter, the producer (e.g. the next convolution's
  # im2col transpose, a sum of kh·kw padded slices) would be recomputed for every window element.
  g = jax.lax.optimization_barrier(g)
  onehot = jax.nn.one_hot(first, size[0] * size[1], dtype=g.dtype)
  return (_unwindows(onehot * g[..., None], size),)


_pool.defvjp(_pool_fwd, _pool_bwd)


def max_pool(x, size=(2, 2)):
  """Max pooling of ``x`` (``[N, H, W, C]``) over non-overlapping ``size`` windows (stride = size, no padding).

  Args:
    x: NHWC input; H and W must be multiples of the window.
    size: window ``(height, width)``.

  Returns:
    ``[N, H / size[0], W / size[1], C]``.
  """
  size = tuple(size)
  if x.ndim != 4 or x.shape[1] % size[0] or x.shape[2] % size[1]:
    raise ValueError(f"max_pool: expected NHWC inputs with H, W multiples of the window {size}, got {x.shape}")
  return _pool(x, size)
