"""The one way into the device state: ``weight_states`` keyed like ``nnx.state(model)`` paths, and the warm-start
accessors and ``request_switch`` on states wrapped by ``optax.partition`` and ``nnx.Optimizer``."""

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mrl_jax as M
from mrl_jax import nn, optim
from tests.tiny_mlp import NestedNet


_Net = NestedNet


def _mrl():
  return optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(1.0, 2.0, 4.0), transfer_lr=(0.2, 0.1, 0.1))


def test_weight_states_are_keyed_like_nnx_state_paths():
  model = _Net(nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = nn.analog_partition(optim.transfer_compound(_mrl(), 0.1, key=0), optax.sgd(0.1), params)
  found = optim.weight_states(tx.init(params))
  analog = [path for path, v in nnx.to_flat_state(params) if isinstance(v, nn.AnalogWeight)]
  assert sorted(found, key=str) == sorted(analog, key=str) == [("blocks", 0, "weight"), ("l1", "weight")]
  assert all(isinstance(leaf, optim.CompoundLeafState) for leaf in found.values())
  np.testing.assert_array_equal(np.asarray(found[("l1", "weight")].tiles[-1].weights),
                                np.asarray(params["l1"]["weight"][...]))


def test_request_switch_on_a_partitioned_state_and_an_nnx_optimizer():
  model = _Net(nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = nn.analog_partition(optim.transfer_compound(_mrl(), 0.1, key=0), optax.sgd(0.1), params)
  state = tx.init(params)
  assert int(optim.warm_start_target(state)) == 2
  asked = optim.request_switch(state)
  assert bool(optim.warm_start(asked).pending) and not bool(optim.warm_start(state).pending)
  assert not bool(optim.warm_start(optim.request_switch(asked, requested=False)).pending)

  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  optimizer.opt_state = optim.request_switch(optimizer.opt_state)
  loss = lambda m, x: jnp.mean(m(x) ** 2)
  _, grads = nn.value_and_analog_grad(loss)(model, jnp.ones((2, 4)))
  optimizer.update(model, grads)
  assert int(optim.warm_start_target(optimizer.opt_state)[...]) == 1
  for _ in range(2):  # nnx.Optimizer keeps the device states as they are (they sit outside the params' Variables)
    _, grads = nn.value_and_analog_grad(loss)(model, jnp.ones((2, 4)))
    optimizer.update(model, grads)
  found = optim.weight_states(optimizer.opt_state)
  assert set(found) == {("l1", "weight"), ("blocks", 0, "weight")}
  assert all(isinstance(leaf, optim.CompoundLeafState) for leaf in found.values())


def test_warm_start_accessors_without_a_compound():
  params = {"w": jnp.zeros((3, 4))}
  state = optim.analog_sgd(M.limited_state_soft_bounds(4), 0.1, key=0).init(params)
  assert optim.warm_start(state) is None and optim.warm_start_target(state) is None
  assert optim.request_switch(state).shared is None  # nothing to switch: unchanged
  assert list(optim.weight_states(state)) == [("w",)]
