"""Analog layers for flax nnx: ``AnalogLinear`` and ``AnalogConv2d``.

An analog layer holds its *visible* weights ``W̄`` (``float32[out, in]``, the tile layout of AIHWKit) in an
``AnalogWeight`` variable; the device state behind them (tiles, device parameters, counters) lives in
the analog optimizer's state (``mrl_jax.optim``). The forward pass runs the I/O-managed analog MVM; the
backward pass runs it transposed through the backward I/O. For training, ``mrl_jax.nn.tape`` records
each layer's input rows ``x`` and output gradients ``d``, which the analog optimizer turns into pulses.
Biases (and the optional learned output scale) are digital, as in AIHWKit's periphery.

Weight mapping (AIHWKit ``MappingParameter.weight_scaling_omega`` > 0): at construction every output row i is
programmed as ``W̄_i = W_i/α_i`` with ``α_i = max_j |W_ij| / ω`` (one α per tile unless columnwise), and the
layer keeps ``α`` as a fixed digital output scale (``MappingScale``): the forward pass returns ``α ⊙ (W̄ x)``
(AIHWKit ``post_forward``), the backward pass runs ``W̄ᵀ (α ⊙ g)`` (``pre_backward``), and the pulsed update
receives ``d = g/α`` (``pre_update``), so the logical weights ``α ⊙ W̄`` follow SGD.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mrl_jax import _checks as C
from mrl_jax import fmath
from mrl_jax.io import PERFECT_IO, IOParameters
from mrl_jax.nn import tape
from mrl_jax.tile import analog_matmul


class AnalogWeight(nnx.Param):
  """Visible weights ``W̄`` of an analog tile, ``float32[out, in]``.

  A distinct ``Variable`` type, so ``nnx.split``/``optax.partition`` can route analog and digital
  parameters to different algorithms (``nnx.Param`` filters still include it).
  """


class MappingScale(nnx.Variable):
  """Fixed digital output scales ``α`` of a weight mapping, ``float32[out]`` (columnwise) or ``float32[1]``.

  Not an ``nnx.Param``: no gradient, never trained (AIHWKit ``mapping_scales``, a buffer).
  """


def map_weights(weights, omega: float, columnwise: bool):
  """AIHWKit 1.1.0's ``apply_weight_scaling``: the programmed weights and the digital output scales.

  Args:
    weights: logical weights ``float32[out, in]``.
    omega: ``weight_scaling_omega`` > 0, where the largest |weight| lands (in device weight units).
    columnwise: one scale per output row (``weight_scaling_columnwise``) instead of one per tile.

  Returns:
    ``(W̄, α)``: ``W̄ = W/α`` row by row (``float32[out, in]``) and ``α = max|W|/ω`` (``float32[out]`` or
    ``float32[1]``); an all-zero row (or tile) keeps ``α = 1``, as AIHWKit does.
  """
  C.positive("map_weights", "omega", omega)
  C.boolean("map_weights", "columnwise", columnwise)
  w = jnp.asarray(weights, jnp.float32)
  w_max = jnp.max(jnp.abs(w), axis=1) if columnwise else jnp.max(jnp.abs(w)).reshape(1)
  # True divisions as torch does them: fenced divisors keep XLA from turning the division by a constant or by a
  # broadcast into a multiplication by its reciprocal (off by one ulp).
  alpha = w_max / fmath.fence_from(w_max)(jnp.full(w_max.shape, omega, jnp.float32))
  alpha = jnp.where(alpha == 0, jnp.float32(1), alpha)
  return w / fmath.fence_from(w)(jnp.broadcast_to(alpha[:, None], w.shape)), alpha


def _uniform(key, shape, bound):
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class _AnalogBase(nnx.Module):
  """Shared by the analog layers: weight, digital bias, output scale, I/O and the tape hook."""

  def _setup(self, out_features: int, fan_in: int, *, use_bias: bool, learn_out_scale: bool,
             forward_io: IOParameters, backward_io: IOParameters, weight_scaling_omega: float,
             weight_scaling_columnwise: bool, rngs: nnx.Rngs):
    owner = type(self).__name__
    for name, io in (("forward_io", forward_io), ("backward_io", backward_io)):
      if not isinstance(io, IOParameters):
        raise TypeError(f"{owner}.{name} must be IOParameters, got {type(io).__name__}")
    C.non_negative(owner, "weight_scaling_omega", weight_scaling_omega)
    C.boolean(owner, "weight_scaling_columnwise", weight_scaling_columnwise)
    # torch/AIHWKit default: kaiming-uniform with a = √5, i.e. U(±1/√fan_in), bias likewise.
    bound = 1.0 / math.sqrt(fan_in)
    w = _uniform(rngs.params(), (out_features, fan_in), bound)
    b = _uniform(rngs.params(), (out_features,), bound) if use_bias else None
    alpha = None
    if weight_scaling_omega > 0:
      # AIHWKit programs the tile at construction (set_weights with apply_weight_scaling); the digital bias
      # stays unscaled.
      w, alpha = map_weights(w, weight_scaling_omega, weight_scaling_columnwise)
    self.mapping_scale = MappingScale(alpha) if alpha is not None else None
    self.weight = AnalogWeight(w)
    self.bias = nnx.Param(b) if use_bias else None
    self.out_scale = nnx.Param(jnp.ones((), jnp.float32)) if learn_out_scale else None
    self.forward_io = forward_io
    self.backward_io = backward_io
    self.noise_rngs = rngs.fork() if not (forward_io.is_perfect and backward_io.is_perfect) else None
    self.tape_id = tape.new_id(type(self).__name__)

  def _mvm(self, rows):
    """``[n, in] → [n, out]``: the analog MVM of input rows, recorded on the active tape."""
    key = self.noise_rngs.noise() if self.noise_rngs is not None else jax.random.key(0)
    y = analog_matmul(self.weight[...], rows, key, self.forward_io, self.backward_io)
    if self.mapping_scale is None:
      return tape.record(self.tape_id, rows, y)
    alpha = self.mapping_scale[...].reshape(1, -1)
    # The tape's probe enters divided by α, so its gradient (the update's d) is g/α as AIHWKit's pre_update
    # divides it, while α ⊙ y carries the forward scale and, through autodiff, the backward's α ⊙ g.
    probe = tape.record(self.tape_id, rows, jnp.zeros_like(y))
    return y * alpha + probe / alpha

  def _finish(self, y):
    if self.out_scale is not None:
      y = y * self.out_scale[...]
    if self.bias is not None:
      y = y + self.bias[...]
    return y


class AnalogLinear(_AnalogBase):
  """``y = x W̄ᵀ (+ b)`` on an analog tile ``[out_features, in_features]``.

  Args:
    in_features, out_features: sizes.
    use_bias: digital bias (AIHWKit's default ``digital_bias=True``).
    learn_out_scale: a learned digital scalar on the output (AIHWKit ``learn_out_scaling``).
    forward_io, backward_io: I/O of the two passes (default perfect).
    weight_scaling_omega: AIHWKit's ``weight_scaling_omega`` (>= 0; 0: no mapping): the initial weights are
      programmed as ``W/α`` with a fixed digital output scale ``α = max|W|/ω`` (``map_weights``).
    weight_scaling_columnwise: one ``α`` per output row instead of one per tile (no effect while ω = 0).
    rngs: ``nnx.Rngs`` with ``params`` (and ``noise`` for noisy I/O).
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, learn_out_scale: bool = False,
               forward_io: IOParameters = PERFECT_IO, backward_io: IOParameters = PERFECT_IO,
               weight_scaling_omega: float = 0.0, weight_scaling_columnwise: bool = False, rngs: nnx.Rngs):
    C.integer("AnalogLinear", "in_features", in_features, 1)
    C.integer("AnalogLinear", "out_features", out_features, 1)
    self.in_features, self.out_features = in_features, out_features
    self._setup(out_features, in_features, use_bias=use_bias, learn_out_scale=learn_out_scale,
                forward_io=forward_io, backward_io=backward_io, weight_scaling_omega=weight_scaling_omega,
                weight_scaling_columnwise=weight_scaling_columnwise, rngs=rngs)

  def __call__(self, x):
    if x.shape[-1] != self.in_features:
      raise ValueError(f"AnalogLinear: expected inputs [..., {self.in_features}], got {x.shape}")
    lead = x.shape[:-1]
    y = self._mvm(x.reshape(-1, self.in_features).astype(jnp.float32))
    return self._finish(y.reshape(lead + (self.out_features,)))


def _pair(v, name) -> tuple:
  v = (v, v) if isinstance(v, int) else tuple(v)
  if len(v) != 2 or not all(isinstance(i, int) and i >= 1 for i in v):
    raise ValueError(f"AnalogConv2d.{name} = {v!r} is invalid: allowed range is an int >= 1 or a pair of them")
  return v


def _windows(shape, kernel, stride, dilation):
  """The ``kh·kw`` strided slices (index tuples) of a padded ``[N, H, W, C]`` input, row-major over the kernel."""
  (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
  h_out = (shape[1] - (kh - 1) * dh - 1) // sh + 1
  w_out = (shape[2] - (kw - 1) * dw - 1) // sw + 1
  return [(slice(None), slice(i * dh, i * dh + (h_out - 1) * sh + 1, sh),
           slice(j * dw, j * dw + (w_out - 1) * sw + 1, sw), slice(None)) for i in range(kh) for j in range(kw)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _im2col(x, kernel, stride, dilation):
  return jnp.stack([x[w] for w in _windows(x.shape, kernel, stride, dilation)], axis=-1)


def _im2col_fwd(x, kernel, stride, dilation):
  return _im2col(x, kernel, stride, dilation), x.shape


def _im2col_bwd(kernel, stride, dilation, shape, g):
  # The slices' cotangents added one after the other into one buffer (in-place updates). Autodiff's sum of
  # kh·kw padded copies was fused into the consumer (a max-pool's backward) and recomputed per window element.
  gx = jnp.zeros(shape, g.dtype)
  for k, w in enumerate(_windows(shape, kernel, stride, dilation)):
    gx = gx.at[w].add(g[..., k])
  return (gx,)


_im2col.defvjp(_im2col_fwd, _im2col_bwd)


class AnalogConv2d(_AnalogBase):
  """2-D convolution on an analog tile ``[out_channels, in_channels·kh·kw]`` via im2col (NHWC).

  Every output position is one row of the pulsed update (AIHWKit's CPU ``unfold`` path); the patch
  feature order is (channel, kh, kw) as in ``torch.nn.functional.unfold``.

  Args:
    in_channels, out_channels: channel counts.
    kernel_size, stride, dilation: ints or pairs.
    padding: int, pair, ``"SAME"`` or ``"VALID"``.
    Others as ``AnalogLinear``.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride=1, padding=0, dilation=1,
               use_bias: bool = True, learn_out_scale: bool = False, forward_io: IOParameters = PERFECT_IO,
               backward_io: IOParameters = PERFECT_IO, weight_scaling_omega: float = 0.0,
               weight_scaling_columnwise: bool = False, rngs: nnx.Rngs):
    C.integer("AnalogConv2d", "in_channels", in_channels, 1)
    C.integer("AnalogConv2d", "out_channels", out_channels, 1)
    self.kernel_size = _pair(kernel_size, "kernel_size")
    self.stride = _pair(stride, "stride")
    self.dilation = _pair(dilation, "dilation")
    if isinstance(padding, str):
      C.choice("AnalogConv2d", "padding", padding, ("SAME", "VALID"))
      self.padding = padding
    else:
      p = _pair(padding, "padding") if padding != 0 else (0, 0)
      self.padding = ((p[0], p[0]), (p[1], p[1]))
    self.in_channels, self.out_channels = in_channels, out_channels
    fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
    self._setup(out_channels, fan_in, use_bias=use_bias, learn_out_scale=learn_out_scale, forward_io=forward_io,
                backward_io=backward_io, weight_scaling_omega=weight_scaling_omega,
                weight_scaling_columnwise=weight_scaling_columnwise, rngs=rngs)

  def patches(self, x):
    """``[N, H, W, C] → [N, H', W', C·kh·kw]`` (channel-major features).

    Built from ``kh·kw`` strided slices (pure data movement); an identity-kernel convolution
    (``conv_general_dilated_patches``) costs ``C·kh·kw`` times more arithmetic on the CPU.
    """
    (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
    if isinstance(self.padding, str):
      pads = jax.lax.padtype_to_pads(x.shape[1:3], ((kh - 1) * dh + 1, (kw - 1) * dw + 1), (sh, sw), self.padding)
    else:
      pads = self.padding
    x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    p = _im2col(x, (kh, kw), (sh, sw), (dh, dw))  # [N, H', W', C, kh·kw]
    return p.reshape(p.shape[:3] + (-1,))

  def __call__(self, x):
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"AnalogConv2d: expected NHWC inputs [N, H, W, {self.in_channels}], got {x.shape}")
    p = self.patches(x.astype(jnp.float32))
    n, h, w, f = p.shape
    y = self._mvm(p.reshape(n * h * w, f))
    return self._finish(y.reshape(n, h, w, self.out_channels))


ANALOG_LAYERS: Sequence[type] = (AnalogLinear, AnalogConv2d)
