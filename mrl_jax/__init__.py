"""mrl_jax: training neural networks on analog in-memory hardware, in JAX.

Start with the README (set up, quick start). Where things are:

- devices and the pulsed update: ``PulsedDevice`` and its subclasses, ``UpdateParameters``, ``pulsed_update``;
- one analog tile: ``TileState``, ``init_tile``, ``tile_update``; the I/O-managed MVM ``analog_mvm`` with
  ``IOParameters`` (``PERFECT_IO``: exact), and ``analog_matmul`` (the MVM with its VJP, as the layers use it);
- the analog training algorithms as optax transformations: ``mrl_jax.optim``; flax nnx layers: ``mrl_jax.nn``;
  the training loop, checkpoints and plots: ``mrl_jax.training``.

Inspecting tiles (README section "Inspecting tiles"; ``help(mrl_jax.tiles)``): the tiles behind each analog weight
of a model live in the optimizer state.

- ``analog_tiles(opt_state, config=None)``: every tile as a ``TileInfo(path, index, weights, conductance,
  significance, hidden)``;
- ``get_tile_weights(opt_state, path, index)``, ``set_tile_weights(opt_state, path, index, weights)``;
- ``get_hidden_parameters(opt_state, path)``, ``set_hidden_parameters(opt_state, path, values)`` (AIHWKit's names);
- ``visible_weight(opt_state, path, config)`` ``= Σ_k γ_k W_k``, ``significances(config)``;
- ``tile_forward(weights, x, io, key)`` (``W x``) and ``tile_backward(weights, d, io, key)`` (``Wᵀ d``).

Coming from AIHWKit: ``mrl_jax.from_rpu_config(rpu_config)`` turns an AIHWKit 1.1.0 ``rpu_config`` (the object, or
its plain form ``mrl_jax.rpu_config_to_plain(rpu_config)`` read without AIHWKit) into the device, update, I/O,
mapping and optax transformation of ``mrl_jax`` (``mrl_jax.aihwkit``; guide: ``docs/from-aihwkit.md``).
"""

from mrl_jax.devices import (CapacitorPresetDevice, ConstantStepDevice, EcRamMOPresetDevice, EcRamPresetDevice,
                             ExpStepDevice, GokmenVlasovPresetDevice, IdealizedPresetDevice, LinearStepDevice,
                             PCMPresetDevice, PiecewiseStepDevice, PowStepDevice, PulsedDevice, ReRamESPresetDevice,
                             ReRamSBPresetDevice, SoftBoundsDevice, SoftBoundsReferenceDevice,
                             limited_state_soft_bounds)
from mrl_jax.io import PERFECT_IO, BoundManagement, IOParameters, NoiseManagement, WeightNoiseType, analog_mvm
from mrl_jax.pulses import PulseType, UpdateParameters
from mrl_jax.tile import TileState, analog_matmul, init_tile, tile_update
from mrl_jax.tiles import (TileInfo, analog_tiles, get_hidden_parameters, get_tile_weights, set_hidden_parameters,
                           set_tile_weights, significances, tile_backward, tile_forward, visible_weight)
from mrl_jax.update import pulsed_update, pulsed_update_reference
from mrl_jax._native import cpu_variant, cpu_variants, forced_cpu_variant, set_cpu_variant  # noqa: E402

from mrl_jax.aihwkit import AnalogConfig, UnsupportedRPUConfig, from_rpu_config  # noqa: E402
from mrl_jax._rpu_plain import to_plain as rpu_config_to_plain  # noqa: E402

__version__ = "0.1.0"
