"""Analog training algorithms as optax transformations (see ``base`` for the gradient contract).

Every algorithm (``analog_sgd``, ``transfer_compound``, ``chopped_transfer``, ``mixed_precision``) is built by
``per_weight`` and keeps its device state in an ``AnalogState``. Into that state, wherever it sits in an optimizer
state (``optax.partition``, ``nnx.Optimizer.opt_state``, vmapped seeds):

- ``weight_states(opt_state)``: ``{("l1", "weight"): device state}`` keyed like ``nnx.state(model)`` paths;
- ``skipped_updates(opt_state)``: the updates the non-finite policy skipped, per tile;
- ``warm_start(opt_state)``, ``warm_start_target(opt_state)``: a transfer compound's warm-start phase;
- ``request_switch(opt_state, requested=True)``: ask for (or cancel) a warm-start switch in the next update;
- ``end_epoch(config, opt_state, epoch_loss)``: feed a custom loop's epoch loss to the warm-start controller
  (or pass ``epoch_loss=`` to ``update`` on the first step of each epoch);
- ``*_visible_weights(config, state)``: the visible weights of one algorithm's ``AnalogState``.

``mrl_jax.tiles`` builds the user's tile API on these (list tiles, get/set weights and hidden parameters).
"""

from mrl_jax.analog_state import analog_states, weight_states
from mrl_jax.optim.base import AnalogGradient, AnalogState, StepInfo, is_analog_gradient, per_weight
from mrl_jax.optim.chopped import ChoppedLeafState, ChoppedTransfer, DynamicTransfer, chopped_transfer
from mrl_jax.optim.chopped import visible_weights as chopped_visible_weights
from mrl_jax.optim.dense import densify
from mrl_jax.optim.epochs import WarmStartNotFedWarning, end_epoch
from mrl_jax.optim.compound import (BufferSettings, CompoundLeafState, TransferCompound, WarmStartState,
                                    request_switch, transfer_compound, warm_start, warm_start_target)
from mrl_jax.optim.compound import visible_weights as compound_visible_weights
from mrl_jax.optim.mixed_precision import MixedPrecision, MixedPrecisionLeafState, mixed_precision
from mrl_jax.optim.mixed_precision import visible_weights as mixed_precision_visible_weights
from mrl_jax.optim.plateau import CIFAR_RULE, MNIST_RULE, PlateauRule, PlateauState, plateau_init, plateau_update
from mrl_jax.optim.presets import (ReferencePreset, lenet5_mnist_reference, mixed_precision_preset, mrl_cifar, mrl_mnist,
                                   resl_cifar, resl_mnist, resnet_cifar10_reference, ttv1, ttv2, ttv3, ttv4)
from mrl_jax.optim.sgd import analog_sgd
from mrl_jax.optim.sgd import visible_weights as sgd_visible_weights
from mrl_jax.tile import skipped_updates
