"""The non-finite policy: a NaN/inf in x, d, the learning rate or the loss never reaches a weight.

Default ("skip"): the affected tile's update is skipped and counted in its ``TileState.skipped``; digital
parameters skip too (``optax.apply_if_finite`` inside ``analog_partition``); state written by the forward
pass (batch-norm statistics) keeps its old value. Option ("raise", ``FitConfig.non_finite``): the loop
also checkpoints the unchanged state and raises ``FloatingPointError``.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import data, optim
from mrl_jax.nn import AnalogLinear, analog_partition
from mrl_jax.optim import AnalogGradient
from mrl_jax.tile import init_tile, skipped_updates, tile_update
from mrl_jax.training import checkpoint as ckpt
from mrl_jax.training.loop import FitConfig, TrainState, fit, init_state, make_train_step


def _bits(tree):
  return [np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
          for a in jax.tree.leaves(tree)]


@pytest.mark.parametrize("engine", ["jnp", "native"])
def test_tile_counts_skipped_updates(engine):
  dev = M.SoftBoundsDevice(dw_min=0.05, write_noise_std=1.0)  # write noise: persistent and apparent weights
  tile = init_tile(jax.random.key(0), dev, (3, 4), jnp.full((3, 4), 0.2))
  x, d = jnp.ones((2, 4)) * 0.5, jnp.ones((2, 3)) * 0.3
  upd = M.UpdateParameters()
  for bad_x, bad_d, lr in ((x.at[1, 2].set(jnp.nan), d, 0.1), (x, d.at[0, 0].set(-jnp.inf), 0.1), (x, d, jnp.nan)):
    new = tile_update(tile, dev, upd, bad_x, bad_d, lr, jax.random.key(1), engine=engine)
    assert int(new.skipped) == int(tile.skipped) + 1
    np.testing.assert_array_equal(np.asarray(new.weights), np.asarray(tile.weights))
    np.testing.assert_array_equal(np.asarray(new.persistent), np.asarray(tile.persistent))
    tile = new
  good = tile_update(tile, dev, upd, x, d, 0.1, jax.random.key(1), engine=engine)
  assert int(good.skipped) == 3 and not np.array_equal(np.asarray(good.weights), np.asarray(tile.weights))


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.l1 = AnalogLinear(6, 5, rngs=rngs)
    self.bn = nnx.BatchNorm(5, rngs=rngs)
    self.l2 = AnalogLinear(5, 3, rngs=rngs)

  def __call__(self, x):
    return jax.nn.log_softmax(self.l2(jnp.tanh(self.bn(self.l1(x)))))


def _loss(model, x, y):
  logp = model(x)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), jnp.sum(jnp.argmax(logp, -1) == y)


def _optimizers():
  mrl = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(1.0, 1.0, 1.0), transfer_lr=(0.2, 0.2, 0.2))
  dev = M.limited_state_soft_bounds(4)
  return {"mrl": optim.transfer_compound(mrl, 0.1, key=1), "ttv2": optim.transfer_compound(optim.ttv2(4), 0.1, key=1),
          "mp": optim.mixed_precision(optim.mixed_precision_preset(4), 0.1, key=1),
          "sgd": optim.analog_sgd(dev, 0.1, key=1), "ttv3": optim.chopped_transfer(optim.ttv3(4), 0.1, key=1)}


@pytest.mark.parametrize("name", ["mrl", "ttv2", "mp", "sgd", "ttv3"])
def test_train_step_with_nan_input_changes_nothing_but_counters(name):
  model = _Net(nnx.Rngs(0))
  tx = analog_partition(_optimizers()[name], optax.sgd(0.1), nnx.state(model, nnx.Param))
  graphdef, state = init_state(model, tx)
  step = make_train_step(graphdef, tx, _loss)
  x = jax.random.uniform(jax.random.key(2), (4, 6))
  y = jnp.arange(4) % 3
  state, loss, _ = step(state, x, y, jnp.float32(jnp.nan))  # one good step
  assert np.isfinite(float(loss))
  before = jax.tree.map(lambda a: a, state)
  before_bits = _bits(before.model)
  counts_before = {k: int(v) for k, v in skipped_updates(before.opt).items()}
  state, loss, _ = step(state, x.at[1, 3].set(jnp.nan), y, jnp.float32(jnp.nan))
  assert np.isnan(float(loss))
  for a, b in zip(before_bits, _bits(state.model)):  # weights, biases, batch-norm statistics
    np.testing.assert_array_equal(a, b)
  counts = {k: int(v) for k, v in skipped_updates(state.opt).items()}
  assert counts.keys() == counts_before.keys() and len(counts) >= 2
  # The gradient write of each analog weight was skipped once (transfers read finite tiles and go on).
  gradient_tiles = [k for k in counts if counts[k] != counts_before[k]]
  assert all(counts[k] == counts_before[k] + 1 for k in gradient_tiles) and len(gradient_tiles) == 2, counts
  digital = [s for s in jax.tree.leaves(state.opt, is_leaf=lambda n: isinstance(n, optax.ApplyIfFiniteState))
             if isinstance(s, optax.ApplyIfFiniteState)]
  assert len(digital) == 1 and int(digital[0].total_notfinite) == 1


def _fit(tmp_path, policy):
  images, labels = data.embedded_mnist("train")
  images = data.to_float(images[:64]).reshape(64, -1)[:, ::131][:, :6]
  images[26, 4] = np.nan  # one bad sample (in a different batch each epoch: batches are shuffled)
  model = _Net(nnx.Rngs(0))
  tx = analog_partition(_optimizers()["mrl"], optax.sgd(0.1), nnx.state(model, nnx.Param))
  cfg = FitConfig(epochs=2, batch_size=8, out_dir=str(tmp_path), progress=False, non_finite=policy)
  labels = labels[:64] % 3
  return fit(model, tx, (images, labels), (np.nan_to_num(images[:16]), labels[:16]), cfg, loss_fn=_loss)


def test_fit_skip_policy_counts_and_trains_on(tmp_path):
  _, history, state = _fit(tmp_path, "skip")
  assert history[0]["non_finite_steps"] == 1 and history[1]["non_finite_steps"] == 1  # the batch recurs
  assert history[-1]["skipped_updates"] == 4  # 2 analog weights × 2 epochs
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(state.model)
             if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key))
  assert np.isfinite(history[-1]["train_loss"])


def test_fit_raise_policy_checkpoints_the_unchanged_state(tmp_path):
  with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at epoch 1, batch (\d+); .*"
                                               r"\['l1'\]\['weight'\].*: 1") as err:
    _fit(tmp_path, "raise")
  batch = int(re.search(r"batch (\d+)", str(err.value)).group(1))
  latest = ckpt.latest_checkpoint(tmp_path)
  assert latest is not None
  model = _Net(nnx.Rngs(0))
  tx = analog_partition(_optimizers()["mrl"], optax.sgd(0.1), nnx.state(model, nnx.Param))
  _, template = init_state(model, tx)
  saved, meta = ckpt.load_checkpoint(latest, template)
  assert meta["epoch"] == 0 and meta["position"] == batch and meta["non_finite_steps"] == 1
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(saved.model)
             if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key))


def test_fit_config_rejects_unknown_policy():
  with pytest.raises(ValueError, match=r"FitConfig.non_finite = 'ignore' is invalid: allowed is one of 'skip', 'raise'"):
    FitConfig(epochs=1, batch_size=8, non_finite="ignore")
