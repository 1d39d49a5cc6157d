"""Every analog algorithm's factory is called the same way: ``factory(config, learning_rate, *, key, engine=None)``
with an explicit key (no default), an integer seed working under ``optax.inject_hyperparams`` too."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mrl_jax as M
from mrl_jax import optim
from mrl_jax.optim import AnalogGradient

FACTORIES = {
    "transfer_compound": (optim.transfer_compound, lambda: optim.mrl_mnist(4, n_tiles=3)),
    "chopped_transfer": (optim.chopped_transfer, lambda: optim.ttv3(4)),
    "mixed_precision": (optim.mixed_precision, lambda: optim.mixed_precision_preset(4)),
    "analog_sgd": (optim.analog_sgd, lambda: M.limited_state_soft_bounds(4)),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_key_is_required_and_engine_is_a_keyword(name):
  factory, config = FACTORIES[name]
  params = inspect.signature(factory).parameters
  assert params["key"].kind is inspect.Parameter.KEYWORD_ONLY and params["key"].default is inspect.Parameter.empty
  assert params["engine"].kind is inspect.Parameter.KEYWORD_ONLY and params["engine"].default is None
  with pytest.raises(TypeError, match="key"):
    factory(config(), 0.1)
  with pytest.raises(ValueError, match=r"engine = 'gpu' is invalid"):
    factory(config(), 0.1, key=0, engine="gpu")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_int_seed_under_inject_hyperparams_equals_the_plain_factory(name):
  factory, config = FACTORIES[name]
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  grads = {"w": AnalogGradient(jnp.full((2, 4), 0.5), jnp.full((2, 3), 0.2))}
  plain = factory(config(), 0.1, key=3)
  injected = optax.inject_hyperparams(factory, static_args=("engine",))(config(), learning_rate=0.1, key=3)
  state_p, state_i = plain.init(params), injected.init(params)
  for _ in range(2):
    upd_p, state_p = plain.update(grads, state_p, params)
    upd_i, state_i = injected.update(grads, state_i, params)
    np.testing.assert_array_equal(np.asarray(upd_p["w"]), np.asarray(upd_i["w"]))
  bits = lambda a: np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(bits(a), bits(b)), optim.weight_states(state_p),
               optim.weight_states(state_i))


def test_as_key_rejects_what_is_not_a_key_or_seed():
  with pytest.raises(TypeError, match="PRNG key or an integer seed, got float"):
    optim.base.as_key(0.5)
  with pytest.raises(TypeError, match=r"got an array float32\[3\]"):
    optim.base.as_key(jnp.zeros(3))
