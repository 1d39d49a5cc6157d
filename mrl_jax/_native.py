"""Registration and ``ffi_call`` wrappers of the native (C++/CUDA) XLA FFI kernels.

The extension modules ``_mrl_cpu`` and (optionally) ``_mrl_cuda`` expose their handlers as PyCapsules;
this module registers them under the same target names for ``"cpu"`` and ``"CUDA"``, so the call below
is platform-agnostic. Device and update configs become two constant attribute arrays (``iconsts``,
``fconsts``; layout in ``xla_ops/include/mrl_ops/update.h``); everything that varies per seed or step
(weights, parameters, inputs, lr, key) is an operand, so ``vmap`` batches it into one kernel call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mrl_jax import devices as D
from mrl_jax import rng
from mrl_jax.pulses import PulseType, UpdateParameters
from mrl_jax.update import sums_pulses

TARGET_PULSED_UPDATE = "mrl_pulsed_update"
ROW_HEADER = 3
MAX_PIECEWISE = 64
_N_ICONSTS = 11
_N_FCONSTS = 13 + 2 * MAX_PIECEWISE

_import_error: str | None = None
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
