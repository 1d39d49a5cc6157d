"""mrl_jax: training neural networks on analog in-memory hardware, in JAX."""

from mrl_jax.devices import (CapacitorPresetDevice, ConstantStepDevice, EcRamMOPresetDevice, EcRamPresetDevice,
                             ExpStepDevice, GokmenVlasovPresetDevice, IdealizedPresetDevice, LinearStepDevice,
                             PCMPresetDevice, PiecewiseStepDevice, PowStepDevice, PulsedDevice, ReRamESPresetDevice,
                             ReRamSBPresetDevice, SoftBoundsDevice, SoftBoundsReferenceDevice,
                             limited_state_soft_bounds)
from mrl_jax.pulses import PulseType, UpdateParameters
from mrl_jax.update import pulsed_update, pulsed_update_reference

__version__ = "0.1.0"
