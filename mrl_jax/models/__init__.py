"""Reference models of the MRL experiments."""

from mrl_jax.models.lenet import LeNet5
from mrl_jax.models.resnet import ResNet, resnet18, resnet34
