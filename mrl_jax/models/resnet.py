"""The CIFAR-style ResNets of the MRL reference script (``CIFAR-Resnet.py``), partially analog.

BasicBlock ResNets on 32×32 NHWC images: a 3×3 stem (no max-pool), four stages of 64/128/256/512 channels with
strides 1/2/2/2, global average pooling and a linear classifier. Each of the six parts [stem, layer1, layer2,
layer3, layer4, fc] is digital (``nnx.Conv``/``nnx.Linear``) or analog (``AnalogConv2d``/``AnalogLinear``, one tile
per layer); BatchNorm is always digital. ``block_type=("D", "D", "D", "A", "A", "A")`` is the reference setting:
layer3, layer4 and fc analog.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mrl_jax.io import PERFECT_IO, IOParameters
from mrl_jax.nn import AnalogConv2d, AnalogLinear

RESNET18 = (2, 2, 2, 2)
RESNET34 = (3, 4, 6, 3)
REFERENCE_BLOCK_TYPE = ("D", "D", "D", "A", "A", "A")
PARTS = ("stem", "layer1", "layer2", "layer3", "layer4", "fc")
STAGE_STRIDES = (1, 2, 2, 2)

# torch's default initialisation (kaiming-uniform with a = √5): U(±1/√fan_in), as the analog layers use.
_torch_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def check_block_number(block_number: Sequence[int]) -> tuple:
  """``block_number`` as a tuple of four positive ints (blocks per stage), else a ValueError."""
  try:
    values = tuple(block_number)
  except TypeError:
    raise ValueError(f"ResNet.block_number = {block_number!r} is invalid: allowed is four ints >= 1, "
                     "e.g. (2, 2, 2, 2) for ResNet-18") from None
  if len(values) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
    raise ValueError(f"ResNet.block_number = {block_number!r} is invalid: allowed is four ints >= 1 (blocks of "
                     "layer1..layer4), e.g. (2, 2, 2, 2) for ResNet-18 or (3, 4, 6, 3) for ResNet-34")
  return values


def check_block_type(block_type: Sequence[str]) -> tuple:
  """``block_type`` as a tuple of six ``"D"``/``"A"`` entries ([stem, layer1..4, fc]), else a ValueError."""
  if isinstance(block_type, str):
    raise ValueError(f"ResNet.block_type = {block_type!r} is invalid: allowed is a sequence of six 'D'/'A' "
                     "entries, e.g. ('D', 'D', 'D', 'A', 'A', 'A')")
  values = tuple(block_type)
  if len(values) != len(PARTS) or not all(v in ("D", "A") for v in values):
    raise ValueError(f"ResNet.block_type = {block_type!r} is invalid: allowed is six entries, each 'D' (digital) "
                     f"or 'A' (analog), for [{', '.join(PARTS)}]")
  return values


class _LayerFactory:
  """Builds the convolutions/linear layer of one part, digital or analog, without bias for convolutions."""

  def __init__(self, analog: bool, *, forward_io: IOParameters, backward_io: IOParameters, learn_out_scale: bool,
               weight_scaling_omega: float, weight_scaling_columnwise: bool, rngs: nnx.Rngs):
    self.analog = analog
    self.analog_kw = dict(learn_out_scale=learn_out_scale, forward_io=forward_io, backward_io=backward_io,
                          weight_scaling_omega=weight_scaling_omega,
                          weight_scaling_columnwise=weight_scaling_columnwise, rngs=rngs)
    self.rngs = rngs

  def conv(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int):
    if self.analog:
      return AnalogConv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, use_bias=False,
                          **self.analog_kw)
    return nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride,
                    padding=((padding, padding), (padding, padding)), use_bias=False,
                    kernel_init=_torch_kernel_init, rngs=self.rngs)

  def linear(self, in_features: int, out_features: int):
    if self.analog:
      return AnalogLinear(in_features, out_features, use_bias=True, **self.analog_kw)
    return nnx.Linear(in_features, out_features, kernel_init=_torch_kernel_init,
                      bias_init=_torch_bias_init(in_features), rngs=self.rngs)


def _batch_norm(channels: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  # torch BatchNorm2d defaults: running-average momentum 0.1 (flax keeps 1 − 0.1 of the old value), eps 1e-5.
  return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)


class BasicBlock(nnx.Module):
  """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; shortcut = 1×1 conv (stride) + BN when the shape
  changes, else the identity."""

  def __init__(self, in_channels: int, channels: int, stride: int, layers: _LayerFactory, rngs: nnx.Rngs):
    self.conv1 = layers.conv(in_channels, channels, 3, stride, 1)
    self.bn1 = _batch_norm(channels, rngs)
    self.conv2 = layers.conv(channels, channels, 3, 1, 1)
    self.bn2 = _batch_norm(channels, rngs)
    if stride != 1 or in_channels != channels:
      self.shortcut_conv = layers.conv(in_channels, channels, 1, stride, 0)
      self.shortcut_bn = _batch_norm(channels, rngs)
    else:
      self.shortcut_conv = None
      self.shortcut_bn = None

  def __call__(self, x, use_running_average: bool | None = None):
    bn = dict(use_running_average=use_running_average)
    h = nnx.relu(self.bn1(self.conv1(x), **bn))
    h = self.bn2(self.conv2(h), **bn)
    skip = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x), **bn)
    return nnx.relu(h + skip)


class ResNet(nnx.Module):
  """CIFAR ResNet with BasicBlocks; ResNet-18 = ``block_number=(2, 2, 2, 2)``, ResNet-34 = ``(3, 4, 6, 3)``.

  Sub-modules: ``conv1``/``bn1`` (stem), ``layer1`` … ``layer4`` (``nnx.List`` of ``BasicBlock``), ``fc``. With
  ``block_type = D D D A A A`` the analog tiles of ResNet-18 are layer3 256×1152 (first conv), 256×2304, shortcut
  256×128; layer4 512×2304, 512×4608, shortcut 512×256; fc 10×512.

  BatchNorm follows the nnx convention: batch statistics (and running-average updates) in training mode,
  running averages after ``model.eval()`` (``model.train()`` switches back); ``__call__(x,
  use_running_average=...)`` overrides the mode for one call.

  Args:
    block_number: BasicBlocks per stage (four ints >= 1).
    block_type: six ``"D"``/``"A"`` entries for [stem, layer1, layer2, layer3, layer4, fc].
    rngs: ``nnx.Rngs`` (``params``; ``noise`` for noisy analog I/O).
    forward_io, backward_io: I/O of every analog layer (default perfect).
    learn_out_scale: a learned digital output scalar per analog layer (AIHWKit ``learn_out_scaling``, the
      reference setting).
    weight_scaling_omega, weight_scaling_columnwise: AIHWKit's weight mapping of every analog layer (ω = 0: none;
      the reference's TT-v2 uses ω = 0.3, TT-v3/TT-v4 ω = 0.6, columnwise), see ``mrl_jax.nn.map_weights``.
    num_classes: classifier outputs.
    width: channels of the first stage (64 in the reference; stages use width × 1, 2, 4, 8). Smaller values
      give quick CPU test models.
    in_channels: image channels.
  """

  def __init__(self, block_number: Sequence[int] = RESNET18, block_type: Sequence[str] = REFERENCE_BLOCK_TYPE, *,
               rngs: nnx.Rngs, forward_io: IOParameters = PERFECT_IO, backward_io: IOParameters = PERFECT_IO,
               learn_out_scale: bool = True, weight_scaling_omega: float = 0.0,
               weight_scaling_columnwise: bool = False, num_classes: int = 10, width: int = 64, in_channels: int = 3):
    self.block_number = check_block_number(block_number)
    self.block_type = check_block_type(block_type)
    for name, value in (("num_classes", num_classes), ("width", width), ("in_channels", in_channels)):
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ResNet.{name} = {value!r} is invalid: allowed range is an int >= 1")
    factories = [_LayerFactory(t == "A", forward_io=forward_io, backward_io=backward_io,
                               learn_out_scale=learn_out_scale, weight_scaling_omega=weight_scaling_omega,
                               weight_scaling_columnwise=weight_scaling_columnwise, rngs=rngs)
                 for t in self.block_type]
    self.conv1 = factories[0].conv(in_channels, width, 3, 1, 1)
    self.bn1 = _batch_norm(width, rngs)
    channels = width
    for i, (n_blocks, stride) in enumerate(zip(self.block_number, STAGE_STRIDES)):
      out = width * 2**i
      blocks = []
      for b in range(n_blocks):
        blocks.append(BasicBlock(channels, out, stride if b == 0 else 1, factories[i + 1], rngs))
        channels = out
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.fc = factories[5].linear(channels, num_classes)

  def __call__(self, x, use_running_average: bool | None = None):
    """``x``: ``float32[N, H, W, C]`` (normalized) → logits ``[N, num_classes]``."""
    if x.ndim != 4:
      raise ValueError(f"ResNet: expected NHWC images [N, H, W, C], got shape {x.shape}")
    h = nnx.relu(self.bn1(self.conv1(x), use_running_average=use_running_average))
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in stage:
        h = block(h, use_running_average=use_running_average)
    h = jnp.mean(h, axis=(1, 2))  # AvgPool(4) on the 4×4 maps of 32×32 inputs
    return self.fc(h)

  def analog_parts(self) -> tuple:
    """Names of the parts built from analog layers, e.g. ``("layer3", "layer4", "fc")``."""
    return tuple(p for p, t in zip(PARTS, self.block_type) if t == "A")


def resnet18(block_type: Sequence[str] = REFERENCE_BLOCK_TYPE, **kwargs) -> ResNet:
  """``ResNet(RESNET18, block_type, **kwargs)``."""
  return ResNet(RESNET18, block_type, **kwargs)


def resnet34(block_type: Sequence[str] = REFERENCE_BLOCK_TYPE, **kwargs) -> ResNet:
  """``ResNet(RESNET34, block_type, **kwargs)``."""
  return ResNet(RESNET34, block_type, **kwargs)
