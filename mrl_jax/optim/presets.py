"""Named configurations: the MRL reference scripts (``kdhhewuciedu/AIMC``) and fair baselines.

All baselines use the same limited-state device per state count,
``SoftBoundsDevice(±1, dw_min = 2/n_states)`` with AIHWKit's default spreads, and the same I/O, so
comparisons differ only in the algorithm (``mrl-algorithm.md`` §8.4).
"""

from __future__ import annotations

from mrl_jax.devices import PulsedDevice, limited_state_soft_bounds
from mrl_jax.io import PERFECT_IO, IOParameters
from mrl_jax.optim.chopped import ChoppedTransfer, DynamicTransfer
from mrl_jax.optim.compound import BufferSettings, TransferCompound
from mrl_jax.optim.mixed_precision import MixedPrecision
from mrl_jax.optim.plateau import CIFAR_RULE, MNIST_RULE
from mrl_jax.pulses import UpdateParameters


def geometric(first: float, ratio: float, n: int) -> tuple:
  """``(first·ratio^0, …, first·ratio^(n−1))``."""
  return tuple(first * ratio**k for k in range(n))


def mrl_rates(first: float, ratio: float, n: int) -> tuple:
  """Transfer rates growing towards the least significant tile: ``η_k = first·ratio^(n−1−k)``."""
  return tuple(first * ratio ** (n - 1 - k) for k in range(n))


def resl_mnist(n_states: float = 4, n_tiles: int = 7, gamma: float = 0.5, warm_start: str = "via_tile1",
               transfer_io: IOParameters = PERFECT_IO, device: PulsedDevice | None = None) -> TransferCompound:
  """MRL of the LeNet-5/MNIST reference: K = 7, T_k = 2·5^k mini-batches, η_k = 0.1·1.2^(K−1−k)
  (absolute), fast_lr 1, perfect transfer reads, MNIST plateau rule."""
  return TransferCompound(
      device=device or limited_state_soft_bounds(n_states), n_tiles=n_tiles, gamma=gamma,
      transfer_every=tuple(float(t) for t in geometric(2, 5, n_tiles)), transfer_lr=mrl_rates(0.1, 1.2, n_tiles),
      scale_transfer_lr=False, fast_lr=1.0, transfer_io=transfer_io, warm_start=warm_start, plateau=MNIST_RULE)


def resl_cifar(n_states: float = 4, n_tiles: int = 8, gamma: float = 0.5, warm_start: str = "via_tile1",
               transfer_io: IOParameters = IOParameters(), device: PulsedDevice | None = None) -> TransferCompound:
  """MRL of the ResNet/CIFAR-10 reference: K = 8, T_k = 3·2^k, η_k = 0.3·1.2^(K−1−k) × SGD lr, noisy
  transfer reads (AIHWKit default I/O), CIFAR plateau rule."""
  return TransferCompound(
      device=device or limited_state_soft_bounds(n_states), n_tiles=n_tiles, gamma=gamma,
      transfer_every=tuple(float(t) for t in geometric(3, 2, n_tiles)), transfer_lr=mrl_rates(0.3, 1.2, n_tiles),
      scale_transfer_lr=True, fast_lr=1.0, transfer_io=transfer_io, warm_start=warm_start, plateau=CIFAR_RULE)


def ttv1(n_states: float = 4, fast_lr: float = 0.1, transfer_every: int = 1, transfer_io: IOParameters = PERFECT_IO,
         device: PulsedDevice | None = None) -> TransferCompound:
  """TT-v1 (Tiki-Taka): 2 tiles, γ = 0 (only C visible), one column into C every mini-batch at
  ``transfer_lr = 1`` × SGD lr."""
  return TransferCompound(device=device or limited_state_soft_bounds(n_states), n_tiles=2, gamma=0.0,
                          transfer_every=(float(transfer_every), 0.0), transfer_lr=(1.0, 1.0), scale_transfer_lr=True,
                          fast_lr=fast_lr, transfer_io=transfer_io)


def ttv2(n_states: float = 4, fast_lr: float = 0.1, thres_scale: float = 1.0, transfer_io: IOParameters = PERFECT_IO,
         device: PulsedDevice | None = None) -> TransferCompound:
  """TT-v2 (buffered): the MNIST reference settings (gradient BL 10, transfer writes of ±1 pulse)."""
  return TransferCompound(device=device or limited_state_soft_bounds(n_states), n_tiles=2, gamma=0.0,
                          transfer_every=(1.0, 0.0), transfer_lr=(1.0, 1.0), scale_transfer_lr=True, fast_lr=fast_lr,
                          update=UpdateParameters(desired_bl=10),
                          transfer_update=UpdateParameters(desired_bl=1, update_management=False,
                                                           update_bl_management=False),
                          transfer_io=transfer_io, buffer=BufferSettings(thres_scale=thres_scale))


def ttv3(n_states: float = 4, fast_lr: float = 0.1, auto_granularity: float = 1000.0, in_chop_prob: float = 0.1,
         transfer_io: IOParameters = PERFECT_IO, device: PulsedDevice | None = None) -> ChoppedTransfer:
  """TT-v3 (chopped TT-v2, AIHWKit ``ChoppedTransferCompound``): the reference scripts' settings
  (fast_lr 0.1 with auto_scale, auto_granularity 1000, random input choppers with probability 0.1,
  no output choppers, one column every row)."""
  return ChoppedTransfer(device=device or limited_state_soft_bounds(n_states), fast_lr=fast_lr, auto_scale=True,
                         auto_granularity=auto_granularity, in_chop_prob=in_chop_prob, out_chop_prob=0.0,
                         transfer_every=1.0, transfer_io=transfer_io)


def ttv4(n_states: float = 4, fast_lr: float = 0.1, auto_granularity: float = 1000.0, in_chop_prob: float = 0.1,
         tail_weightening: float = 10.0, transfer_io: IOParameters = PERFECT_IO,
         device: PulsedDevice | None = None) -> DynamicTransfer:
  """TT-v4 (AGAD, AIHWKit ``DynamicTransferCompound``): TT-v3's settings plus tail_weightening 10
  (periodic choppers, AGAD's default)."""
  return DynamicTransfer(device=device or limited_state_soft_bounds(n_states), fast_lr=fast_lr, auto_scale=True,
                         auto_granularity=auto_granularity, in_chop_prob=in_chop_prob, out_chop_prob=0.0,
                         transfer_every=1.0, tail_weightening=tail_weightening, transfer_io=transfer_io)


def mixed_precision_preset(n_states: float = 4, device: PulsedDevice | None = None) -> MixedPrecision:
  """MP with AIHWKit's defaults (commit every step, threshold = dw_min)."""
  return MixedPrecision(device=device or limited_state_soft_bounds(n_states))
