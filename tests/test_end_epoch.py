"""``optim.end_epoch``: a custom loop feeds the warm start's plateau controller once per epoch."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mrl_jax as M
from mrl_jax import optim as O
from mrl_jax.optim.base import AnalogGradient

from conftest import CLEAN

LOSSES = (1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.4)  # rises after epochs 2, 4 (aggressive rule) and 6
STEPS_PER_EPOCH = 3


def _setup(warm_start="via_tile1"):
  dev = M.ConstantStepDevice(dw_min=0.01, w_max=1.0, w_min=-1.0, **CLEAN)
  cfg = O.TransferCompound(device=dev, n_tiles=4, gamma=0.5, transfer_every=(1.0, 2.0, 4.0, 0.0),
                           transfer_lr=(0.2, 0.2, 0.2, 0.2), warm_start=warm_start, engine="jnp")
  tx = O.transfer_compound(cfg, 0.1, key=3)
  params = {"w": jnp.zeros((2, 3), jnp.float32)}
  grad = {"w": AnalogGradient(jnp.full((1, 3), 0.5), jnp.full((1, 2), 0.2))}
  return cfg, tx, params, grad


def _run(feed):
  cfg, tx, params, grad = _setup()
  state = tx.init(params)
  step = jax.jit(lambda s, loss: tx.update(grad, s, params, epoch_loss=loss)[1])
  targets = []
  for epoch, loss in enumerate(LOSSES):
    for i in range(STEPS_PER_EPOCH):
      signal = LOSSES[epoch - 1] if (feed == "extra_arg" and i == 0 and epoch > 0) else np.nan
      state = step(state, np.float32(signal))
    if feed == "end_epoch":
      state = O.end_epoch(cfg, state, loss)
    targets.append(int(O.warm_start_target(state)))
  return state, targets


def test_end_epoch_equals_the_extra_argument():
  by_arg, targets_arg = _run("extra_arg")
  by_call, targets_call = _run("end_epoch")
  # end_epoch after epoch e acts on the first update of epoch e + 1, exactly as epoch_loss= there
  assert targets_call == targets_arg
  assert len(set(targets_arg)) > 2, "the losses must trigger switches"
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), by_call.leaves, by_arg.leaves))


def test_end_epoch_jits_and_vmaps_over_seeds():
  cfg, tx, params, _ = _setup()
  states = jax.vmap(lambda k: tx.init(params))(jnp.arange(2))
  asked = jax.jit(jax.vmap(O.end_epoch, (None, 0, 0)), static_argnums=0)(cfg, states, jnp.array([1.0, 1.0]))
  asked = jax.vmap(O.end_epoch, (None, 0, 0))(cfg, asked, jnp.array([2.0, 0.5]))  # seed 0 rises
  assert np.asarray(O.warm_start(asked).pending).tolist() == [True, False]


def test_end_epoch_without_a_loss_warns_while_the_warm_start_runs():
  cfg, tx, params, _ = _setup()
  state = tx.init(params)
  with pytest.warns(O.WarmStartNotFedWarning, match=r"epoch_loss = None .* stays on tile 3"):
    same = O.end_epoch(cfg, state, None)
  assert same is state
  with pytest.warns(O.WarmStartNotFedWarning, match="epoch_loss = nan"):
    O.end_epoch(cfg, state, float("nan"))
  cfg_off, tx_off, _, _ = _setup("none")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    O.end_epoch(cfg_off, tx_off.init(params), None)  # no warm start: nothing to warn about
  with pytest.raises(TypeError, match="config must be the TransferCompound"):
    O.end_epoch(M.ConstantStepDevice(), state, 1.0)


def test_end_epoch_reaches_through_partition():
  cfg, tx, params, _ = _setup()
  full = {"w": params["w"], "b": jnp.zeros(2)}
  labels = {"w": "analog", "b": "digital"}
  ptx = optax.partition({"analog": tx, "digital": optax.sgd(0.1)}, labels)
  state = ptx.init(full)
  state = O.end_epoch(cfg, state, 1.0)
  state = O.end_epoch(cfg, state, 2.0)
  assert bool(O.warm_start(state).pending)


def test_end_epoch_on_an_nnx_optimizer():
  from flax import nnx
  from mrl_jax import nn
  model = nn.AnalogLinear(4, 3, rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  cfg = O.resl_mnist(4, n_tiles=3).replace(transfer_every=(1.0, 2.0, 4.0), transfer_lr=(0.2, 0.1, 0.1))
  tx = nn.analog_partition(O.transfer_compound(cfg, 0.1, key=0), optax.sgd(0.1), params)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  for loss in (1.0, 2.0):  # a rise: the aggressive rule asks for a switch
    optimizer.opt_state = O.end_epoch(cfg, optimizer.opt_state, loss)
  _, grads = nn.value_and_analog_grad(lambda m, x: jnp.mean(m(x) ** 2))(model, jnp.ones((2, 4)))
  optimizer.update(model, grads)
  assert int(O.warm_start_target(optimizer.opt_state)) == 1


def _unfed_setup(limit):
  cfg, _, params, grad = _setup()
  cfg = cfg.replace(plateau=O.PlateauRule(warn_after_updates=limit))
  return cfg, O.transfer_compound(cfg, 0.1, key=3), params, grad


def _warnings_of(run):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    run()
  return [w for w in caught if issubclass(w.category, O.WarmStartNotFedWarning)]


def test_a_loop_that_never_feeds_the_warm_start_is_warned():
  """``warn_after_updates = 4``: the state counts the updates since the last loss down in every update, and
  ``warm_start_target`` (what a loop reads to report the target) warns once 4 updates passed without one, not
  before; feeding a loss every 3 updates, by ``epoch_loss=`` or ``end_epoch``, or asking for a switch resets the
  count, so that loop is never warned; a vmapped state warns when any seed is overdue."""
  cfg, tx, params, grad = _unfed_setup(4)
  step = jax.jit(lambda s, loss: tx.update(grad, s, params, epoch_loss=loss)[1])

  def loop(n, feed=None):
    state = tx.init(params)
    for i in range(n):
      loss = np.float32(1.0 if (feed == "extra_arg" and i % 3 == 0 and i > 0) else np.nan)
      state = step(state, loss)
      if feed == "end_epoch" and i % 3 == 2:
        state = O.end_epoch(cfg, state, 1.0)
      if feed == "switch" and i % 3 == 2:
        state = O.request_switch(state)
    return state

  for n, expected in ((3, 0), (4, 1), (12, 1)):
    state = loop(n)
    caught = _warnings_of(lambda: O.warm_start_target(state))
    assert len(caught) == expected, n
  assert int(O.warm_start(loop(3)).feed_due_in) == 1
  assert "got no epoch loss for PlateauRule.warn_after_updates updates and stays on tile 3" in str(caught[0].message)
  for feed in ("extra_arg", "end_epoch", "switch"):
    state = loop(12, feed)
    assert _warnings_of(lambda: O.warm_start_target(state)) == [], feed
  batched = jax.jit(jax.vmap(lambda s: tx.update(grad, s, params)[1]))
  states = jax.vmap(lambda k: tx.init(params))(jnp.arange(2))
  for _ in range(5):
    states = batched(states)
  assert len(_warnings_of(lambda: O.warm_start_target(states))) == 1


def test_the_unfed_warning_can_be_turned_off():
  cfg, tx, params, grad = _unfed_setup(None)
  step = jax.jit(lambda s: tx.update(grad, s, params)[1])
  state = tx.init(params)
  for _ in range(20):
    state = step(state)
  assert _warnings_of(lambda: O.warm_start_target(state)) == [] and int(O.warm_start(state).feed_due_in) == -1
  with pytest.raises(ValueError, match=r"PlateauRule.warn_after_updates = 0 is invalid: allowed range is >= 1"):
    O.PlateauRule(warn_after_updates=0)


def test_the_update_holds_no_host_callback():
  """The warm start's bookkeeping stays on the device: a host callback in the update (under vmap: in every step)
  stalled a vmapped sweep's asynchronous dispatch, so the jaxpr of a vmapped update must hold none."""
  _, tx, params, grad = _unfed_setup(4)
  states = jax.vmap(lambda k: tx.init(params))(jnp.arange(2))
  jaxpr = str(jax.make_jaxpr(jax.vmap(lambda s: tx.update(grad, s, params, epoch_loss=jnp.nan)[1]))(states))
  assert "callback" not in jaxpr
