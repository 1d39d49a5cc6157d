"""flax nnx layers for analog tiles, the gradient tape, and optimizer wiring."""

from mrl_jax.nn.layers import ANALOG_LAYERS, AnalogConv2d, AnalogLinear, AnalogWeight, MappingScale, map_weights
from mrl_jax.nn.pooling import max_pool
from mrl_jax.nn.tape import analog_weight_paths, value_and_analog_grad
from mrl_jax.nn.wiring import analog_labels, analog_partition, convert_to_analog
