"""Registration and ``ffi_call`` wrappers of the native (C++/CUDA) XLA FFI kernels.

The extension modules ``_mrl_cpu`` and (optionally) ``_mrl_cuda`` expose their handlers as PyCapsules;
this module registers them under the same target names for ``"cpu"`` and ``"CUDA"``, so the call below
is platform-agnostic. The CPU handler's hot loops exist once per x86-64 ISA level; ``set_cpu_variant``
(or ``$MRL_CPU_VARIANT``) forces one, e.g. to check that every level computes the same bits. Device and update configs become two constant attribute arrays (``iconsts``,
``fconsts``; layout in ``xla_ops/include/mrl_ops/update.h``); everything that varies per seed or step
(weights, parameters, inputs, lr, key) is an operand, so ``vmap`` batches it into one kernel call.
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
MAX_PIECEWISE = 64
_N_ICONSTS = 11
_N_FCONSTS = 13 + 2 * MAX_PIECEWISE

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


_DEVICE_KIND = {D.ConstantStepDevice: 0, D.LinearStepDevice: 1, D.SoftBoundsDevice: 1,
                D.SoftBoundsReferenceDevice: 2, D.ExpStepDevice: 3, D.PowStepDevice: 4, D.PiecewiseStepDevice: 5}
_PULSE_KIND = {PulseType.STOCHASTIC_COMPRESSED: 0, PulseType.STOCHASTIC: 0, PulseType.MEAN_COUNT: 1,
               PulseType.DETERMINISTIC_IMPLICIT: 2}


@functools.lru_cache(maxsize=256)
def kernel_consts(device: D.PulsedDevice, update: UpdateParameters, dw: float):
  """The two attribute arrays describing ``device`` and ``update`` to the kernel."""
  kind = _DEVICE_KIND.get(type(device))
  if kind is None:
    raise ValueError(f"device: the native kernel has no model for {type(device).__name__}")
  mult_noise = bool(getattr(device, "mult_noise", False))
  complex_noise = isinstance(device, D.ExpStepDevice) and device.complex_noise
  pw_up = getattr(device, "piecewise_up", (1.0,))
  pw_down = getattr(device, "piecewise_down", (1.0,))
  iconsts = np.array([kind, mult_noise, complex_noise, len(pw_up), update.desired_bl, update.update_management,
                      update.update_bl_management, update.fixed_bl, _PULSE_KIND[update.pulse_type],
                      device.dw_min_std > 0, sums_pulses(device, update)], np.int32)
  exp = [getattr(device, n, 0.0) for n in ("a", "b", "A_up", "A_down", "gamma_up", "gamma_down")] \
      if isinstance(device, D.ExpStepDevice) else [0.0] * 6
  std = [device.dw_min_std_add, device.dw_min_std_slope] if isinstance(device, D.ExpStepDevice) else [0.0, 0.0]
  pad = lambda v: list(v) + [0.0] * (MAX_PIECEWISE - len(v))
  fconsts = np.array(exp + std + [update.res, update.x_res_implicit, update.d_res_implicit, update.um_grad_scale,
                                  dw] + pad(pw_up) + pad(pw_down), np.float32)
  assert iconsts.size == _N_ICONSTS and fconsts.size == _N_FCONSTS
  return iconsts, fconsts


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
  iconsts, fconsts = kernel_consts(device, update, float(dw))
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
                        rng.key_words(key), table, iconsts=iconsts, fconsts=fconsts)
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
