"""Import AIHWKit 1.1.0 configurations: ``from_rpu_config(rpu_config)`` → the ``mrl_jax`` configuration.

``from_rpu_config`` accepts an AIHWKit ``rpu_config`` object (when AIHWKit is importable) or its plain-data
form (nested dicts, see ``to_plain`` and ``mrl_jax._rpu_plain``; JSON-able, readable without AIHWKit or torch)
and returns an ``AnalogConfig``: the device, the update parameters, the forward/backward I/O, the weight mapping
and the algorithm, with ``AnalogConfig.optimizer(learning_rate, key)`` giving the optax transformation of the
analog weights:

============================================================  ============================================
AIHWKit                                                       ``mrl_jax``
============================================================  ============================================
``SingleRPUConfig(device=<PulsedDevice>)``                    ``optim.analog_sgd(device, lr, update)``
``FloatingPointRPUConfig()``                                  ``optax.sgd`` (after ``optim.densify()``)
``UnitCellRPUConfig(device=TransferCompound(...))``           ``optim.transfer_compound(TransferCompound)``
``UnitCellRPUConfig(device=BufferedTransferCompound(...))``   the same with ``buffer=BufferSettings(...)``
``UnitCellRPUConfig(device=ChoppedTransferCompound(...))``    ``optim.chopped_transfer(ChoppedTransfer)``
``UnitCellRPUConfig(device=DynamicTransferCompound(...))``    ``optim.chopped_transfer(DynamicTransfer)``
``DigitalRankUpdateRPUConfig(MixedPrecisionCompound(...))``   ``optim.mixed_precision(MixedPrecision)``
============================================================  ============================================

Nothing is dropped silently: every field that ``mrl_jax`` cannot model and that differs from AIHWKit 1.1.0's
default (``mrl_jax._aihwkit_defaults``, recorded as data) is collected, and one ``UnsupportedRPUConfig`` error
lists them all with their paths and values. Fields that cannot be modelled but hold their defaults are fine.
Deliberate differences that hold even at the defaults (mixed precision's commit) are listed in
``AnalogConfig.approximations`` and must be accepted by name when building the optimizer, as with the reference
presets (``ReferencePreset.check_supported``). ``construction_seed`` values are recorded, not used: ``mrl_jax``
draws device parameters from the ``key`` given to the optimizer (``docs/reproducibility.md``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import optax

from mrl_jax import _checks as C
from mrl_jax import devices as _devices
from mrl_jax._aihwkit_defaults import AIHWKIT_VERSION, DEFAULTS
from mrl_jax._rpu_plain import CLASS_KEY, TYPE_KEY, to_plain
from mrl_jax.io import PERFECT_IO, BoundManagement, IOParameters, NoiseManagement, WeightNoiseType
from mrl_jax.optim.chopped import ChoppedTransfer, DynamicTransfer
from mrl_jax.optim.compound import BufferSettings, TransferCompound
from mrl_jax.optim.mixed_precision import MixedPrecision
from mrl_jax.optim.plateau import MNIST_RULE, PlateauRule
from mrl_jax.optim.presets import ALGORITHMS, Mapping, build_analog_optimizer
from mrl_jax.pulses import PulseType, UpdateParameters

__all__ = ("AnalogConfig", "UnsupportedRPUConfig", "from_rpu_config", "device_from_plain", "io_from_plain",
           "update_from_plain", "to_plain", "ALGORITHMS")


# AIHWKit device class → mrl_jax device class (AIHWKit's presets resolve through their bases).
_DEVICE_CLASSES = {cls.__name__: cls for cls in _devices.DEVICE_TYPES}
_TRANSFER_CLASSES = ("DynamicTransferCompound", "ChoppedTransferCompound", "BufferedTransferCompound",
                     "TransferCompound")
_RPU_CONFIG_CLASSES = ("SingleRPUConfig", "FloatingPointRPUConfig", "UnitCellRPUConfig",
                       "DigitalRankUpdateRPUConfig")
# AIHWKit enum class → mrl_jax enum (members share their names).
_ENUMS = {"PulseType": PulseType, "NoiseManagementType": NoiseManagement, "BoundManagementType": BoundManagement,
          "WeightNoiseType": WeightNoiseType}
# Fields that change nothing of the training arithmetic (statistics only).
_NO_EFFECT = {"count_pulses"}


class UnsupportedRPUConfig(ValueError):
  """An AIHWKit configuration with fields ``mrl_jax`` cannot model.

  Attributes:
    problems: ``(path, value, reason)`` for every such field, e.g.
      ``("device.units_in_mbatch", False, "...")``.
  """

  def __init__(self, problems):
    self.problems = tuple(problems)
    lines = "\n".join(f"  {path} = {value!r}: {reason}" for path, value, reason in self.problems)
    super().__init__(f"this AIHWKit {AIHWKIT_VERSION} configuration has {len(self.problems)} field(s) mrl_jax cannot "
                     f"model (path = value: why / what is allowed):\n{lines}")


# ---- the result ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AnalogConfig:
  """The ``mrl_jax`` form of one AIHWKit ``rpu_config``.

  Attributes:
    rpu_config_class: AIHWKit's class name (``"UnitCellRPUConfig"``, …).
    algorithm: the transformation of the analog weights, one of ``ALGORITHMS``.
    config: ``TransferCompound`` | ``ChoppedTransfer`` | ``DynamicTransfer`` | ``MixedPrecision`` | the
      ``PulsedDevice`` of analog SGD | None (floating point).
    update: the rpu_config's ``update`` (gradient write; the compounds also hold it as ``config.update``);
      None for floating point.
    forward_io, backward_io: I/O of the forward and backward MVM (``PERFECT_IO`` for floating point).
    mapping: AIHWKit's ``MappingParameter`` fields that ``mrl_jax`` models.
    construction_seeds: ``(path, seed)`` of every non-zero AIHWKit ``construction_seed`` (recorded only).
    approximations: ``(field, reason)`` of deliberate differences at these settings; ``optimizer`` refuses
      to build unless each is accepted by name in ``approximate``.
  """

  rpu_config_class: str
  algorithm: str
  config: Any
  update: Optional[UpdateParameters]
  forward_io: IOParameters
  backward_io: IOParameters
  mapping: Mapping
  construction_seeds: tuple = ()
  approximations: tuple = ()

  def __post_init__(self):
    C.choice("AnalogConfig", "algorithm", self.algorithm, ALGORITHMS)

  @property
  def device(self) -> Optional[_devices.PulsedDevice]:
    """The device that receives the gradient (a compound's fast tile); None for floating point."""
    cfg = self.config
    if cfg is None or isinstance(cfg, _devices.PulsedDevice):
      return cfg
    return cfg.device_of(0) if hasattr(cfg, "device_of") else cfg.device

  def layer_kwargs(self) -> dict:
    """Keyword arguments of the analog layers (``AnalogLinear``, ``AnalogConv2d``, ``LeNet5``, ``ResNet``)."""
    return dict(forward_io=self.forward_io, backward_io=self.backward_io,
                learn_out_scale=self.mapping.learn_out_scaling,
                weight_scaling_omega=self.mapping.weight_scaling_omega,
                weight_scaling_columnwise=self.mapping.weight_scaling_columnwise)

  def optimizer(self, learning_rate, key, *, engine: Optional[str] = None,
                approximate=()) -> optax.GradientTransformation:
    """The optax transformation of the analog weights (AIHWKit's ``AnalogSGD`` on these tiles).

    Args:
      learning_rate: SGD learning rate or optax schedule.
      key: PRNG key or int seed of the device parameters and of every pulse.
      engine: pulsed-update engine, ``auto`` | ``native`` | ``jnp`` (None: the config's, ``auto``).
      approximate: fields of ``approximations`` accepted to run without.

    Returns:
      ``optax.GradientTransformation``; combine it with the digital parameters' optimizer through
      ``mrl_jax.nn.analog_partition``.

    Raises:
      ValueError: ``approximate`` names a field that is not among ``approximations``.
      NotImplementedError: an approximation not accepted in ``approximate`` (names each and how to accept it).
    """
    approximate = tuple(approximate)
    known = tuple(f for f, _ in self.approximations)
    for field in approximate:
      if field not in known:
        raise ValueError(f"approximate = {field!r} is invalid: allowed is "
                         f"{', '.join(repr(f) for f in known) or 'nothing (this configuration is modelled)'}")
    missing = [(f, why) for f, why in self.approximations if f not in approximate]
    if missing:
      raise NotImplementedError(
          "mrl_jax models this configuration only approximately: " + "; ".join(f"{f} ({why})" for f, why in missing)
          + f". Accept it with approximate={tuple(f for f, _ in missing)!r}.")
    return build_analog_optimizer(self.algorithm, self.config, learning_rate, key=key, engine=engine,
                                  update=self.update)


# ---- reading the plain form --------------------------------------------------------------------------------------

def _class_entry(name: str):
  return DEFAULTS.get(name)


def _expand(value):
  """The plain form with every omitted field filled in from its class's defaults (recursively)."""
  if isinstance(value, dict) and CLASS_KEY in value:
    entry = _class_entry(value[CLASS_KEY])
    if entry is None:
      return value
    out = {CLASS_KEY: value[CLASS_KEY]}
    for name, default in entry["fields"].items():
      given = value.get(name, default)
      if isinstance(given, dict) and CLASS_KEY not in given and TYPE_KEY not in given \
          and isinstance(default, dict) and CLASS_KEY in default:
        given = {**given, CLASS_KEY: default[CLASS_KEY]}  # a nested dict without a class: the default's class
      out[name] = _expand(given)
    for name in value:  # unknown fields stay, so that they are reported
      if name not in out:
        out[name] = value[name]
    return out
  if isinstance(value, list):
    return [_expand(v) for v in value]
  return value


def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or (type(a) is type(b) and a == b)
  return a == b


def _differences(value, default, path: str):
  """``(path, value)`` of every leaf where ``value`` differs from ``default`` (both expanded)."""
  if isinstance(value, dict) and isinstance(default, dict) and value.get(CLASS_KEY) == default.get(CLASS_KEY):
    out = []
    for k in value:
      if k == CLASS_KEY:
        continue
      out += _differences(value[k], default.get(k, _MISSING), f"{path}.{k}")
    return out
  if isinstance(value, dict) and isinstance(default, dict) and CLASS_KEY in value and CLASS_KEY in default:
    return [(f"{path}.{CLASS_KEY}", value[CLASS_KEY])]  # another class: its name says more than its fields
  if isinstance(value, list) and isinstance(default, list) and len(value) == len(default):
    out = []
    for i, (v, d) in enumerate(zip(value, default)):
      out += _differences(v, d, f"{path}[{i}]")
    return out
  if isinstance(value, (dict, list)) or isinstance(default, (dict, list)):
    return [] if value == default else [(path, value)]
  return [] if _same(value, default) else [(path, value)]


_MISSING = object()


class _Node:
  """One dataclass of the plain form: reads fields, and at ``close`` reports unread ones that differ."""

  def __init__(self, plain: dict, path: str, problems: list):
    self.cls = plain[CLASS_KEY]
    self.path = path
    self.problems = problems
    self.values = plain
    entry = _class_entry(self.cls)
    self.defaults = _expand({CLASS_KEY: self.cls})
    self.mro = tuple(entry["mro"]) if entry else (self.cls,)
    self.read = {CLASS_KEY}

  def is_a(self, name: str) -> bool:
    return name in self.mro

  def kind(self, names) -> Optional[str]:
    """The first of ``names`` in this class's MRO (own class first)."""
    for base in self.mro:
      if base in names:
        return base
    return None

  def get(self, name: str):
    self.read.add(name)
    return self.values[name]

  def child(self, name: str) -> Optional["_Node"]:
    value = self.get(name)
    if not (isinstance(value, dict) and CLASS_KEY in value):
      self.problem(name, value, "expected a configuration object (a dict with '__class__')")
      return None
    if _class_entry(value[CLASS_KEY]) is None:
      self.problem(name, value[CLASS_KEY], "unknown AIHWKit 1.1.0 class")
      return None
    return _Node(value, f"{self.path}.{name}", self.problems)

  def problem(self, name: str, value, reason: str) -> None:
    self.problems.append((f"{self.path}.{name}" if name else self.path, value, reason))

  def require(self, name: str, allowed, reason: str):
    """Reads ``name``; reports it unless its value is one of ``allowed``. Returns the value."""
    value = self.get(name)
    if not any(_same(value, a) for a in allowed):
      self.problem(name, value, reason)
    return value

  def note_seed(self, seeds: list) -> None:
    if "construction_seed" in self.values:
      seed = self.get("construction_seed")
      if seed:
        seeds.append((f"{self.path}.construction_seed", seed))

  def close(self) -> None:
    """Reports every unread field that differs from this class's AIHWKit default."""
    for name, value in self.values.items():
      if name in self.read:
        continue
      if name not in self.defaults:
        self.problem(name, value, f"not a field of AIHWKit {AIHWKIT_VERSION}'s {self.cls}")
        continue
      if name in _NO_EFFECT:
        continue
      for path, v in _differences(value, self.defaults[name], f"{self.path}.{name}"):
        self.problems.append((path, v, "not modelled by mrl_jax (allowed: AIHWKit's default "
                              f"{_default_at(self.defaults, self.path, path)!r})"))


def _default_at(defaults: dict, base: str, path: str):
  """The default value at ``path`` (below the node at ``base``), for the error message."""
  rest = path[len(base) + 1:]
  value = defaults
  for part in rest.replace("[", ".[").split("."):
    if part.startswith("["):
      idx = int(part[1:-1])
      value = value[idx] if isinstance(value, list) and idx < len(value) else None
    else:
      value = value.get(part) if isinstance(value, dict) else None
  return value


def _enum(node: _Node, name: str, target):
  value = node.get(name)
  allowed = ", ".join(f"'{cls}.{m.name}'" for cls, e in _ENUMS.items() if e is target for m in e)
  if isinstance(value, str) and "." in value:
    cls, member = value.split(".", 1)
    if _ENUMS.get(cls) is target and member in target.__members__:
      return target[member]
  node.problem(name, value, f"not modelled by mrl_jax: allowed is one of {allowed}")
  return None


def _build(node: _Node, factory, kwargs: dict, what: str):
  """``factory(**kwargs)``, reporting mrl_jax's own validation error as a problem of ``node``."""
  try:
    return factory(**kwargs)
  except (ValueError, TypeError) as err:
    node.problem("", what, f"mrl_jax refuses it: {err}")
    return None


# ---- the parts ---------------------------------------------------------------------------------------------------

def _device(node: _Node, seeds: list):
  kind = node.kind(tuple(_DEVICE_CLASSES))
  if kind is None:
    node.problem("", node.cls, "not a device mrl_jax models: allowed are "
                 + ", ".join(sorted(_DEVICE_CLASSES)) + " and AIHWKit's presets derived from them")
    return None
  cls = _DEVICE_CLASSES[kind]
  node.note_seed(seeds)
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name in node.values and f.name in node.defaults:
      value = node.get(f.name)
      kwargs[f.name] = tuple(value) if isinstance(value, list) else value
  node.close()
  return _build(node, cls, kwargs, node.cls)


def _io(node: _Node):
  kwargs = {}
  for f in dataclasses.fields(IOParameters):
    if f.name not in node.values:
      continue
    if f.name in ("noise_management", "bound_management", "w_noise_type"):
      kwargs[f.name] = _enum(node, f.name, type(getattr(IOParameters(), f.name)))
    else:
      kwargs[f.name] = node.get(f.name)
  node.close()
  if any(v is None for v in kwargs.values()):
    return None
  return _build(node, IOParameters, kwargs, node.cls)


def _update(node: _Node):
  kwargs = {}
  for f in dataclasses.fields(UpdateParameters):
    if f.name not in node.values:
      continue  # aggregate_pulses: mrl_jax only (AIHWKit's CUDA form); left at False (AIHWKit's CPU)
    kwargs[f.name] = _enum(node, f.name, PulseType) if f.name == "pulse_type" else node.get(f.name)
  node.close()
  if kwargs.get("pulse_type", PulseType.STOCHASTIC_COMPRESSED) is None:
    return None
  return _build(node, UpdateParameters, kwargs, node.cls)


def _mapping(node: _Node):
  kwargs = {f.name: node.get(f.name) for f in dataclasses.fields(Mapping) if f.name in node.values}
  # mrl_jax programs one tile per layer: AIHWKit's 0 (no split) is exactly that; its default 512 splits only
  # linear layers wider than 512 (docs/from-aihwkit.md), other sizes are reported.
  for name in ("max_input_size", "max_output_size"):
    node.require(name, (0, 512), "mrl_jax keeps one tile per layer: allowed is 0 (no split) or AIHWKit's default "
                 "512 (split only by AIHWKit, for layers wider than 512)")
  node.close()
  mapping = _build(node, Mapping, kwargs, node.cls)
  if mapping is not None:
    for field, reason in mapping.unsupported():
      node.problems.append((f"{node.path}.{field.split('.', 1)[1]}", getattr(mapping, field.split(".", 1)[1]),
                            reason))
  return mapping


_EXPECTED = {"_io": "IOParameters", "_update": "UpdateParameters", "_mapping": "MappingParameter"}


def _child(parent: _Node, name: str, reader, *args):
  node = parent.child(name)
  if node is None:
    return None
  expected = _EXPECTED.get(reader.__name__)
  if expected and not node.is_a(expected):
    parent.problem(name, node.cls, f"allowed is an AIHWKit {expected} (or a subclass)")
    return None
  return reader(node, *args)


def _same_device_specs(nodes) -> bool:
  plain = [dict(n.values) for n in nodes]
  for p in plain:
    p.pop("construction_seed", None)
  return all(p == plain[0] for p in plain)


def _compound_devices(node: _Node, seeds: list, exactly_two: bool):
  """``(device, fast_device, K)`` from ``unit_cell_devices``: tile 0 may differ, AIHWKit 1.1.0 replicates
  ``unit_cell_devices[1]`` onto every further tile (``TransferCompound.as_bindings``)."""
  devices = node.get("unit_cell_devices")
  K = len(devices) if isinstance(devices, list) else 0
  if K < 2 or (exactly_two and K != 2):
    node.problem("unit_cell_devices", f"{K} device(s)", "allowed is exactly 2 devices" if exactly_two else
                 "allowed is 2 or more devices")
    return None, None, K
  nodes = []
  for k, dev in enumerate(devices):
    if not (isinstance(dev, dict) and CLASS_KEY in dev and _class_entry(dev[CLASS_KEY])):
      node.problem(f"unit_cell_devices[{k}]", dev, "expected an AIHWKit device (a dict with '__class__')")
      return None, None, K
    nodes.append(_Node(dev, f"{node.path}.unit_cell_devices[{k}]", node.problems))
  for k in range(2, K):
    spec_k, spec_1 = (dict(n.values, construction_seed=0) for n in (nodes[k], nodes[1]))
    base = f"{node.path}.unit_cell_devices[{k}]"
    for path, value in _differences(spec_k, spec_1, base):
      node.problems.append((path, value, "per-tile devices are not modelled (AIHWKit 1.1.0 itself replicates "
                            "unit_cell_devices[1] onto every tile after the first and ignores this one): allowed is "
                            f"unit_cell_devices[1]'s value {_default_at(spec_1, base, path)!r}"))
  for n in nodes[2:]:
    n.note_seed(seeds)
  slow = _device(nodes[1], seeds)
  if _same_device_specs(nodes[:2]):
    nodes[0].note_seed(seeds)  # the same spec as tile 1: no separate fast device
    return slow, None, K
  fast = _device(nodes[0], seeds)
  if fast is None:
    return None, None, K
  return slow, fast, K


def _transfer_compound(node: _Node, update, seeds: list, warm_start: str, plateau: PlateauRule):
  node.note_seed(seeds)
  device, fast, K = _compound_devices(node, seeds, exactly_two=False)
  gamma = node.get("gamma")
  gamma_vec = node.get("gamma_vec") or None
  # AIHWKit 1.1.0 returns from the top tile's self transfer before reading (measured in
  # tests/fixtures/make_row_period_fixtures.py, case k3_rows_vec): no_self_transfer changes nothing.
  node.get("no_self_transfer")
  te_vec = node.get("transfer_every_vec")
  transfer_every = tuple(te_vec) if te_vec else node.get("transfer_every")
  lr = node.get("transfer_lr")  # read even when the vector is given (AIHWKit then ignores it)
  lr_vec = node.get("transfer_lr_vec") or lr
  if node.is_a("BufferedTransferCompound"):
    node.require("with_reset_prob", (0.0, 0), "AIHWKit's buffered compound ignores it (BufferedTransferRPUDevice::"
                 "readAndUpdate): allowed is 0")
  with_reset_prob = node.get("with_reset_prob")
  transfer_io = _child(node, "transfer_forward", _io)
  transfer_update = _child(node, "transfer_update", _update)
  buffer = None
  if node.is_a("BufferedTransferCompound"):
    buffer = _build(node, BufferSettings, dict(thres_scale=node.get("thres_scale"), step=node.get("step"),
                                               momentum=node.get("momentum"),
                                               forget_buffer=node.get("forget_buffer")), "buffer")
  kwargs = dict(n_reads_per_transfer=node.get("n_reads_per_transfer"), transfer_columns=node.get("transfer_columns"),
                fast_lr=node.get("fast_lr"), scale_transfer_lr=node.get("scale_transfer_lr"),
                units_in_mbatch=node.get("units_in_mbatch"), random_selection=node.get("random_selection"),
                with_reset_prob=0.0 if buffer is not None else with_reset_prob)
  node.close()
  if None in (device, transfer_io, transfer_update, update) or (node.is_a("BufferedTransferCompound") and
                                                                 buffer is None):
    return None
  try:
    gamma_vec = None if gamma_vec is None else tuple(float(g) for g in gamma_vec)
    return TransferCompound(device=device, fast_device=fast, n_tiles=K, gamma=float(gamma), gamma_vec=gamma_vec,
                            transfer_every=transfer_every, transfer_lr=lr_vec, update=update,
                            transfer_update=transfer_update, transfer_io=transfer_io, buffer=buffer,
                            warm_start=warm_start, plateau=plateau, **kwargs)
  except (ValueError, TypeError) as err:
    node.problem("", node.cls, f"mrl_jax refuses it: {err}")
    return None


_CHOPPED_FIELDS = ("in_chop_prob", "in_chop_random", "out_chop_prob", "buffer_granularity", "auto_granularity",
                   "step", "momentum", "forget_buffer", "no_buffer", "units_in_mbatch", "transfer_every",
                   "auto_scale", "auto_momentum", "correct_gradient_magnitudes", "fast_lr", "transfer_lr",
                   "scale_transfer_lr")
_DYNAMIC_FIELDS = ("tail_weightening", "buffer_cap", "experimental_correct_accumulation")


def _chopped(node: _Node, update, seeds: list):
  node.note_seed(seeds)
  device, fast, _ = _compound_devices(node, seeds, exactly_two=True)
  dynamic = node.is_a("DynamicTransferCompound")
  node.require("gamma", (0.0, 0), "AIHWKit 1.1.0's chopped compounds are fully hidden: allowed is 0")
  node.require("gamma_vec", ([],), "allowed is [] (fully hidden)")
  node.require("transfer_every_vec", ([],), "the chopped compounds use the scalar transfer_every: allowed is []")
  node.require("transfer_lr_vec", ([],), "the chopped compounds use the scalar transfer_lr: allowed is []")
  node.require("n_reads_per_transfer", (1,), "allowed is 1 (AIHWKit requires it)")
  node.require("transfer_columns", (True,), "mrl_jax's chopped compounds read columns: allowed is True")
  node.require("random_selection", (False,), "allowed is False (AIHWKit requires it)")
  node.require("with_reset_prob", (0.0, 0), "allowed is 0 (AIHWKit requires it)")
  node.require("no_self_transfer", (True,), "allowed is True")
  kwargs = {name: node.get(name) for name in _CHOPPED_FIELDS + (_DYNAMIC_FIELDS if dynamic else ())}
  transfer_io = _child(node, "transfer_forward", _io)
  transfer_update = _child(node, "transfer_update", _update)
  node.close()
  if None in (device, transfer_io, transfer_update, update):
    return None
  cls = DynamicTransfer if dynamic else ChoppedTransfer
  try:
    return cls(device=device, fast_device=fast, update=update, transfer_update=transfer_update,
               transfer_io=transfer_io, **kwargs)
  except (ValueError, TypeError) as err:
    node.problem("", node.cls, f"mrl_jax refuses it: {err}")
    return None


def _mixed_precision(node: _Node, update, seeds: list):
  if not node.is_a("MixedPrecisionCompound"):
    node.problem("", node.cls, "allowed is MixedPrecisionCompound")
    return None
  node.note_seed(seeds)
  dev_node = node.child("device")
  device = None
  if dev_node is not None:
    device = _device(dev_node, seeds)
  node.require("n_rows_per_transfer", (-1,), "mrl_jax commits every row: allowed is -1")
  node.require("random_row", (False,), "allowed is False")
  node.require("transfer_lr", (1.0, 1), "mrl_jax commits χ at rate 1: allowed is 1.0")
  bins = [node.require("n_x_bins", (0,), "input quantization is not modelled: allowed is 0"),
          node.require("n_d_bins", (0,), "gradient quantization is not modelled: allowed is 0")]
  if bins == [0, 0]:  # stochastic rounding of the bins only acts when there are bins
    node.get("stoc_round_x")
    node.get("stoc_round_d")
  granularity = node.get("granularity")
  transfer_every = node.get("transfer_every")
  node.close()
  if device is None:
    return None
  # AIHWKit's granularity is absolute (0: the device's); mrl_jax's is in units of the device's dw_min.
  rel = 1.0 if not granularity else granularity / device.dw_min
  if not granularity and device.granularity != device.dw_min:
    node.problem("granularity", granularity, f"AIHWKit then uses the device granularity {device.granularity}, which "
                 f"differs from its dw_min {device.dw_min}: allowed is an explicit granularity")
  # The commit is a pulse train with the rpu_config's update parameters, as AIHWKit's.
  fields = dict(device=device, granularity=rel, transfer_every=transfer_every)
  return _build(node, MixedPrecision, fields if update is None else {**fields, "update": update}, node.cls)


# ---- entry point ---------------------------------------------------------------------------------------------------

def _plain_of(rpu_config) -> dict:
  if isinstance(rpu_config, dict):
    return rpu_config
  if dataclasses.is_dataclass(rpu_config) and not isinstance(rpu_config, type):
    return to_plain(rpu_config)
  raise TypeError(f"from_rpu_config: rpu_config must be an AIHWKit rpu_config or its plain form (a dict), got "
                  f"{type(rpu_config).__name__}")


def from_rpu_config(rpu_config, *, warm_start: str = "none", plateau: PlateauRule = MNIST_RULE) -> AnalogConfig:
  """The ``mrl_jax`` configuration of an AIHWKit 1.1.0 ``rpu_config``.

  Args:
    rpu_config: an AIHWKit ``SingleRPUConfig`` | ``FloatingPointRPUConfig`` | ``UnitCellRPUConfig`` (device a
      ``TransferCompound``, ``BufferedTransferCompound``, ``ChoppedTransferCompound`` or
      ``DynamicTransferCompound``) | ``DigitalRankUpdateRPUConfig`` (device a ``MixedPrecisionCompound``), or its
      plain form (``to_plain(rpu_config)``, e.g. read back from JSON; omitted fields take AIHWKit's defaults).
    warm_start: the MRL warm start of a (buffered) transfer compound with 3 or more tiles (``none`` | ``direct`` |
      ``via_tile1`` | ``cuda_exact``; not an AIHWKit 1.1.0 field: the reference fork's ``set_flags``).
    plateau: the rule that triggers its switches (``MNIST_RULE`` or ``CIFAR_RULE`` as in the reference scripts).

  Returns:
    the ``AnalogConfig``; ``.optimizer(learning_rate, key)`` gives the optax transformation.

  Raises:
    UnsupportedRPUConfig: (a ``ValueError``) listing every field ``mrl_jax`` cannot model, with its path and value.
    TypeError: ``rpu_config`` is neither an AIHWKit configuration nor a dict.
  """
  C.choice("from_rpu_config", "warm_start", warm_start, ("none", "direct", "via_tile1", "cuda_exact"))
  plain = _expand(_plain_of(rpu_config))
  problems: list = []
  seeds: list = []
  cls = plain.get(CLASS_KEY)
  entry = _class_entry(cls) if isinstance(cls, str) else None
  kind = next((c for c in entry["mro"] if c in _RPU_CONFIG_CLASSES), None) if entry else None
  if kind is None:
    hint = "" if isinstance(cls, str) else " (the plain form names every class in '__class__': see to_plain)"
    raise UnsupportedRPUConfig([("rpu_config", cls, "allowed is one of " + ", ".join(_RPU_CONFIG_CLASSES)
                                 + " (or a subclass, e.g. AIHWKit's presets)" + hint)])
  root = _Node(plain, "rpu_config", problems)
  mapping = _child(root, "mapping", _mapping)
  approximations = ()
  if kind == "FloatingPointRPUConfig":
    # FloatingPointDevice: every field (diffusion, lifetime, drift) is left to close(): mrl_jax's FP is plain SGD.
    root.close()
    algorithm, config, update, fwd, bwd = "sgd", None, None, PERFECT_IO, PERFECT_IO
  else:
    fwd = _child(root, "forward", _io)
    bwd = _child(root, "backward", _io)
    update = _child(root, "update", _update)
    dev = root.child("device")
    config, algorithm = None, None
    if dev is not None:
      if kind == "SingleRPUConfig":
        algorithm, config = "analog_sgd", _device(dev, seeds)
      elif kind == "UnitCellRPUConfig":
        compound = dev.kind(_TRANSFER_CLASSES)
        if compound in ("ChoppedTransferCompound", "DynamicTransferCompound"):
          algorithm, config = "chopped_transfer", _chopped(dev, update, seeds)
        elif compound is not None:
          algorithm, config = "transfer_compound", _transfer_compound(dev, update, seeds, warm_start, plateau)
        else:
          dev.problem("", dev.cls, "allowed is one of " + ", ".join(reversed(_TRANSFER_CLASSES)))
      else:  # DigitalRankUpdateRPUConfig
        algorithm, config = "mixed_precision", _mixed_precision(dev, update, seeds)
    if kind != "UnitCellRPUConfig" and warm_start != "none":
      root.problem("", kind, f"warm_start = {warm_start!r} needs a UnitCellRPUConfig with a TransferCompound")
    root.close()
  if problems:
    raise UnsupportedRPUConfig(problems)
  return AnalogConfig(rpu_config_class=cls, algorithm=algorithm, config=config, update=update, forward_io=fwd,
                      backward_io=bwd, mapping=mapping, construction_seeds=tuple(seeds),
                      approximations=approximations)


# ---- single parts (devices, I/O, update parameters) ------------------------------------------------------------

def _part(obj, label: str, expected: Optional[str], reader):
  plain = _plain_of(obj)
  if CLASS_KEY not in plain and expected is not None:
    plain = {CLASS_KEY: expected, **plain}
  cls = plain.get(CLASS_KEY)
  if not isinstance(cls, str) or _class_entry(cls) is None:
    raise UnsupportedRPUConfig([(label, cls, f"unknown AIHWKit {AIHWKIT_VERSION} class")])
  problems: list = []
  node = _Node(_expand(plain), label, problems)
  if expected is not None and not node.is_a(expected):
    raise UnsupportedRPUConfig([(label, cls, f"allowed is an AIHWKit {expected} (or a subclass)")])
  value = reader(node)
  if problems:
    raise UnsupportedRPUConfig(problems)
  return value


def device_from_plain(device) -> _devices.PulsedDevice:
  """The ``mrl_jax`` device of one AIHWKit device (object or plain form, e.g. ``{"__class__":
  "SoftBoundsDevice", "dw_min": 0.5}``; omitted fields are AIHWKit's defaults).

  Raises:
    UnsupportedRPUConfig: listing every field ``mrl_jax`` cannot model (paths start with ``device``).
  """
  return _part(device, "device", None, lambda node: _device(node, []))


def io_from_plain(io) -> IOParameters:
  """``mrl_jax.io.IOParameters`` of an AIHWKit ``IOParameters`` (object or plain form; ``"__class__"`` may be
  omitted). Raises ``UnsupportedRPUConfig`` as ``from_rpu_config`` does."""
  return _part(io, "io", "IOParameters", _io)


def update_from_plain(update) -> UpdateParameters:
  """``mrl_jax.UpdateParameters`` of an AIHWKit ``UpdateParameters`` (object or plain form; ``"__class__"`` may be
  omitted). Raises ``UnsupportedRPUConfig`` as ``from_rpu_config`` does."""
  return _part(update, "update", "UpdateParameters", _update)
