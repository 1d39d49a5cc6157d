"""The tile API (``mrl_jax.tiles``): list a model's tiles, read and set their weights and hidden parameters, and
the tile-level MVMs, on a small model trained a few steps with each algorithm."""

import functools
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import nn, optim
from mrl_jax.aihwkit import from_rpu_config
from tests.conftest import FIXTURES
from tests.tiny_mlp import NestedNet
from mrl_jax.analog_state import weight_path
from mrl_jax.training import plots

_DEV = M.limited_state_soft_bounds(4)
_MRL = optim.mrl_mnist(4, n_tiles=3).replace(transfer_every=(1.0, 2.0, 4.0), transfer_lr=(0.2, 0.1, 0.1))

# name: (config, factory, the algorithm's own visible weights)
_ALGORITHMS_UNDER_TEST = {
    "analog_sgd": (_DEV, lambda c: optim.analog_sgd(c, 0.1, key=0), optim.sgd_visible_weights),
    "ttv1": (optim.ttv1(4), lambda c: optim.transfer_compound(c, 0.1, key=0), optim.compound_visible_weights),
    "mrl": (_MRL, lambda c: optim.transfer_compound(c, 0.1, key=0), optim.compound_visible_weights),
    "ttv2": (optim.ttv2(4), lambda c: optim.transfer_compound(c, 0.1, key=0), optim.compound_visible_weights),
    "chopped": (optim.ttv3(4), lambda c: optim.chopped_transfer(c, 0.1, key=0), optim.chopped_visible_weights),
    "agad": (optim.ttv4(4), lambda c: optim.chopped_transfer(c, 0.1, key=0), optim.chopped_visible_weights),
    "mixed_precision": (optim.mixed_precision_preset(4), lambda c: optim.mixed_precision(c, 0.1, key=0),
                        optim.mixed_precision_visible_weights),
}
_PATHS = [("blocks", 0, "weight"), ("l1", "weight")]


_Net = NestedNet


@functools.cache
def _trained(name: str, steps: int = 3):
  """``(model, config, analog optimizer state, visible-weights function)`` after ``steps`` updates."""
  config, factory, visible = _ALGORITHMS_UNDER_TEST[name]
  model = _Net(nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = nn.analog_partition(factory(config), optax.sgd(0.1), params)
  opt_state = tx.init(params)
  update = jax.jit(tx.update)
  loss = lambda m, x: jnp.mean((m(x) - 0.3) ** 2)
  for i in range(steps):
    x = jax.random.uniform(jax.random.key(i), (2, 4), minval=-1, maxval=1)
    _, grads = nn.value_and_analog_grad(loss)(model, x)
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    nnx.update(model, params)
  return model, config, opt_state, visible


def _analog(opt_state):
  return optim.analog_states(opt_state)[0]


@pytest.mark.parametrize("name", list(_ALGORITHMS_UNDER_TEST))
def test_lists_every_tile_with_its_significance(name):
  _, config, state, _ = _trained(name)
  tiles = M.analog_tiles(state, config)
  gammas = M.significances(config)
  assert [(t.path, t.index) for t in tiles] == [(p, k) for p in _PATHS for k in range(len(gammas))]
  for t in tiles:
    assert t.significance == gammas[t.index]
    assert t.weights.shape == ((2, 3) if t.path[0] == "blocks" else (3, 4))
    np.testing.assert_array_equal(t.conductance, t.weights)  # no write noise
    assert {"max_bound", "min_bound", "dwmin_up", "dwmin_down"} <= set(t.hidden)
  assert all(t.significance is None for t in M.analog_tiles(state))


@pytest.mark.parametrize("name", list(_ALGORITHMS_UNDER_TEST))
def test_visible_weight_is_the_significance_weighted_sum_of_the_tiles(name):
  model, config, state, visible = _trained(name)
  own = {weight_path(p): v for p, v in jax.tree_util.tree_flatten_with_path(visible(config, _analog(state)))[0]}
  model_w = {("l1", "weight"): model.l1.weight[...], ("blocks", 0, "weight"): model.blocks[0].weight[...]}
  for path in _PATHS:
    w_bar = M.visible_weight(state, path, config)
    np.testing.assert_array_equal(w_bar, own[path])  # the algorithm's own sum, bit for bit
    listed = sum(t.significance * np.asarray(t.weights) for t in M.analog_tiles(state, config) if t.path == path)
    np.testing.assert_allclose(w_bar, listed, rtol=0, atol=1e-6)
    np.testing.assert_allclose(w_bar, model_w[path], rtol=0, atol=1e-6)  # the model: params + Δ


@pytest.mark.parametrize("name", list(_ALGORITHMS_UNDER_TEST))
def test_set_tile_weights_then_read_back(name):
  _, config, state, _ = _trained(name)
  n_tiles = len(M.significances(config))
  for k in range(n_tiles):
    w = jax.random.uniform(jax.random.key(10 + k), (3, 4), minval=-0.2, maxval=0.2)
    new = M.set_tile_weights(state, "l1/weight", k, w)
    hidden = M.get_hidden_parameters(state, "l1/weight")
    sfx = f"_{k}" if n_tiles > 1 else ""
    programmed = np.clip(w, hidden["min_bound" + sfx], hidden["max_bound" + sfx])  # each crosspoint's range
    np.testing.assert_array_equal(M.get_tile_weights(new, ("l1", "weight"), k), programmed)
    for j in range(n_tiles):  # the other tiles and weights are untouched
      if j != k:
        np.testing.assert_array_equal(M.get_tile_weights(new, ("l1", "weight"), j),
                                      M.get_tile_weights(state, ("l1", "weight"), j))
    np.testing.assert_array_equal(M.get_tile_weights(new, _PATHS[0], k), M.get_tile_weights(state, _PATHS[0], k))
    # Programmed weights are clipped to each crosspoint's bounds; under jit too.
    jitted = jax.jit(lambda s, w: M.set_tile_weights(s, ("l1", "weight"), k, w))(state, jnp.full((3, 4), 5.0))
    np.testing.assert_array_equal(M.get_tile_weights(jitted, "l1/weight", k), hidden["max_bound" + sfx])


_EXPECTED_NAMES = {
    "analog_sgd": {"max_bound", "dwmin_up", "slope_up"},
    "ttv1": {"hidden_weights_0", "hidden_weights_1", "max_bound_1", "dwmin_down_0", "ptr"},
    "mrl": {"hidden_weights_2", "max_bound_2", "ptr"},
    "ttv2": {"hidden_weights_1", "buffered_FP_weight_0", "ptr"},
    "chopped": {"hidden_weights_0", "hidden_weights_1", "buffered_FP_weight_0", "in_chop", "out_chop", "m_x"},
    "agad": {"hidden_weights_1", "buffered_FP_weight", "running_mean_weight", "past_mean_weight", "switched"},
    "mixed_precision": {"max_bound", "hidden_weights_chi"},
}


@pytest.mark.parametrize("name", list(_ALGORITHMS_UNDER_TEST))
def test_hidden_parameters_round_trip(name):
  _, config, state, _ = _trained(name)
  hidden = M.get_hidden_parameters(state, "l1/weight")
  assert _EXPECTED_NAMES[name] <= set(hidden)
  # Every value set to something new reads back; setting the old values back restores the state bit for bit.
  changed = {n: (v + 1 if v.dtype != jnp.bool_ else ~v) for n, v in hidden.items()}
  new = jax.jit(lambda s, v: M.set_hidden_parameters(s, "l1/weight", v))(state, changed)
  for n, v in M.get_hidden_parameters(new, "l1/weight").items():
    np.testing.assert_array_equal(v, changed[n], err_msg=n)
  back = M.set_hidden_parameters(new, "l1/weight", hidden)
  for a, b in zip(jax.tree.leaves(optim.weight_states(back)), jax.tree.leaves(optim.weight_states(state))):
    np.testing.assert_array_equal(a, b)


HIDDEN_KEYS = json.loads((FIXTURES / "aihwkit_rpu_configs.json").read_text())["hidden_parameter_keys"]
_OWN_STATE = {"ptr", "in_chop", "out_chop", "rows", "transfer_counter", "m_x", "m_d", "switched"}
"""Pointers and counters of the algorithms that ``get_hidden_parameters`` adds to AIHWKit's names."""


def test_hidden_key_fixture_holds_every_compound():
  assert sorted(HIDDEN_KEYS["cases"]) == ["mixed_precision", "sgd_sbref", "sgd_write_noise", "ttv1_3_devices",
                                          "ttv2_buffered", "ttv2_buffered_3_devices", "ttv3_chopped", "ttv4_dynamic"]


@pytest.mark.parametrize("case", sorted(HIDDEN_KEYS["cases"]))
def test_hidden_parameter_names_are_aihwkit_names(case):
  """``get_hidden_parameters`` of the translated configuration names everything as AIHWKit 1.1.0's
  ``tile.get_hidden_parameters()`` does (``make_rpu_config_fixtures.py``), except AIHWKit's ``drift_nu`` (no drift
  model), and adds only the algorithm's pointers and counters."""
  entry = HIDDEN_KEYS["cases"][case]
  cfg = from_rpu_config(entry["rpu_config"])
  state = cfg.optimizer(0.1, 0).init({"w": jnp.zeros(HIDDEN_KEYS["shape"], jnp.float32)})
  ours, aihwkit = set(M.get_hidden_parameters(state, "w")), set(entry["keys"])
  assert aihwkit - ours == {k for k in aihwkit if re.fullmatch(r"drift_nu(_\d+)?", k)}
  assert ours - aihwkit <= _OWN_STATE


def test_hidden_weights_of_a_compound_are_its_tiles_and_chi_has_aihwkit_sign():
  _, config, state, _ = _trained("mrl")
  hidden = M.get_hidden_parameters(state, _PATHS[0])
  for k in range(3):
    np.testing.assert_array_equal(hidden[f"hidden_weights_{k}"], M.get_tile_weights(state, _PATHS[0], k))
  _, _, mp, _ = _trained("mixed_precision")
  chi = optim.weight_states(mp)[("l1", "weight")].chi
  np.testing.assert_array_equal(M.get_hidden_parameters(mp, "l1/weight")["hidden_weights_chi"], -chi)


@pytest.mark.parametrize("name", ["analog_sgd", "mrl", "chopped"])
def test_tile_forward_and_backward_equal_the_layer_with_perfect_io(name):
  model, config, state, _ = _trained(name)
  layer = model.l1
  x = jax.random.uniform(jax.random.key(5), (5, 4), minval=-1, maxval=1)
  w_bar = layer.weight[...]
  y, vjp = jax.vjp(layer, x)  # the layer adds its digital bias to the MVM
  bias = layer.bias[...]
  np.testing.assert_array_equal(M.tile_forward(w_bar, x) + bias, y)
  np.testing.assert_array_equal(M.tile_forward(w_bar, x[0]) + bias, y[0])
  d = jax.random.normal(jax.random.key(6), (5, 3))
  np.testing.assert_array_equal(M.tile_backward(w_bar, d), vjp(d)[0])
  # The visible weight's MVM is the significance-weighted sum of the tiles' MVMs.
  tiles = [t for t in M.analog_tiles(state, config) if t.path == ("l1", "weight")]
  summed = sum(t.significance * M.tile_forward(t.weights, x) for t in tiles)
  np.testing.assert_allclose(summed, M.tile_forward(M.visible_weight(state, "l1/weight", config), x), atol=1e-6)
  np.testing.assert_allclose(summed + bias, y, atol=1e-5)


def test_tile_forward_with_noisy_io_needs_a_key():
  w = jnp.full((3, 4), 0.1)
  y = M.tile_forward(w, jnp.ones((2, 4)), M.IOParameters(), jax.random.key(0))
  assert y.shape == (2, 3) and bool(jnp.all(jnp.isfinite(y)))
  np.testing.assert_allclose(y, 0.4, atol=0.3)
  with pytest.raises(ValueError, match="tile_forward: key is None"):
    M.tile_forward(w, jnp.ones((2, 4)), M.IOParameters())
  with pytest.raises(ValueError, match=re.escape("tile_backward: d has shape (2, 4): allowed is [3] or [rows, 3]")):
    M.tile_backward(w, jnp.ones((2, 4)))


def test_bad_paths_indices_shapes_and_names_are_refused():
  _, config, state, _ = _trained("mrl")
  with pytest.raises(ValueError, match=r"set_tile_weights\.path = 'l3/weight' is invalid: allowed range is one of "
                                       r"\('blocks', 0, 'weight'\), \('l1', 'weight'\)"):
    M.set_tile_weights(state, "l3/weight", 0, jnp.zeros((3, 4)))
  with pytest.raises(ValueError, match=re.escape("set_tile_weights.index = 3 is invalid: allowed range is [0, 2]")):
    M.set_tile_weights(state, "l1/weight", 3, jnp.zeros((3, 4)))
  with pytest.raises(ValueError, match=re.escape("get_tile_weights.index = -1 is invalid: allowed range is [0, 2]")):
    M.get_tile_weights(state, "l1/weight", -1)
  with pytest.raises(ValueError, match=re.escape("set_tile_weights.weights has shape (4, 3): allowed shape is (3, 4)")):
    M.set_tile_weights(state, "l1/weight", 0, jnp.zeros((4, 3)))
  with pytest.raises(ValueError, match=r"set_hidden_parameters\.name = 'max_bound' is invalid: allowed range is one "
                                       r"of .*'max_bound_0'"):
    M.set_hidden_parameters(state, "l1/weight", {"max_bound": jnp.zeros((3, 4))})
  with pytest.raises(ValueError, match=re.escape("set_hidden_parameters.ptr has shape (2,): allowed shape is (3,)")):
    M.set_hidden_parameters(state, "l1/weight", {"ptr": jnp.zeros((2,), jnp.int32)})
  with pytest.raises(ValueError, match="config is a TransferCompound with 2 tile"):
    M.analog_tiles(state, optim.ttv1(4))
  with pytest.raises(TypeError, match="config is a str: allowed are None or one of PulsedDevice"):
    M.visible_weight(state, "l1/weight", "mrl")
  with pytest.raises(ValueError, match="opt_state holds no analog weights"):
    M.get_hidden_parameters(optax.sgd(0.1).init({"w": jnp.zeros(2)}), "w")
  assert M.analog_tiles(optax.sgd(0.1).init({"w": jnp.zeros(2)})) == []


def test_write_noise_needs_config_and_key():
  dev = M.SoftBoundsDevice(dw_min=0.05, write_noise_std=1.0)
  state = optim.analog_sgd(dev, 0.1, key=0).init({"w": jnp.zeros((3, 4))})
  with pytest.raises(ValueError, match=r"set_tile_weights: the tile at \['w'\]\[0\] has write noise: pass config"):
    M.set_tile_weights(state, "w", 0, jnp.full((3, 4), 0.2))
  new = M.set_tile_weights(state, "w", 0, jnp.full((3, 4), 0.2), config=dev, key=jax.random.key(1))
  (tile,) = M.analog_tiles(new, dev)
  np.testing.assert_allclose(tile.conductance, 0.2, rtol=1e-6)  # programmed conductances
  assert not np.array_equal(tile.weights, tile.conductance)  # read through fresh write noise
  assert "persistent_weights" in M.get_hidden_parameters(new, "w")


def test_vmapped_seeds_keep_their_axis():
  params = {"w": jnp.zeros((3, 4))}
  init = lambda k: optim.transfer_compound(_MRL, 0.1, key=k).init(params)
  state = jax.vmap(init)(jax.random.split(jax.random.key(0), 2))
  tiles = M.analog_tiles(state, _MRL)
  assert [t.weights.shape for t in tiles] == [(2, 3, 4)] * 3
  assert M.visible_weight(state, "w", _MRL).shape == (2, 3, 4)
  same = M.set_tile_weights(state, "w", 1, jnp.full((3, 4), 0.1))  # one value for every seed
  np.testing.assert_allclose(M.get_tile_weights(same, "w", 1), 0.1)
  per_seed = jnp.stack([jnp.full((3, 4), 0.1), jnp.full((3, 4), -0.1)])
  np.testing.assert_allclose(M.get_tile_weights(M.set_tile_weights(state, "w", 1, per_seed), "w", 1), per_seed)
  with pytest.raises(ValueError, match=re.escape("allowed shape is (2, 3, 4), or (3, 4) for every seed alike")):
    M.set_tile_weights(state, "w", 1, jnp.zeros((5, 3, 4)))
  bounds = M.get_hidden_parameters(state, "w")["max_bound_0"]
  assert bounds.shape == (2, 3, 4) and not np.array_equal(bounds[0], bounds[1])  # per-seed devices


def test_plots_read_the_tiles_through_the_api():
  _, _, state, _ = _trained("mrl")
  stacks = plots.tiles_from_opt_state(state)
  assert sorted(stacks) == ["blocks/0/weight", "l1/weight"]
  for k in range(3):
    np.testing.assert_array_equal(stacks["l1/weight"][k], M.get_tile_weights(state, "l1/weight", k))
  assert plots.tiles_from_opt_state(_trained("analog_sgd")[2]) == {}  # one tile per weight: nothing to compare


def test_help_leads_to_the_readme_section_and_its_snippet_runs():
  assert "Inspecting tiles" in M.__doc__ and "analog_tiles" in M.__doc__
  readme = (Path(__file__).parents[1] / "README.md").read_text()
  section = readme.split("## Inspecting tiles", 1)[1]
  snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
  exec(compile(snippet, "README.md: Inspecting tiles", "exec"), {})


def test_works_on_an_nnx_optimizer_after_updates():
  """``nnx.Optimizer`` keeps the device states as the algorithm returns them, so its ``opt_state`` reads and sets
  like any other after training steps."""
  model = nn.AnalogLinear(4, 3, rngs=nnx.Rngs(0))
  tx = nn.analog_partition(optim.transfer_compound(_MRL, 0.05, key=jax.random.key(0)), optax.sgd(0.05),
                           nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  loss_fn = lambda m, x, y: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
  for _ in range(2):
    _, grads = nn.value_and_analog_grad(loss_fn)(model, jnp.ones((8, 4)), jnp.zeros(8, jnp.int32))
    optimizer.update(model, grads)
  assert [(t.path, t.index) for t in M.analog_tiles(optimizer.opt_state, _MRL)] == [(("weight",), k) for k in range(3)]
  optimizer.opt_state = M.set_tile_weights(optimizer.opt_state, "weight", 0, jnp.full((3, 4), 0.1))
  np.testing.assert_array_equal(M.get_tile_weights(optimizer.opt_state, "weight", 0), np.full((3, 4), 0.1, np.float32))
