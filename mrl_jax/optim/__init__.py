"""Analog training algorithms as optax transformations (see ``base`` for the gradient contract)."""

from mrl_jax.optim.base import AnalogGradient, AnalogState, StepInfo, is_analog_gradient, per_weight
from mrl_jax.optim.chopped import ChoppedLeafState, ChoppedTransfer, DynamicTransfer, chopped_transfer
from mrl_jax.optim.chopped import visible_weights as chopped_visible_weights
from mrl_jax.optim.dense import densify
from mrl_jax.optim.compound import (BufferSettings, CompoundLeafState, TransferCompound, request_switch,
                                    transfer_compound)
from mrl_jax.optim.compound import visible_weights as compound_visible_weights
from mrl_jax.optim.mixed_precision import MixedPrecision, mixed_precision
from mrl_jax.optim.plateau import CIFAR_RULE, MNIST_RULE, PlateauRule, PlateauState, plateau_init, plateau_update
from mrl_jax.optim.presets import (ReferencePreset, lenet5_mnist_reference, mixed_precision_preset, resl_cifar, resl_mnist,
                                   resnet_cifar10_reference, ttv1, ttv2, ttv3, ttv4)
from mrl_jax.optim.sgd import analog_sgd
from mrl_jax.optim.sgd import visible_weights as sgd_visible_weights
from mrl_jax.tile import skipped_updates
