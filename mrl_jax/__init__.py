"""mrl_jax: training neural networks on analog in-memory hardware, in JAX.

Coming from AIHWKit: ``mrl_jax.from_rpu_config(rpu_config)`` turns an AIHWKit 1.1.0 ``rpu_config`` (the object, or
its plain form ``mrl_jax.rpu_config_to_plain(rpu_config)`` read without AIHWKit) into the device, update, I/O,
mapping and optax transformation of ``mrl_jax`` (``mrl_jax.aihwkit``; guide: ``docs/from-aihwkit.md``).
"""

from mrl_jax.devices import (CapacitorPresetDevice, ConstantStepDevice, EcRamMOPresetDevice, EcRamPresetDevice,
                             ExpStepDevice, GokmenVlasovPresetDevice, IdealizedPresetDevice, LinearStepDevice,
                             PCMPresetDevice, PiecewiseStepDevice, PowStepDevice, PulsedDevice, ReRamESPresetDevice,
                             ReRamSBPresetDevice, SoftBoundsDevice, SoftBoundsReferenceDevice,
                             limited_state_soft_bounds)
from mrl_jax.pulses import PulseType, UpdateParameters
from mrl_jax.update import pulsed_update, pulsed_update_reference
from mrl_jax._native import cpu_variant, cpu_variants, forced_cpu_variant, set_cpu_variant  # noqa: E402

from mrl_jax.aihwkit import AnalogConfig, UnsupportedRPUConfig, from_rpu_config  # noqa: E402
from mrl_jax._rpu_plain import to_plain as rpu_config_to_plain  # noqa: E402

__version__ = "0.1.0"
