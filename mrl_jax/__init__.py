"""mrl_jax: training neural networks on analog in-memory hardware, in JAX."""

from mrl_jax.devices import (CapacitorPresetDevice, ConstantStepDevice, EcRamMOPresetDevice, EcRamPresetDevice,
                             ExpStepDevice, GokmenVlasovPresetDevice, IdealizedPresetDevice, LinearStepDevice,
                             PCMPresetDevice, PiecewiseStepDevice, PowStepDevice, PulsedDevice, ReRamESPresetDevice,
                             ReRamSBPresetDevice, SoftBoundsDevice, SoftBoundsReferenceDevice,
                             limited_state_soft_bounds)
from mrl_jax.pulses import PulseType, UpdateParameters
from mrl_jax.update import pulsed_update, pulsed_update_reference
from mrl_jax._native import cpu_variant, cpu_variants, forced_cpu_variant, set_cpu_variant  # noqa: E402

__version__ = "0.1.0"
