"""Registration and ``ffi_call`` wrappers of the native (C++/CUDA) XLA FFI kernels.

The extension modules ``_mrl_cpu`` and (optionally) ``_mrl_cuda`` expose their handlers as PyCapsules;
this module registers them under the same target names for ``"cpu"`` and ``"CUDA"``, so the call below
is platform-agnostic. The CPU handler's hot loops exist once per x86-64 ISA level; ``set_cpu_variant``
(or ``$MRL_CPU_VARIANT``) forces one, e.g. to check that every level computes the same bits. Device and update
configs become named attributes of the call (``kernel_attrs``; their C++ twins are ``MRL_DEVICE_ATTRS`` and
``MRL_UPDATE_ATTRS`` in ``xla_ops/include/mrl_ops/``); everything that varies per seed or step (weights,
parameters, inputs, lr, key) is an operand, so ``vmap`` batches it into one kernel call.
"""

from __future__ import annotations

import contextlib
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from mrl_jax import devices as D
from mrl_jax import rng
from mrl_jax.pulses import PulseType, UpdateParameters, sums_pulses

TARGET_PULSED_UPDATE = "mrl_pulsed_update"
ROW_HEADER = 3
MAX_PIECEWISE = 64  # kMaxPiecewise in xla_ops/include/mrl_ops/devices.h

CPU_VARIANTS = ("baseline", "x86-64-v3", "x86-64-v4")
"""ISA variants of the CPU kernel, in order (index = ``CpuVariant`` in ``xla_ops/cpu/row_kernels.h``)."""
ENV_CPU_VARIANT = "MRL_CPU_VARIANT"
# The CPU flags each level adds to the one below (GCC's x86-64 micro-architecture levels; x86-64-v2's
# SSE4/POPCNT are implied by v3's AVX2 on every real CPU).
_LEVEL_FLAGS = {
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}

_import_error: str | None = None
_forced_variant = "auto"  # what set_cpu_variant was last given
_registered_platforms: list[str] = []

try:
  from mrl_jax import _mrl_cpu  # type: ignore[attr-defined]
except ImportError as err:  # the package still works on the jnp engine
  _mrl_cpu = None
  _import_error = str(err)

if _mrl_cpu is not None:
  for _name, _capsule in _mrl_cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
  _registered_platforms.append("cpu")
  try:
    from mrl_jax import _mrl_cuda  # type: ignore[attr-defined]
  except ImportError:
    _mrl_cuda = None
  if _mrl_cuda is not None:
    for _name, _capsule in _mrl_cuda.registrations().items():
      jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")
    _registered_platforms.append("CUDA")


def available() -> bool:
  """True when the CPU extension is built and registered."""
  return _mrl_cpu is not None


def import_error() -> str | None:
  return _import_error


def registered_platforms() -> tuple[str, ...]:
  return tuple(_registered_platforms)


_PULSE_KIND = {PulseType.STOCHASTIC_COMPRESSED: 0, PulseType.STOCHASTIC: 0, PulseType.MEAN_COUNT: 1,
               PulseType.DETERMINISTIC_IMPLICIT: 2}


@functools.lru_cache(maxsize=256)
def _kernel_attrs(device: D.PulsedDevice, update: UpdateParameters, dw: float) -> tuple:
  if device.kind < 0:
    raise ValueError(f"device: the native kernel has no model for {type(device).__name__}")
  exp = isinstance(device, D.ExpStepDevice)
  f32 = lambda name: np.float32(getattr(device, name)) if exp else np.float32(0)
  table = lambda name: np.asarray(getattr(device, name, (1.0,)), np.float32)
  attrs = dict(
      # MRL_DEVICE_ATTRS (xla_ops/include/mrl_ops/devices.h)
      kind=np.int32(device.kind), mult_noise=bool(getattr(device, "mult_noise", False)),
      complex_noise=exp and bool(device.complex_noise), exp_a=f32("a"), exp_b=f32("b"), exp_A_up=f32("A_up"),
      exp_A_down=f32("A_down"), exp_gamma_up=f32("gamma_up"), exp_gamma_down=f32("gamma_down"),
      std_add=f32("dw_min_std_add"), std_slope=f32("dw_min_std_slope"),
      piecewise_up=table("piecewise_up"), piecewise_down=table("piecewise_down"),
      # MRL_UPDATE_ATTRS (xla_ops/include/mrl_ops/update.h)
      desired_bl=np.int32(update.desired_bl), update_management=bool(update.update_management),
      update_bl_management=bool(update.update_bl_management), fixed_bl=bool(update.fixed_bl),
      pulse_kind=np.int32(_PULSE_KIND[update.pulse_type]), has_noise=bool(device.dw_min_std > 0),
      sum_pulses=bool(sums_pulses(device, update)), res=np.float32(update.res),
      x_res_implicit=np.float32(update.x_res_implicit), d_res_implicit=np.float32(update.d_res_implicit),
      um_grad_scale=np.float32(update.um_grad_scale), dw=np.float32(dw))
  return tuple(attrs.items())


def kernel_attrs(device: D.PulsedDevice, update: UpdateParameters, dw: float) -> dict:
  """The named attributes that describe ``device`` and ``update`` to the kernel (``ffi_call(...)(**attrs)``).

  A new device parameter is one entry here and one line in ``MRL_DEVICE_ATTRS``; the kernel checks that the two
  name the same attributes.
  """
  return dict(_kernel_attrs(device, update, float(dw)))


def param_planes(device: D.PulsedDevice, params: D.DeviceParams) -> tuple[jax.Array, ...]:
  """The six ``float32[out, in]`` parameter operands: bounds, scales and the two device-specific ones.

  Separate operands rather than one stacked array, so no copy is made per call. A device with fewer
  specific parameters passes ``max_bound`` in their place; its kernel never reads them.
  """
  keys = ("max_bound", "min_bound", "dwmin_up", "dwmin_down") + tuple(device.aux_keys)
  keys = keys + ("max_bound",) * (6 - len(keys))
  return tuple(params[k] for k in keys)


def pulsed_update(weights, params, x, d, lr, key, device: D.PulsedDevice, update: UpdateParameters, dw=None):
  """The pulsed update through the native kernel (arguments as ``update.pulsed_update_reference``)."""
  dw = device.granularity if dw is None else dw
  attrs = kernel_attrs(device, update, dw)
  out_size, in_size = weights.shape
  rows = x.shape[0]
  table = jnp.asarray(rng.scaled_normal_table(device.dw_min_std))
  call = jax.ffi.ffi_call(
      TARGET_PULSED_UPDATE,
      (jax.ShapeDtypeStruct(weights.shape, jnp.float32),
       jax.ShapeDtypeStruct((rows, ROW_HEADER + in_size + out_size), jnp.uint32)),
      input_output_aliases={0: 0},
      vmap_method="broadcast_all",
  )
  new_weights, _ = call(weights, *param_planes(device, params), x, d, jnp.asarray(lr, jnp.float32),
                        rng.key_words(key), table, **attrs)
  return new_weights


def cpu_flags() -> list[str]:
  """The ISA-level flags of this CPU that matter to the kernel variants (from /proc/cpuinfo)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
  except OSError:
    return []
  wanted = {flag for level in _LEVEL_FLAGS.values() for flag in level}
  return sorted(set(flags) & wanted)


def cpu_variants() -> dict[str, bool]:
  """``{variant: runs here}`` for every variant compiled into this build (empty without the extension)."""
  if _mrl_cpu is None:
    return {}
  return {name: bool(_mrl_cpu.variant_runs_here(i)) for i, name in enumerate(CPU_VARIANTS)
          if _mrl_cpu.variant_compiled(i)}


def cpu_variant() -> str:
  """The ISA variant the CPU kernel runs now: the best this CPU supports unless one was forced."""
  if _mrl_cpu is None:
    raise RuntimeError(f"the native CPU extension is not built: {_import_error}")
  return CPU_VARIANTS[_mrl_cpu.cpu_variant()]


def set_cpu_variant(name: str) -> None:
  """Forces the CPU kernel's ISA variant for every later call in this process.

  The variants compute the same bits (``docs/reproducibility.md``); forcing one serves to test that, or to
  time them. Takes effect on the next kernel call, also in functions jitted before.

  Args:
    name: ``"auto"`` (the best this CPU supports; the default) or one of ``CPU_VARIANTS``:
      ``"baseline"`` (x86-64 SSE2), ``"x86-64-v3"`` (AVX2, FMA, BMI2), ``"x86-64-v4"`` (AVX-512 F/BW/CD/DQ/VL).

  Raises:
    ValueError: an unknown name, a variant this build lacks, or one whose instructions this CPU lacks
      (the message lists the CPU's flags); nothing is changed then.
  """
  if _mrl_cpu is None:
    raise RuntimeError(f"the native CPU extension is not built: {_import_error}")
  global _forced_variant
  if name == "auto":
    _mrl_cpu.set_cpu_variant(-1)
    _forced_variant = name
    return
  if name not in CPU_VARIANTS:
    raise ValueError(f"cpu_variant = {name!r} is invalid: allowed is 'auto' or one of "
                     f"{', '.join(map(repr, CPU_VARIANTS))}")
  runs = cpu_variants()
  if name not in runs:
    raise ValueError(f"cpu_variant = {name!r} is not compiled into this build (MRL_CPU_ARCH set, or not an x86-64 "
                     f"machine); allowed here: 'auto', {', '.join(map(repr, runs))}")
  if not runs[name] or not _mrl_cpu.set_cpu_variant(CPU_VARIANTS.index(name)):
    allowed = ", ".join(repr(v) for v, ok in runs.items() if ok)
    raise ValueError(f"cpu_variant = {name!r} cannot run on this CPU: it needs {' '.join(_LEVEL_FLAGS[name])}; "
                     f"CPU flags found: {' '.join(cpu_flags()) or 'none of them'}; allowed here: 'auto', {allowed}")
  _forced_variant = name


@contextlib.contextmanager
def forced_cpu_variant(name: str):
  """``with forced_cpu_variant("baseline"): ...`` runs the block on one variant, then restores the setting before."""
  before = _forced_variant
  set_cpu_variant(name)
  try:
    yield
  finally:
    set_cpu_variant(before)


if _mrl_cpu is not None and os.environ.get(ENV_CPU_VARIANT):
  try:
    set_cpu_variant(os.environ[ENV_CPU_VARIANT])
  except ValueError as err:
    raise ValueError(f"${ENV_CPU_VARIANT}: {err}") from None
