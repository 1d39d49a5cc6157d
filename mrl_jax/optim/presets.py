"""Named configurations: the MRL reference scripts (``kdhhewuciedu/AIMC``) and fair baselines.

Two families:

* **fair** presets (``mrl_mnist``, ``ttv1`` … ``mixed_precision_preset``): every baseline uses the same
  limited-state device per state count, ``SoftBoundsDevice(±1, dw_min = 2/n_states)`` with AIHWKit's default
  spreads, and the same I/O, so comparisons differ only in the algorithm (``docs/results.md``). They are
  the default of the study.
* **reference** presets (``lenet5_mnist_reference``, ``resnet_cifar10_reference``): what the reference scripts
  ``Mnist_LeNet5.py`` and ``CIFAR-Resnet.py`` configure for each setting, literally — device class and parameters,
  compound and update parameters, I/O per role, mapping, optimizer and schedule — as a frozen
  ``ReferencePreset``. Fields that ``mrl_jax`` cannot model yet are kept in the data and listed in
  ``ReferencePreset.unsupported``; building the optimizer then raises ``NotImplementedError`` naming them unless
  the caller accepts the approximation explicitly. ``docs/seed-parity.md`` cites the script line of every value.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Optional

import optax

from mrl_jax import _checks as C
from mrl_jax.devices import PulsedDevice, SoftBoundsDevice, SoftBoundsReferenceDevice, limited_state_soft_bounds
from mrl_jax.io import PERFECT_IO, BoundManagement, IOParameters, NoiseManagement
from mrl_jax.optim.chopped import TRANSFER_UPDATE, ChoppedTransfer, DynamicTransfer, chopped_transfer
from mrl_jax.optim.compound import BufferSettings, TransferCompound, transfer_compound
from mrl_jax.optim.dense import densify
from mrl_jax.optim.mixed_precision import MixedPrecision, mixed_precision
from mrl_jax.optim.plateau import CIFAR_RULE, MNIST_RULE
from mrl_jax.optim.sgd import analog_sgd
from mrl_jax.pulses import UpdateParameters


def geometric(first: float, ratio: float, n: int) -> tuple:
  """``(first·ratio^0, …, first·ratio^(n−1))``."""
  return tuple(first * ratio**k for k in range(n))


def mrl_rates(first: float, ratio: float, n: int) -> tuple:
  """Transfer rates growing towards the least significant tile: ``η_k = first·ratio^(n−1−k)``."""
  return tuple(first * ratio ** (n - 1 - k) for k in range(n))


# ---- fair presets -------------------------------------------------------------------------------------------

def mrl_mnist(n_states: float = 4, n_tiles: int = 7, gamma: float = 0.5, warm_start: str = "via_tile1",
              transfer_io: IOParameters = PERFECT_IO, device: PulsedDevice | None = None) -> TransferCompound:
  """MRL of the LeNet-5/MNIST reference: K = 7, T_k = 2·5^k mini-batches, η_k = 0.1·1.2^(K−1−k)
  (absolute), fast_lr 1, perfect transfer reads, MNIST plateau rule."""
  return TransferCompound(
      device=device or limited_state_soft_bounds(n_states), n_tiles=n_tiles, gamma=gamma,
      transfer_every=tuple(float(t) for t in geometric(2, 5, n_tiles)), transfer_lr=mrl_rates(0.1, 1.2, n_tiles),
      scale_transfer_lr=False, fast_lr=1.0, transfer_io=transfer_io, warm_start=warm_start, plateau=MNIST_RULE)


def mrl_cifar(n_states: float = 4, n_tiles: int = 8, gamma: float = 0.5, warm_start: str = "via_tile1",
              transfer_io: IOParameters = IOParameters(), device: PulsedDevice | None = None) -> TransferCompound:
  """MRL of the ResNet/CIFAR-10 reference: K = 8, T_k = 3·2^k, η_k = 0.3·1.2^(K−1−k) × SGD lr, noisy
  transfer reads (AIHWKit default I/O), CIFAR plateau rule."""
  return TransferCompound(
      device=device or limited_state_soft_bounds(n_states), n_tiles=n_tiles, gamma=gamma,
      transfer_every=tuple(float(t) for t in geometric(3, 2, n_tiles)), transfer_lr=mrl_rates(0.3, 1.2, n_tiles),
      scale_transfer_lr=True, fast_lr=1.0, transfer_io=transfer_io, warm_start=warm_start, plateau=CIFAR_RULE)


# The seed's names ("ResL", the method's name in its scripts); kept for code written against them.
resl_mnist = mrl_mnist
resl_cifar = mrl_cifar


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


CHOPPED_GRADIENT_UPDATE = UpdateParameters(desired_bl=5)
"""The gradient write of AIHWKit's ``build_config("ttv3" | "ttv4")``: ``up_parameters(desired_bl=5)``, UM and
UBLM on. With ``auto_scale`` the gradient rate is ``fast_lr·desired_bl·dw_A/(m_x·m_d)``, so BL 5 instead of 31
also scales the fast rate by 5/31."""


def ttv3(n_states: float = 4, fast_lr: float = 0.1, auto_granularity: float = 1000.0, in_chop_prob: float = 0.1,
         transfer_io: IOParameters = PERFECT_IO, device: PulsedDevice | None = None) -> ChoppedTransfer:
  """TT-v3 (chopped TT-v2, AIHWKit ``ChoppedTransferCompound``): the reference scripts' settings
  (``build_config("ttv3")``: gradient write BL 5 with UM/UBLM, fast_lr 0.1 with auto_scale; the scripts add
  auto_granularity 1000, random input choppers with probability 0.1, no output choppers; one column every row)."""
  return ChoppedTransfer(device=device or limited_state_soft_bounds(n_states), fast_lr=fast_lr, auto_scale=True,
                         auto_granularity=auto_granularity, in_chop_prob=in_chop_prob, out_chop_prob=0.0,
                         transfer_every=1.0, update=CHOPPED_GRADIENT_UPDATE, transfer_io=transfer_io)


def ttv4(n_states: float = 4, fast_lr: float = 0.1, auto_granularity: float = 1000.0, in_chop_prob: float = 0.1,
         tail_weightening: float = 10.0, transfer_io: IOParameters = PERFECT_IO,
         device: PulsedDevice | None = None) -> DynamicTransfer:
  """TT-v4 (AGAD, AIHWKit ``DynamicTransferCompound``): TT-v3's settings (gradient write BL 5) plus
  tail_weightening 10 (periodic choppers, AGAD's default)."""
  return DynamicTransfer(device=device or limited_state_soft_bounds(n_states), fast_lr=fast_lr, auto_scale=True,
                         auto_granularity=auto_granularity, in_chop_prob=in_chop_prob, out_chop_prob=0.0,
                         transfer_every=1.0, tail_weightening=tail_weightening, update=CHOPPED_GRADIENT_UPDATE,
                         transfer_io=transfer_io)


def mixed_precision_preset(n_states: float = 4, device: PulsedDevice | None = None) -> MixedPrecision:
  """MP with AIHWKit's defaults (commit every mini-batch through a BL-31 pulse train, threshold = dw_min)."""
  return MixedPrecision(device=device or limited_state_soft_bounds(n_states))


# ---- reference presets --------------------------------------------------------------------------------------

SETTINGS = ("MRL", "TTv1", "TTv2", "TTv3", "TTv4", "MP", "SGD", "FP")
"""``mrl_jax``'s setting names (those of the example scripts; the reference's ``ResL`` is accepted for ``MRL``)."""

REFERENCE_NAMES = {"MRL": "ResL", "TTv1": "TT-v1", "TTv2": "TT-v2", "TTv3": "TT-v3", "TTv4": "TT-v4", "MP": "mp",
                   "SGD": "Analog SGD", "FP": "FP SGD"}
"""``mrl_jax`` setting → the reference scripts' name (``--SETTING`` / ``--optimizer``)."""

ALGORITHMS = ("transfer_compound", "chopped_transfer", "mixed_precision", "analog_sgd", "sgd")


def canonical_setting(setting: str) -> str:
  """``mrl_jax``'s name of a setting given in either spelling (``"TT-v1"`` or ``"TTv1"``, ``"mp"`` or ``"MP"``).

  Raises:
    ValueError: naming the setting and the allowed names.
  """
  by_reference = {v: k for k, v in REFERENCE_NAMES.items()}
  if setting in REFERENCE_NAMES:
    return setting
  if setting in by_reference:
    return by_reference[setting]
  allowed = ", ".join(f"{k!r} ({v!r})" for k, v in REFERENCE_NAMES.items())
  raise ValueError(f"setting = {setting!r} is invalid: allowed is one of {allowed}")


@dataclasses.dataclass(frozen=True)
class Mapping:
  """AIHWKit ``MappingParameter`` fields that the reference scripts set (AIHWKit's defaults otherwise).

  Attributes:
    digital_bias: biases in digital (True: as ``mrl_jax``'s layers).
    weight_scaling_omega: if > 0, every output row i of a tile is programmed as ``W_i/α_i`` with
      ``α_i = max_j |W_ij| / ω`` (per row with ``weight_scaling_columnwise``, else one α per tile), and the
      digital periphery multiplies output i by the fixed ``α_i`` and divides the update's ``d_i`` by it (AIHWKit
      ``apply_weight_scaling``, ``post_forward``, ``pre_update``; ``mrl_jax.nn.map_weights`` and the layers'
      ``weight_scaling_omega``).
    weight_scaling_columnwise: one scale per output row rather than per tile (no effect while ω = 0).
    learn_out_scaling: a learned digital output scale, initialised to 1 (``mrl_jax``: ``learn_out_scale``).
    out_scaling_columnwise: one learned scale per output instead of one per layer (not modelled).
  """

  digital_bias: bool = True
  weight_scaling_omega: float = 0.0
  weight_scaling_columnwise: bool = False
  learn_out_scaling: bool = False
  out_scaling_columnwise: bool = False

  def __post_init__(self):
    C.check_fields(self, {"digital_bias": C.boolean, "weight_scaling_omega": C.non_negative,
                          "weight_scaling_columnwise": C.boolean, "learn_out_scaling": C.boolean,
                          "out_scaling_columnwise": C.boolean})

  def unsupported(self) -> tuple:
    """``(field, reason)`` pairs of the settings that have an effect ``mrl_jax`` cannot model."""
    out = []
    if self.learn_out_scaling and self.out_scaling_columnwise:
      out.append(("mapping.out_scaling_columnwise", "mrl_jax learns one output scale per layer"))
    if not self.digital_bias:
      out.append(("mapping.digital_bias", "mrl_jax keeps biases digital"))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ReferencePreset:
  """One setting of a reference script, as the script configures it (a frozen description).

  Attributes:
    script: ``"Mnist_LeNet5.py"`` or ``"CIFAR-Resnet.py"``.
    setting: ``mrl_jax``'s name (``SETTINGS``); ``reference_name`` is the script's.
    algorithm: which ``mrl_jax`` transformation runs the analog weights (``ALGORITHMS``).
    config: ``TransferCompound`` | ``ChoppedTransfer`` | ``DynamicTransfer`` | ``MixedPrecision`` | the
      ``PulsedDevice`` of analog SGD | None for floating point.
    update: pulse parameters of analog SGD's gradient write (the compounds carry their own).
    forward_io, backward_io: I/O of the forward and backward MVM (the transfer read is in ``config``).
    mapping: AIHWKit mapping fields.
    learning_rate: SGD learning rate of every parameter (analog and digital).
    momentum: SGD momentum (0: none, as AIHWKit's ``AnalogSGD`` in both scripts).
    lr_decay_every, lr_decay_factor: the learning rate is multiplied by ``lr_decay_factor`` every
      ``lr_decay_every`` epochs (``LambdaLR`` / ``StepLR``, stepped once per epoch).
    epochs, batch_size: the scripts' training length and mini-batch size.
    loss: ``"nll_log_softmax"`` (cross entropy) or ``"label_smoothing"`` (the CIFAR script's: true class
      0.9, every other class 0.1/(C − 1)).
    no_self_transfer: AIHWKit ``TransferCompound.no_self_transfer`` for 2-tile compounds (None otherwise);
      True zeroes the last tile's period (``mrl_jax``'s compounds never transfer from the last tile).
    construction_seed: AIHWKit's construction seed of the device parameters (compound; device); recorded
      only: ``mrl_jax`` draws them from its own PRNG key.
    unsupported: ``(field, reason)`` pairs ``mrl_jax`` cannot model; ``analog_optimizer`` refuses them unless
      approximated explicitly.
    notes: further facts about the setting (quirks of the reference, warm-start behaviour).
  """

  script: str
  setting: str
  algorithm: str
  config: Any
  forward_io: IOParameters
  backward_io: IOParameters
  mapping: Mapping
  learning_rate: float
  lr_decay_every: int
  lr_decay_factor: float
  epochs: int
  batch_size: int
  loss: str
  update: Optional[UpdateParameters] = None
  momentum: float = 0.0
  no_self_transfer: Optional[bool] = None
  construction_seed: Optional[tuple] = None
  unsupported: tuple = ()
  notes: tuple = ()

  def __post_init__(self):
    C.choice("ReferencePreset", "script", self.script, ("Mnist_LeNet5.py", "CIFAR-Resnet.py"))
    C.choice("ReferencePreset", "setting", self.setting, SETTINGS)
    C.choice("ReferencePreset", "algorithm", self.algorithm, ALGORITHMS)
    C.choice("ReferencePreset", "loss", self.loss, ("nll_log_softmax", "label_smoothing"))
    C.check_fields(self, {"learning_rate": C.positive, "momentum": lambda o, n, v: C.in_range(o, n, v, 0.0, 1.0),
                          "lr_decay_every": lambda o, n, v: C.integer(o, n, v, 1),
                          "lr_decay_factor": C.positive, "epochs": lambda o, n, v: C.integer(o, n, v, 1),
                          "batch_size": lambda o, n, v: C.integer(o, n, v, 1)})
    expected = {"transfer_compound": TransferCompound, "chopped_transfer": ChoppedTransfer,
                "mixed_precision": MixedPrecision, "analog_sgd": PulsedDevice, "sgd": type(None)}[self.algorithm]
    if not isinstance(self.config, expected):
      raise TypeError(f"ReferencePreset.config must be a {expected.__name__} for algorithm {self.algorithm!r}, "
                      f"got {type(self.config).__name__}")

  @property
  def reference_name(self) -> str:
    """The script's name of the setting."""
    return REFERENCE_NAMES[self.setting]

  @property
  def device(self) -> Optional[PulsedDevice]:
    """The device that receives the gradient (tile 0 of a compound); None for floating point."""
    cfg = self.config
    if cfg is None or isinstance(cfg, PulsedDevice):
      return cfg
    return cfg.device_of(0) if hasattr(cfg, "device_of") else cfg.device

  @property
  def n_states(self) -> Optional[float]:
    """States of the gradient device, ``(w_max − w_min)/dw_min`` (None for floating point)."""
    return None if self.device is None else self.device.n_states

  @property
  def learn_out_scale(self) -> bool:
    """Whether the analog layers carry a learned output scale (``mrl_jax`` layer argument)."""
    return self.mapping.learn_out_scaling

  def layer_kwargs(self) -> dict:
    """Keyword arguments of the analog layers (``AnalogLinear``/``AnalogConv2d``, ``LeNet5``, ``ResNet``): I/O
    per pass, learned output scale and the weight mapping."""
    return dict(forward_io=self.forward_io, backward_io=self.backward_io, learn_out_scale=self.learn_out_scale,
                weight_scaling_omega=self.mapping.weight_scaling_omega,
                weight_scaling_columnwise=self.mapping.weight_scaling_columnwise)

  def check_supported(self, approximate=()) -> None:
    """Raises unless every field of ``unsupported`` is listed in ``approximate``.

    Args:
      approximate: field names (as in ``unsupported``) the caller accepts to run without.

    Raises:
      ValueError: ``approximate`` names a field this preset does not have among its unsupported ones.
      NotImplementedError: naming each unsupported field, its reference value and how to accept it.
    """
    approximate = tuple(approximate)
    known = tuple(f for f, _ in self.unsupported)
    for field in approximate:
      if field not in known:
        allowed = ", ".join(repr(f) for f in known) or "nothing (every field of this preset is modelled)"
        raise ValueError(f"approximate = {field!r} is invalid for {self.script} {self.reference_name}: allowed is "
                         f"{allowed}")
    missing = [(f, why) for f, why in self.unsupported if f not in approximate]
    if missing:
      lines = "; ".join(f"{f} ({why})" for f, why in missing)
      raise NotImplementedError(
          f"{self.script} {self.reference_name}: mrl_jax cannot model {lines}. Accept running without it with "
          f"approximate={tuple(f for f, _ in missing)!r} (the run then differs from the reference in "
          f"{'this field' if len(missing) == 1 else 'these fields'}).")

  def learning_rate_schedule(self, steps_per_epoch: int, learning_rate: Optional[float] = None) -> optax.Schedule:
    """The scripts' per-epoch step decay as a schedule over optimizer steps.

    Args:
      steps_per_epoch: mini-batches per epoch.
      learning_rate: overrides ``self.learning_rate``.
    """
    C.integer("ReferencePreset.learning_rate_schedule", "steps_per_epoch", steps_per_epoch, 1)
    lr = self.learning_rate if learning_rate is None else learning_rate
    return optax.exponential_decay(lr, steps_per_epoch * self.lr_decay_every, self.lr_decay_factor, staircase=True)

  def analog_optimizer(self, learning_rate, *, key, engine: Optional[str] = None, approximate=()):
    """The optax transformation of the analog weights.

    Args:
      learning_rate: SGD learning rate or schedule (see ``learning_rate_schedule``).
      key: PRNG key or integer seed of the device parameters and pulses.
      engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (None: the configuration's).
      approximate: unsupported fields accepted to run without (see ``check_supported``).

    Raises:
      NotImplementedError: the preset holds a field ``mrl_jax`` cannot model and ``approximate`` omits it.
    """
    self.check_supported(approximate)
    return build_analog_optimizer(self.algorithm, self.config, learning_rate, key=key, engine=engine,
                                  update=self.update, digital=self.digital_optimizer(learning_rate))

  def digital_optimizer(self, learning_rate) -> optax.GradientTransformation:
    """SGD of the digital parameters (biases, learned output scales, batch norm; AIHWKit's ``AnalogSGD``)."""
    return optax.sgd(learning_rate, momentum=self.momentum or None)

  def describe(self) -> dict:
    """The full configuration as JSON-able data (for a run's ``meta.json``)."""
    return {"script": self.script, "setting": self.setting, "reference_name": self.reference_name,
            "n_states": self.n_states, "config_type": type(self.config).__name__,
            **{f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def build_analog_optimizer(algorithm: str, config, learning_rate, *, key, engine: Optional[str] = None,
                           update: Optional[UpdateParameters] = None,
                           digital: Optional[optax.GradientTransformation] = None) -> optax.GradientTransformation:
  """The optax transformation of the analog weights that ``algorithm`` (one of ``ALGORITHMS``) builds from ``config``.

  Args:
    algorithm: ``transfer_compound`` | ``chopped_transfer`` | ``mixed_precision`` | ``analog_sgd`` | ``sgd``.
    config: the algorithm's configuration (a ``PulsedDevice`` for analog SGD; unused for ``sgd``).
    learning_rate: SGD learning rate or schedule.
    key: PRNG key or integer seed of the device parameters and pulses.
    engine: pulsed-update engine (None: the configuration's).
    update: analog SGD's pulse parameters (None: AIHWKit's defaults).
    digital: what ``sgd`` (floating point) steps the dense weights with (default ``optax.sgd(learning_rate)``).
  """
  C.choice("build_analog_optimizer", "algorithm", algorithm, ALGORITHMS)
  if algorithm == "transfer_compound":
    return transfer_compound(config, learning_rate, key=key, engine=engine)
  if algorithm == "chopped_transfer":
    return chopped_transfer(config, learning_rate, key=key, engine=engine)
  if algorithm == "mixed_precision":
    return mixed_precision(config, learning_rate, key=key, engine=engine)
  if algorithm == "analog_sgd":
    return analog_sgd(config, learning_rate, update=update, key=key, engine=engine)
  return optax.chain(densify(), digital if digital is not None else optax.sgd(learning_rate))


def to_jsonable(value):
  """Dataclasses, enums and tuples as plain JSON values; dataclasses carry their class name."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    out = {"type": type(value).__name__}
    out.update({f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return out
  if isinstance(value, enum.Enum):
    return value.value
  if isinstance(value, (tuple, list)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


# AIHWKit defaults that the scripts use as they are.
AIHWKIT_IO = IOParameters()
"""``IOParameters()``: noisy (out_noise 0.06), 7-bit DAC, 9-bit ADC, noise and bound management."""
TRANSFER_READ_IO_TTV1 = IOParameters(noise_management=NoiseManagement.NONE, bound_management=BoundManagement.NONE)
"""``build_config``'s transfer read of TT-v1/TT-v3: AIHWKit's default I/O with noise and bound management off
(AIHWKit turns both off for every transfer read anyway)."""
AGAD_TRANSFER_UPDATE = UpdateParameters(desired_bl=1, update_management=True, update_bl_management=True)
"""``build_config("ttv4")``'s ``transfer_update``: BL 1 with UM and UBLM on (a commit of ±1 pulse fires with
probability 1 either way)."""


def _mnist_device() -> SoftBoundsReferenceDevice:
  """``get_device('Softbounds')`` of ``Mnist_LeNet5.py``: SoftBoundsReference, dw_min 0.2 on ±1 (10 states)."""
  return SoftBoundsReferenceDevice(dw_min=0.2, w_max=1.0, w_min=-1.0)


def _cifar_device() -> SoftBoundsReferenceDevice:
  """``get_RPU_device('Softbounds')`` of ``CIFAR-Resnet.py``: SoftBoundsReference, dw_min 0.5 on ±1 (4 states),
  no bound spread."""
  return SoftBoundsReferenceDevice(dw_min=0.5, w_max=1.0, w_min=-1.0, w_max_dtod=0.0, w_min_dtod=0.0)


WARM_START_2_TILE = ("set_flags on this 2-tile compound has no effect on the fork's CUDA path (transfer_every_vec[1] "
                     "= 0, so no warm-start hop and an empty cascade; rpucuda_transfer_device.cu:455-470); its CPU "
                     "build crashes at the first update (idx % 0, rpu_transfer_device.cpp:565): no warm start here")
ROWS_VS_BATCHES = ("AIHWKit counts transfer periods in rows (units_in_mbatch converts with the current batch size); "
                   "mrl_jax counts mini-batches: identical except after a short last batch")


def lenet5_mnist_reference(setting: str, *, tt2_dwmin: float = 0.1, tt2_wmax: float = 1.0,
                           warm_start: str = "cuda_exact") -> ReferencePreset:
  """A setting of ``Mnist_LeNet5.py`` (kdhhewuciedu/AIMC @ 58d05ed), literally.

  Args:
    setting: ``MRL``/``ResL``, ``TTv1``/``TT-v1``, ``TTv2``, ``TTv3``, ``TTv4``, ``MP``/``mp``, ``SGD``/``Analog SGD``,
      ``FP``/``FP SGD``.
    tt2_dwmin, tt2_wmax: the script's ``--dwmin`` (default 0.1, i.e. 20 states) and ``--Wmax`` (1), used by
      TT-v2 only.
    warm_start: MRL only: ``cuda_exact`` (the published ``--CUDA=0`` commands) or ``direct`` (the fork's CPU
      build).

  Returns:
    the frozen ``ReferencePreset``; ``docs/seed-parity.md`` cites the script line of every field.
  """
  s = canonical_setting(setting)
  C.positive("lenet5_mnist_reference", "tt2_dwmin", tt2_dwmin)
  C.positive("lenet5_mnist_reference", "tt2_wmax", tt2_wmax)
  C.choice("lenet5_mnist_reference", "warm_start", warm_start, ("cuda_exact", "direct"))
  common = dict(script="Mnist_LeNet5.py", setting=s, learning_rate=0.05, lr_decay_every=50, lr_decay_factor=0.1,
                epochs=200, batch_size=8, loss="nll_log_softmax")
  if s == "MRL":
    K = 7
    cfg = TransferCompound(
        device=SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=0.5), n_tiles=K, gamma=0.5,
        gamma_vec=tuple(0.5 ** (K - 1 - i) for i in range(K)),
        transfer_every=tuple(float(2 * 5**n) for n in range(K)),
        transfer_lr=tuple(0.1 if n == 0 else 0.1 * 1.2**n for n in range(K - 1, -1, -1)),
        scale_transfer_lr=False, fast_lr=1.0, n_reads_per_transfer=1, transfer_columns=True,
        update=UpdateParameters(), transfer_update=UpdateParameters(), transfer_io=PERFECT_IO,
        warm_start=warm_start, plateau=MNIST_RULE)
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=PERFECT_IO, backward_io=PERFECT_IO,
                           mapping=Mapping(learn_out_scaling=False, weight_scaling_columnwise=True),
                           notes=(ROWS_VS_BATCHES,), **common)
  if s == "TTv1":
    cfg = TransferCompound(
        device=_mnist_device(), n_tiles=2, gamma=0.0, transfer_every=(1.0, 0.0), transfer_lr=(1.0, 1.0),
        scale_transfer_lr=True, fast_lr=0.1, n_reads_per_transfer=1, update=UpdateParameters(),
        transfer_update=UpdateParameters(), transfer_io=TRANSFER_READ_IO_TTV1)
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=AIHWKIT_IO, backward_io=AIHWKIT_IO,
                           mapping=Mapping(learn_out_scaling=True, weight_scaling_columnwise=True),
                           no_self_transfer=True, construction_seed=(123, 10), notes=(WARM_START_2_TILE,), **common)
  if s == "TTv2":
    dev = SoftBoundsDevice(w_min=-tt2_wmax, w_max=tt2_wmax, dw_min=tt2_dwmin)
    cfg = TransferCompound(
        device=dev, n_tiles=2, gamma=0.0, transfer_every=(1.0, 0.0), transfer_lr=(1.0, 1.0), scale_transfer_lr=True,
        fast_lr=0.1, n_reads_per_transfer=1, transfer_columns=True,
        update=UpdateParameters(desired_bl=10, update_bl_management=True, update_management=True),
        transfer_update=UpdateParameters(desired_bl=1, update_bl_management=False, update_management=False),
        transfer_io=PERFECT_IO, buffer=BufferSettings(thres_scale=tt2_wmax))
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=PERFECT_IO, backward_io=PERFECT_IO,
                           mapping=Mapping(learn_out_scaling=True, weight_scaling_columnwise=True),
                           no_self_transfer=True, notes=(WARM_START_2_TILE,), **common)
  if s in ("TTv3", "TTv4"):
    kind = dict(device=_mnist_device(), fast_lr=0.1, auto_scale=True, auto_granularity=1000.0, in_chop_prob=0.1,
                out_chop_prob=0.0, units_in_mbatch=False, transfer_every=1.0, update=UpdateParameters(desired_bl=5))
    if s == "TTv3":
      cfg = ChoppedTransfer(transfer_update=TRANSFER_UPDATE, transfer_io=TRANSFER_READ_IO_TTV1, **kind)
    else:
      cfg = DynamicTransfer(transfer_update=AGAD_TRANSFER_UPDATE, transfer_io=AIHWKIT_IO, tail_weightening=10.0, **kind)
    mapping = Mapping(learn_out_scaling=True, weight_scaling_columnwise=True, weight_scaling_omega=0.6)
    return ReferencePreset(algorithm="chopped_transfer", config=cfg, forward_io=AIHWKIT_IO, backward_io=AIHWKIT_IO,
                           mapping=mapping, construction_seed=(123, 10), unsupported=mapping.unsupported(), **common)
  if s == "MP":
    cfg = MixedPrecision(device=_mnist_device(), granularity=1.0, transfer_every=1, update=UpdateParameters())
    return ReferencePreset(algorithm="mixed_precision", config=cfg, forward_io=AIHWKIT_IO, backward_io=AIHWKIT_IO,
                           update=UpdateParameters(), mapping=Mapping(), construction_seed=(123,), **common)
  if s == "SGD":
    return ReferencePreset(algorithm="analog_sgd", config=_mnist_device(), update=UpdateParameters(),
                           forward_io=AIHWKIT_IO, backward_io=AIHWKIT_IO, mapping=Mapping(), construction_seed=(10,),
                           **common)
  return ReferencePreset(algorithm="sgd", config=None, forward_io=PERFECT_IO, backward_io=PERFECT_IO, mapping=Mapping(),
                         **common)


def resnet_cifar10_reference(setting: str, *, io_perfect: bool = True, self_transfer: bool = False,
                             warm_start: str = "cuda_exact") -> ReferencePreset:
  """A setting of ``CIFAR-Resnet.py`` (kdhhewuciedu/AIMC @ 58d05ed) with ``--RPU Softbounds`` (the default),
  literally.

  Args:
    setting: ``MRL``/``ResL``, ``TTv1``/``TT-v1``, ``TTv2``, ``TTv3``, ``TTv4``, ``MP``/``mp``, ``SGD``/``Analog SGD``,
      ``FP``/``FP SGD``.
    io_perfect: the script's ``--io-perfect`` (given in the published commands): perfect forward and backward
      I/O for every analog setting, and perfect transfer reads for the settings whose name starts with "TT"
      (MRL keeps AIHWKit's noisy transfer read). False: AIHWKit's default I/O everywhere.
    self_transfer: the script's ``-TTST`` (TT-v1 only): ``no_self_transfer = False``, not modelled (the fork's
      CUDA warm start then transfers C onto itself and, after a plateau, into A; ``docs/seed-parity.md``).
    warm_start: MRL only: ``cuda_exact`` (the published ``--CUDA=0`` commands) or ``direct`` (CPU build).

  Returns:
    the frozen ``ReferencePreset``; ``docs/seed-parity.md`` cites the script line of every field.
  """
  s = canonical_setting(setting)
  C.boolean("resnet_cifar10_reference", "io_perfect", io_perfect)
  C.boolean("resnet_cifar10_reference", "self_transfer", self_transfer)
  C.choice("resnet_cifar10_reference", "warm_start", warm_start, ("cuda_exact", "direct"))
  if self_transfer and s != "TTv1":
    raise ValueError(f"resnet_cifar10_reference.self_transfer = True is invalid for {s}: allowed only with TTv1")
  analog_lr = 0.2 / 2  # lr = 0.2, halved for analog settings
  common = dict(script="CIFAR-Resnet.py", setting=s, learning_rate=0.2 if s == "FP" else analog_lr, lr_decay_every=100,
                lr_decay_factor=0.1, epochs=200, batch_size=128, loss="label_smoothing")
  fb = PERFECT_IO if io_perfect else AIHWKIT_IO
  tt_read = lambda default: PERFECT_IO if io_perfect else default
  if s == "MRL":
    K = 8
    cfg = TransferCompound(
        device=SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=0.5), n_tiles=K, gamma=0.5,
        gamma_vec=tuple(0.5 ** (K - 1 - i) for i in range(K)),
        transfer_every=tuple(float(3 * 2**n) for n in range(K)),
        transfer_lr=tuple(0.3 * 1.2**n for n in reversed(range(K))),
        scale_transfer_lr=True, fast_lr=1.0, n_reads_per_transfer=1, transfer_columns=True,
        update=UpdateParameters(), transfer_update=UpdateParameters(), transfer_io=AIHWKIT_IO,
        warm_start=warm_start, plateau=CIFAR_RULE)
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=fb, backward_io=fb,
                           mapping=Mapping(learn_out_scaling=True, weight_scaling_columnwise=True),
                           notes=(ROWS_VS_BATCHES,), **common)
  if s == "TTv1":
    cfg = TransferCompound(
        device=_cifar_device(), n_tiles=2, gamma=0.0, transfer_every=(1.0, 0.0), transfer_lr=(1.0, 1.0),
        scale_transfer_lr=True, fast_lr=0.1, n_reads_per_transfer=1, update=UpdateParameters(),
        transfer_update=UpdateParameters(), transfer_io=tt_read(TRANSFER_READ_IO_TTV1))
    unsupported = (("no_self_transfer", "False (-TTST): tile 1 gets a period of out_features mini-batches; the "
                    "fork's CUDA warm start then transfers C onto itself (no self-transfer guard, "
                    "rpucuda_transfer_device.cu:242-264, 454-459) and, after the first plateau, C into A; mrl_jax "
                    "has no 2-tile cuda_exact warm start and no per-shape period (docs/seed-parity.md)"),) \
        if self_transfer else ()
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=fb, backward_io=fb,
                           mapping=Mapping(learn_out_scaling=True, weight_scaling_columnwise=True),
                           no_self_transfer=not self_transfer, construction_seed=(123,), unsupported=unsupported,
                           notes=(WARM_START_2_TILE,), **common)
  if s == "TTv2":
    cfg = TransferCompound(
        device=SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=0.5), n_tiles=2, gamma=0.0, transfer_every=(1.0, 0.0),
        transfer_lr=(1.0, 1.0), scale_transfer_lr=True, fast_lr=0.5, n_reads_per_transfer=1,
        update=UpdateParameters(),
        transfer_update=UpdateParameters(desired_bl=1, update_bl_management=False, update_management=False),
        transfer_io=tt_read(AIHWKIT_IO), buffer=BufferSettings(thres_scale=0.9))
    mapping = Mapping(learn_out_scaling=True, weight_scaling_columnwise=True, weight_scaling_omega=0.3)
    return ReferencePreset(algorithm="transfer_compound", config=cfg, forward_io=fb, backward_io=fb, mapping=mapping,
                           no_self_transfer=True, unsupported=mapping.unsupported(), notes=(WARM_START_2_TILE,),
                           **common)
  if s in ("TTv3", "TTv4"):
    kind = dict(device=_cifar_device(), fast_lr=0.1, auto_scale=True, auto_granularity=1000.0, in_chop_prob=0.1,
                out_chop_prob=0.0, units_in_mbatch=False, transfer_every=1.0, update=UpdateParameters(desired_bl=5))
    if s == "TTv3":
      cfg = ChoppedTransfer(transfer_update=TRANSFER_UPDATE, transfer_io=tt_read(TRANSFER_READ_IO_TTV1), **kind)
    else:
      cfg = DynamicTransfer(transfer_update=AGAD_TRANSFER_UPDATE, transfer_io=tt_read(AIHWKIT_IO),
                            tail_weightening=10.0, **kind)
    mapping = Mapping(learn_out_scaling=True, weight_scaling_columnwise=True, weight_scaling_omega=0.6)
    return ReferencePreset(algorithm="chopped_transfer", config=cfg, forward_io=fb, backward_io=fb, mapping=mapping,
                           construction_seed=(123,), unsupported=mapping.unsupported(), **common)
  if s == "MP":
    cfg = MixedPrecision(device=SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=0.5), granularity=1.0,
                         transfer_every=1, update=UpdateParameters())
    return ReferencePreset(algorithm="mixed_precision", config=cfg, forward_io=fb, backward_io=fb,
                           update=UpdateParameters(), mapping=Mapping(), **common)
  if s == "SGD":
    return ReferencePreset(algorithm="analog_sgd", config=_cifar_device(), update=UpdateParameters(), forward_io=fb,
                           backward_io=fb, mapping=Mapping(learn_out_scaling=True, weight_scaling_columnwise=True),
                           **common)
  return ReferencePreset(algorithm="sgd", config=None, forward_io=PERFECT_IO, backward_io=PERFECT_IO, mapping=Mapping(),
                         **common)
