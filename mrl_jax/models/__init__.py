"""Reference models of the MRL experiments."""

from mrl_jax.models.lenet import LeNet5
