"""Routing analog and digital parameters to their algorithms, and converting digital models."""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import optax
from flax import nnx

from mrl_jax.io import PERFECT_IO, IOParameters
from mrl_jax.nn.layers import AnalogConv2d, AnalogLinear, AnalogWeight


def analog_labels(params: nnx.State):
  """``"analog"`` for ``AnalogWeight`` variables, ``"digital"`` for every other parameter."""
  return jax.tree.map(lambda v: "analog" if isinstance(v, AnalogWeight) else "digital", params,
                      is_leaf=lambda v: isinstance(v, nnx.Variable))


def analog_partition(analog: optax.GradientTransformation, digital: optax.GradientTransformation,
                     params: nnx.State, skip_non_finite: bool = True) -> optax.GradientTransformationExtraArgs:
  """``optax.partition`` of a model's ``nnx.Param`` state: analog weights vs everything else.

  Args:
    analog: the analog algorithm (it skips non-finite updates per tile and counts them itself).
    digital: the transformation of the digital parameters (biases, scales, batch-norm parameters).
    params: the model's ``nnx.Param`` state (labels are derived from it).
    skip_non_finite: give the digital parameters the same policy as the tiles: a step whose digital
      gradients hold a NaN or inf leaves them unchanged (``optax.apply_if_finite``, which counts it).
  """
  if skip_non_finite:
    digital = optax.apply_if_finite(digital, max_consecutive_errors=_NEVER_GIVE_UP)
  return optax.partition({"analog": analog, "digital": digital}, analog_labels(params))


# optax.apply_if_finite applies updates again after this many consecutive bad steps; never do that.
_NEVER_GIVE_UP = 2**31 - 2


def convert_to_analog(model: nnx.Module, *, which: Callable[[tuple, nnx.Module], bool] | None = None,
                      forward_io: IOParameters = PERFECT_IO, backward_io: IOParameters = PERFECT_IO,
                      learn_out_scale: bool = False, rngs: nnx.Rngs | None = None) -> nnx.Module:
  """Replaces ``nnx.Linear``/``nnx.Conv`` sub-modules (chosen by ``which(path, module)``) with analog
  layers carrying the same weights (``kernel`` transposed to the tile layout ``[out, in]``)."""
  import jax.numpy as jnp

  rngs = rngs or nnx.Rngs(0)
  which = which or (lambda path, m: True)
  for path, module in list(nnx.iter_modules(model)):
    if not path or not which(path, module):
      continue
    parent = model
    for p in path[:-1]:
      parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    if isinstance(module, nnx.Linear):
      new = AnalogLinear(module.in_features, module.out_features, use_bias=module.bias is not None,
                         learn_out_scale=learn_out_scale, forward_io=forward_io, backward_io=backward_io, rngs=rngs)
      new.weight[...] = module.kernel[...].T
    elif isinstance(module, nnx.Conv) and len(module.kernel_size) == 2:
      kh, kw = module.kernel_size
      new = AnalogConv2d(module.in_features, module.out_features, (kh, kw), stride=module.strides,
                         padding=module.padding if isinstance(module.padding, str) else 0,
                         use_bias=module.bias is not None, learn_out_scale=learn_out_scale,
                         forward_io=forward_io, backward_io=backward_io, rngs=rngs)
      # HWIO → [O, I·kh·kw] in (channel, kh, kw) order
      new.weight[...] = jnp.transpose(module.kernel[...], (3, 2, 0, 1)).reshape(module.out_features, -1)
    else:
      continue
    if module.bias is not None:
      new.bias[...] = module.bias[...]
    last = path[-1]
    if isinstance(last, int):
      parent[last] = new
    else:
      setattr(parent, last, new)
  return model
