"""Training algorithms: AIHWKit parity (TT-v1), the MRL transfer schedule, the plateau controller,
least-squares ordering, jit/vmap behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mrl_jax as M
from mrl_jax import optim as O
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.optim import AnalogGradient
from mrl_jax.io import PERFECT_IO
from tests.conftest import CLEAN, load_fixture

TRANSFER, TRANSFER_META = load_fixture("aihwkit_transfer")


def test_ttv1_matches_aihwkit():
  """A and C of a clean 2-tile TransferCompound (ConstantStep dw_min 0.01, fast_lr 0.1, transfer every update,
  perfect reads; translated from the fixture's AIHWKit configuration) over 6 single-row updates: means within
  4 SE."""
  cfg = from_rpu_config(TRANSFER_META["cases"]["tt1"]["plain_rpu_config"]).config
  x, d, lr = TRANSFER["tt1_x"], TRANSFER["tt1_d"], float(TRANSFER["tt1_lr"])
  reps = int(TRANSFER["tt1_R"])
  grad = {"w": AnalogGradient(jnp.asarray(x)[None], jnp.asarray(d)[None])}

  def run(key):
    tx = O.transfer_compound(cfg, learning_rate=lr, key=key)
    params = {"w": jnp.zeros((3, 4), jnp.float32)}
    state = tx.init(params)
    trace = []
    for _ in range(6):
      upd, state = tx.update(grad, state, params)
      params = optax.apply_updates(params, upd)
      leaf = state.leaves["w"]
      trace.append((leaf.tiles[0].weights, leaf.tiles[1].weights))
    return jnp.stack([a for a, _ in trace]), jnp.stack([c for _, c in trace])

  a, c = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), reps))
  for name, ours in (("A", np.asarray(a)), ("C", np.asarray(c))):
    ref_mean, ref_std = TRANSFER[f"tt1_{name}_mean"], TRANSFER[f"tt1_{name}_std"]
    se = np.sqrt((ours.std(0, ddof=1) ** 2 + ref_std**2) / reps)
    assert np.all(np.abs(ours.mean(0) - ref_mean) <= 4 * se + 1e-6), name


# ---- the MRL transfer schedule ---------------------------------------------------------------------

K, PERIODS, IN = 4, (2, 4, 8, 16), 5


def expected_schedule(mode, steps, switch_steps):
  """The warm-start and cascade schedule (``compound._warm_hop``, ``step_leaf``) as plain Python: {step: {(src, dst, col)}}, the final
  pointers, and {step: [src]} of pointer moves without a write (``direct`` at target 0: the fork's CPU code)."""
  cuda_like = mode in ("via_tile1", "cuda_exact")
  target = K - 1 if mode != "none" else -1
  ptr = [0] * K
  events, pointer_only = {}, {}

  def ev(step, src, dst):
    events.setdefault(step, set()).add((src, dst, ptr[src]))
    ptr[src] = (ptr[src] + 1) % IN

  for step in range(1, steps + 1):
    if cuda_like and step % PERIODS[0] == 0:
      ev(step, 0, 1)
    if step in switch_steps and target >= 0:
      target -= 1
    if target >= 0:
      if step % PERIODS[1] == 0:
        if mode == "direct" and target >= 1:
          ev(step, 0, target)
        elif mode == "direct":  # the skipped 0 -> 0 self transfer still moves tile 0's pointer
          pointer_only.setdefault(step, []).append(0)
          ptr[0] = (ptr[0] + 1) % IN
        elif mode == "via_tile1" and target >= 2:
          ev(step, 1, target)
        elif mode == "cuda_exact":
          ev(step, 1, target)
    else:
      for k in range(1 if cuda_like else 0, K - 1):
        if step % PERIODS[k] == 0:
          ev(step, k, k + 1)
  return events, ptr, pointer_only


@pytest.mark.parametrize("mode", ["none", "direct", "via_tile1", "cuda_exact"])
def test_mrl_transfer_schedule(mode):
  """Which tile pair, which column, at which step: observed from the tiles themselves."""
  dev = M.ConstantStepDevice(dw_min=0.01, w_max=10.0, w_min=-10.0, **CLEAN)
  cfg = O.TransferCompound(device=dev, n_tiles=K, gamma=0.5, transfer_every=tuple(float(p) for p in PERIODS),
                           transfer_lr=(0.3, 0.25, 0.2, 0.1), scale_transfer_lr=False, fast_lr=1.0,
                           transfer_io=PERFECT_IO, warm_start=mode, engine="jnp",
                           transfer_update=M.UpdateParameters(pulse_type="deterministic_implicit"))
  tx = O.transfer_compound(cfg, key=1)
  params = {"w": jnp.zeros((3, IN), jnp.float32)}
  state = tx.init(params)
  leaf = state.leaves["w"]
  tiles = [t._replace(weights=jnp.full((3, IN), 0.3 + 0.1 * k, jnp.float32)) for k, t in enumerate(leaf.tiles)]
  state = state._replace(leaves={"w": leaf._replace(tiles=tiles)})
  zero_grad = {"w": AnalogGradient(jnp.zeros((1, IN)), jnp.zeros((1, 3)))}
  step = jax.jit(tx.update)
  switch_steps = {6, 11, 20, 23, 29, 40}
  steps = 48
  expected, expected_ptr, pointer_only = expected_schedule(mode, steps, switch_steps)
  observed = {}
  for s in range(1, steps + 1):
    if s in switch_steps:
      state = O.request_switch(state)
    before = state.leaves["w"]
    _, state = step(zero_grad, state, params)
    after = state.leaves["w"]
    moved = np.asarray(after.ptr) - np.asarray(before.ptr)
    sources = [k for k in range(K) for _ in range(int(moved[k] % IN))]
    for k in range(K):
      cols = np.nonzero(np.any(np.asarray(after.tiles[k].weights) != np.asarray(before.tiles[k].weights), axis=0))[0]
      for c in cols:
        observed.setdefault(s, set()).add((k, int(c)))
    want = sorted([src for src, _, _ in expected.get(s, ())] + pointer_only.get(s, []))
    assert sorted(sources) == want, (s, sources, expected.get(s), pointer_only.get(s))
  assert {s: {(d, c) for _, d, c in e} for s, e in expected.items()} == observed
  np.testing.assert_array_equal(np.asarray(state.leaves["w"].ptr), expected_ptr)
  assert len(expected) > 10
  assert (mode == "direct") == bool(pointer_only)


def test_preset_schedules():
  mnist, cifar = O.mrl_mnist(4), O.mrl_cifar(4)
  assert mnist.transfer_every == (2, 10, 50, 250, 1250, 6250, 31250)
  np.testing.assert_allclose(mnist.transfer_lr, [0.1 * 1.2 ** (6 - k) for k in range(7)])
  np.testing.assert_allclose(mnist.gammas, [0.5 ** (6 - k) for k in range(7)])
  assert not mnist.scale_transfer_lr and mnist.device.dw_min == 0.5
  assert cifar.transfer_every == (3, 6, 12, 24, 48, 96, 192, 384) and cifar.scale_transfer_lr
  np.testing.assert_allclose(cifar.transfer_lr, [0.3 * 1.2 ** (7 - k) for k in range(8)])
  assert O.mrl_mnist(10).device.dw_min == pytest.approx(0.2)


# ---- plateau controller --------------------------------------------------------------------------

def _switch_epochs(rule, losses):
  state = O.plateau_init(rule)
  out = []
  for epoch, loss in enumerate(losses, start=1):
    plateau, state = O.plateau_update(rule, state, loss)
    if bool(plateau):
      out.append(epoch)
  return out


def test_plateau_switch_epochs_mnist():
  # epochs 1..: aggressive rule (rise > 1e-4) for the first 4 switches, then 2 of 5 diffs >= -0.01.
  losses = [1.0, 0.9, 0.95,          # rise at epoch 3 -> switch 1
            0.8, 0.85,               # history restarts at epoch 4; rise at 5 -> switch 2
            0.7, 0.6, 0.61,          # rise at 8 -> switch 3
            0.5, 0.50005, 0.6,       # +5e-5 is not a rise; +0.09995 at 11 -> switch 4
            0.5, 0.4, 0.3, 0.2, 0.1, 0.0,    # smooth: 6 entries, all drops of 0.1 -> no switch
            -0.005, -0.008]          # diffs -0.005 and -0.003 are violations -> switch at 19
  assert _switch_epochs(O.MNIST_RULE, losses) == [3, 5, 8, 11, 19]


def test_plateau_switch_epochs_cifar():
  losses = [2.0, 2.1, 1.9, 2.0, 1.8, 1.9, 1.7, 1.8,   # 4 aggressive switches at epochs 2, 4, 6, 8
            1.6, 1.5, 1.4, 1.3, 1.2, 1.1,             # smooth: no rises -> none
            1.2, 1.3]                                  # two rises within the window -> switch at 16
  assert _switch_epochs(O.CIFAR_RULE, losses) == [2, 4, 6, 8, 16]
  # NaN (no epoch boundary) is ignored.
  state = O.plateau_init(O.CIFAR_RULE)
  plateau, new = O.plateau_update(O.CIFAR_RULE, state, jnp.nan)
  assert not bool(plateau) and int(new.count) == 0


# ---- least squares: MRL beats TT-v1, TT-v2 and analog SGD at 4 states ------------------------------

OUT, IN_LS, BATCH = 8, 16, 8


def _least_squares_loss(tx, seed, steps=600):
  w_true = jax.random.uniform(jax.random.key(100), (OUT, IN_LS), minval=-0.6, maxval=0.6)
  params = {"w": jnp.zeros((OUT, IN_LS), jnp.float32)}
  state = tx.init(params)

  def step(carry, i):
    params, state, last_epoch = carry
    x = jax.random.uniform(jax.random.fold_in(jax.random.key(seed), i), (BATCH, IN_LS), minval=-1, maxval=1)
    err = x @ params["w"].T - x @ w_true.T
    loss = 0.5 * jnp.mean(jnp.sum(err**2, axis=-1))
    epoch_loss = jnp.where((i % 50 == 0) & (i > 0), last_epoch, jnp.nan)
    upd, state = tx.update({"w": AnalogGradient(x, err / BATCH)}, state, params, epoch_loss=epoch_loss)
    return (optax.apply_updates(params, upd), state, last_epoch), loss

  def run_epochs(carry, e):
    carry, losses = jax.lax.scan(step, carry, e * 50 + jnp.arange(50))
    return (carry[0], carry[1], jnp.mean(losses)), jnp.mean(losses)

  _, epoch_losses = jax.lax.scan(run_epochs, (params, state, jnp.float32(jnp.nan)), jnp.arange(steps // 50))
  return float(jnp.mean(epoch_losses[-2:]))


def test_mrl_beats_tiki_taka_and_sgd_on_least_squares():
  """4-state SoftBounds devices, 3 seeds: mean final loss of MRL below TT-v1, TT-v2 and analog SGD."""
  lr = 0.1
  algos = {
      "mrl": lambda s: O.transfer_compound(O.mrl_mnist(4, transfer_io=PERFECT_IO), lr, key=s),
      "ttv1": lambda s: O.transfer_compound(O.ttv1(4), lr, key=s),
      "ttv2": lambda s: O.transfer_compound(O.ttv2(4), lr, key=s),
      "sgd": lambda s: O.analog_sgd(M.limited_state_soft_bounds(4), lr, key=s),
  }
  losses = {name: np.mean([_least_squares_loss(make(s), seed=s) for s in range(3)]) for name, make in algos.items()}
  initial = 0.5 * OUT * IN_LS * (0.6**2 / 3) * (1 / 3)
  assert losses["mrl"] < 0.8 * min(losses["ttv1"], losses["ttv2"], losses["sgd"]), losses
  assert losses["mrl"] < initial, (losses, initial)


# ---- jit / vmap / optax composition -------------------------------------------------------------

def test_no_recompilation_and_vmap_over_seeds():
  traces = []
  cfg = O.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.1, 0.1),
                                          warm_start="direct")
  grads = {"w": AnalogGradient(jnp.ones((2, 4)) * 0.5, jnp.ones((2, 3)) * 0.1)}
  params = {"w": jnp.zeros((3, 4), jnp.float32)}

  def one_seed(key):
    tx = O.transfer_compound(cfg, 0.05, key=key)
    return tx.init(params)

  tx0 = O.transfer_compound(cfg, 0.05, key=0)

  @jax.jit
  def step(state, loss):
    traces.append(1)
    return tx0.update(grads, state, params, epoch_loss=loss)[1]

  state = tx0.init(params)
  state = step(state, jnp.float32(jnp.nan))
  state = step(state, jnp.float32(1.0))
  assert len(traces) == 1
  states = jax.vmap(one_seed)(jax.random.split(jax.random.key(3), 4))
  states = jax.jit(jax.vmap(lambda s: tx0.update(grads, s, params)[1]))(states)
  top = np.asarray(states.leaves["w"].tiles[0].weights)
  assert top.shape == (4, 3, 4) and not np.array_equal(top[0], top[1])


@pytest.mark.parametrize("mode", ["via_tile1", "cuda_exact"])
def test_vmapped_seeds_with_shared_count_equal_single_runs(mode):
  """Seeds vmapped with an unbatched ``count`` (sweeps) == each seed run alone, bit for bit, while the
  seeds sit in different warm-start phases (one is switched down to the cascade, the others are not)."""
  cfg = O.mrl_mnist(4, n_tiles=4).replace(transfer_every=(2.0, 3.0, 6.0, 0.0), transfer_lr=(0.4, 0.3, 0.2, 0.1),
                                          warm_start=mode)
  params = {"w": jnp.zeros((3, 5), jnp.float32)}
  xs = jax.random.uniform(jax.random.key(5), (13, 2, 5), minval=-1, maxval=1)
  ds = jax.random.uniform(jax.random.key(6), (13, 2, 3), minval=-0.5, maxval=0.5)
  tx = lambda key: O.transfer_compound(cfg, 0.1, key=key)
  keys = jax.random.split(jax.random.key(7), 3)
  switches = [(0, 1, 2, 3), (), (5,)]  # steps at which each seed is asked to move its target down

  def run_alone(i):
    state = tx(keys[i]).init(params)
    update = jax.jit(tx(keys[i]).update)
    for c in range(13):
      if c in switches[i]:
        state = O.request_switch(state)
      state = update({"w": AnalogGradient(xs[c], ds[c])}, state, params)[1]
    return state

  states = jax.vmap(lambda k: tx(k).init(params))(keys)
  batched = jax.jit(jax.vmap(lambda g, s, c: tx(keys[0]).update(g, s, params, count=c)[1], in_axes=(None, 0, None)))
  for c in range(13):
    if any(c in sw for sw in switches):
      asked = jax.vmap(O.request_switch)(states)
      mask = jnp.asarray([c in sw for sw in switches])
      states = jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), asked, states)
    states = batched({"w": AnalogGradient(xs[c], ds[c])}, states, jnp.int32(c))
  targets = np.asarray(O.warm_start_target(states))
  assert len(set(targets.tolist())) == 3, targets  # three different phases at the end
  bits = lambda a: np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
  for i in range(3):
    alone = run_alone(i)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(bits(a)[i], bits(b)), states, alone)


def test_partition_with_digital_parameters():
  params = {"analog": jnp.zeros((3, 4)), "bias": jnp.ones((3,))}
  labels = {"analog": "analog", "bias": "digital"}
  tx = optax.partition({"analog": O.analog_sgd(M.limited_state_soft_bounds(10), 0.1, key=0),
                        "digital": optax.sgd(0.1)}, labels)
  state = tx.init(params)
  grads = {"analog": AnalogGradient(jnp.ones((2, 4)), jnp.ones((2, 3))), "bias": jnp.ones((3,))}
  upd, state = jax.jit(tx.update)(grads, state, params)
  new = optax.apply_updates(params, upd)
  np.testing.assert_allclose(np.asarray(new["bias"]), 0.9, rtol=1e-6)
  analog = np.asarray(new["analog"])
  assert np.all(analog <= 0) and np.mean(analog < 0) > 0.5  # d, x > 0: pulses only decrease (p = 0.5 each)


def test_analog_leaf_needs_analog_gradient():
  tx = O.analog_sgd(M.limited_state_soft_bounds(4), 0.1, key=0)
  params = {"w": jnp.zeros((3, 4))}
  with pytest.raises(TypeError, match="AnalogGradient"):
    tx.update({"w": jnp.ones((3, 4))}, tx.init(params), params)
  with pytest.raises(ValueError, match=r"x \[rows, 4\] and d \[rows, 3\]"):
    tx.update({"w": AnalogGradient(jnp.ones((2, 5)), jnp.ones((2, 3)))}, tx.init(params), params)


def test_mixed_precision_commits_whole_pulses():
  """χ = −lr·dᵀx = −0.25 with ε = dw_min = 0.1: no commit after update 0 (AIHWKit), then two down pulses
  (−0.2; every count of the row is 2, so the pulse train is exact), χ keeps −0.05."""
  dev = M.ConstantStepDevice(dw_min=0.1, w_max=1.0, w_min=-1.0, **CLEAN)
  tx = O.mixed_precision(O.MixedPrecision(device=dev), learning_rate=0.25, key=0)
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  state = tx.init(params)
  grad = {"w": AnalogGradient(jnp.ones((1, 4)), jnp.ones((1, 3)))}
  upd, state = jax.jit(tx.update)(grad, state, params)
  np.testing.assert_array_equal(np.asarray(upd["w"]), 0.0)
  zero = {"w": AnalogGradient(jnp.zeros((1, 4)), jnp.zeros((1, 3)))}
  upd, state = jax.jit(tx.update)(zero, state, params)
  np.testing.assert_allclose(np.asarray(optax.apply_updates(params, upd)["w"]), -0.2, atol=1e-6)
  np.testing.assert_allclose(np.asarray(state.leaves["w"].chi), -0.05, atol=1e-6)
