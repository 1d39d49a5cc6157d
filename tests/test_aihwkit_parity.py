"""Seed-parity fixtures of AIHWKit 1.1.0 (issue 17; ``tests/fixtures/make_parity_fixtures.py``): the weight
mapping ``weight_scaling_omega``, the mixed-precision commit, noise-free traces of the reference preset families and
the noisy reference device. Every configuration is the translator's reading (``mrl_jax.aihwkit.from_rpu_config``)
of the fixture's AIHWKit configuration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mrl_jax import nn
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.analog_state import weight_states
from mrl_jax.io import PERFECT_IO
from mrl_jax.optim import AnalogGradient
from mrl_jax.pulses import PulseType, UpdateParameters
from tests.conftest import load_fixture
from mrl_jax.models import LeNet5

# ---- weight_scaling_omega -------------------------------------------------------------------------------------

OMEGA, OMEGA_META = load_fixture("aihwkit_omega_mapping")


def _omega_config(case):
  """The case's ``FloatingPointRPUConfig`` (ω 0.6, columnwise or per tile, learned out scaling or not), translated."""
  cfg = from_rpu_config(OMEGA_META["cases"][case]["plain_rpu_config"])
  spec = OMEGA_META["cases"][case]
  assert cfg.mapping.weight_scaling_omega == OMEGA_META["omega"]
  assert (cfg.mapping.weight_scaling_columnwise, cfg.mapping.learn_out_scaling) == \
      (spec["weight_scaling_columnwise"], spec["learn_out_scaling"])
  return cfg


def _mapped_layer(case):
  cfg = _omega_config(case)
  layer = nn.AnalogLinear(6, 4, **cfg.layer_kwargs(), rngs=nnx.Rngs(0))
  programmed, alpha = nn.map_weights(OMEGA["w"], cfg.mapping.weight_scaling_omega,
                                     cfg.mapping.weight_scaling_columnwise)
  layer.weight[...] = programmed
  layer.mapping_scale[...] = alpha
  layer.bias[...] = jnp.asarray(OMEGA["b"])
  return layer


@pytest.mark.parametrize("case", sorted(OMEGA_META["cases"]))
def test_map_weights_is_aihwkit_set_weights(case):
  """The programmed weights and mapping scales of ``set_weights(apply_weight_scaling=True)``, bit for bit
  (an all-zero row keeps α = 1)."""
  mapping = _omega_config(case).mapping
  omega, columnwise = mapping.weight_scaling_omega, mapping.weight_scaling_columnwise
  eager = nn.map_weights(OMEGA["w"], omega, columnwise)
  jitted = jax.jit(nn.map_weights, static_argnums=(1, 2))(OMEGA["w"], omega, columnwise)
  for programmed, alpha in (eager, jitted):
    np.testing.assert_array_equal(np.asarray(programmed), OMEGA[f"{case}_programmed"])
    np.testing.assert_array_equal(np.asarray(alpha), OMEGA[f"{case}_mapping_scales"])


@pytest.mark.parametrize("case", sorted(OMEGA_META["cases"]))
def test_mapped_layer_forward_backward_update_match_aihwkit(case):
  """``y = α ⊙ (W̄ x) + b`` (times the learned scale, 1 at the start), the input gradient ``W̄ᵀ(α ⊙ g)``, and the
  update's ``d = g/α`` (AIHWKit ``pre_update``): one exact SGD step of the programmed weights. Float32 sums in a
  different order: tolerances of a few ulps of the largest term."""
  layer = _mapped_layer(case)
  x, c = jnp.asarray(OMEGA["x"]), jnp.asarray(OMEGA["c"])
  np.testing.assert_allclose(np.asarray(layer(x)), OMEGA[f"{case}_y"], rtol=0, atol=1e-6)
  grad_x = jax.grad(lambda v: jnp.sum(layer(v) * c))(x)
  np.testing.assert_allclose(np.asarray(grad_x), OMEGA[f"{case}_grad_x"], rtol=0, atol=1e-6)
  _, grads = nn.value_and_analog_grad(lambda m, v: jnp.sum(m(v) * c))(layer, x)
  g = grads["weight"].get_value()
  step = -OMEGA_META["lr"] * (g.d.T @ g.x)
  np.testing.assert_allclose(np.asarray(step), OMEGA[f"{case}_programmed_after_step"] - OMEGA[f"{case}_programmed"],
                             rtol=0, atol=2e-6)


@pytest.mark.parametrize("columnwise", (True, False))
def test_mapped_layer_programs_its_initial_draw(columnwise):
  """At construction the kaiming draw is programmed as ``map_weights`` does (AIHWKit's ``reset_parameters`` →
  ``set_weights``): same draw as an unmapped layer, bias unscaled; no mapping without ω."""
  plain = nn.AnalogConv2d(2, 3, 3, rngs=nnx.Rngs(4))
  mapped = nn.AnalogConv2d(2, 3, 3, weight_scaling_omega=0.6, weight_scaling_columnwise=columnwise,
                           rngs=nnx.Rngs(4))
  programmed, alpha = nn.map_weights(plain.weight[...], 0.6, columnwise)
  np.testing.assert_array_equal(np.asarray(mapped.weight[...]), np.asarray(programmed))
  np.testing.assert_array_equal(np.asarray(mapped.mapping_scale[...]), np.asarray(alpha))
  np.testing.assert_array_equal(np.asarray(mapped.bias[...]), np.asarray(plain.bias[...]))
  assert alpha.shape == ((3,) if columnwise else (1,)) and plain.mapping_scale is None
  assert not isinstance(mapped.mapping_scale, nnx.Param)  # fixed: never trained
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 2))
  np.testing.assert_allclose(np.asarray(mapped(x)), np.asarray(plain(x)), rtol=0, atol=1e-5)


def test_bad_omega_names_the_field():
  with pytest.raises(ValueError, match="AnalogLinear.weight_scaling_omega"):
    nn.AnalogLinear(3, 2, weight_scaling_omega=-0.1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="map_weights.omega"):
    nn.map_weights(jnp.ones((2, 2)), 0.0, True)


def test_lenet_carries_the_mapping_to_every_layer():
  model = LeNet5(rngs=nnx.Rngs(0), weight_scaling_omega=0.6, weight_scaling_columnwise=True)
  for layer in (model.conv1, model.conv2, model.fc1, model.fc2):
    assert float(jnp.max(jnp.abs(layer.weight[...]))) == pytest.approx(0.6, rel=1e-6)
    assert layer.mapping_scale[...].shape == (layer.weight[...].shape[0],)


# ---- mixed-precision commit -----------------------------------------------------------------------------------

MP, MP_META = load_fixture("aihwkit_mp_commit")


def _mp_commits(n_keys: int, engine: str):
  """``[n_keys, 3, 6]`` pulse counts of the fixture's protocol: χ rows = lr·x (one-hot d), committed at update 1."""
  dw = MP_META["dw_min"]
  cfg = from_rpu_config(MP_META["plain_rpu_config"])
  assert cfg.device.dw_min == dw and cfg.update == UpdateParameters()
  params = {"w": jnp.zeros((3, 6), jnp.float32)}
  first = {"w": AnalogGradient(jnp.asarray(MP["x"]), jnp.eye(3, dtype=jnp.float32))}
  second = {"w": AnalogGradient(jnp.zeros((3, 6), jnp.float32), jnp.zeros((3, 3), jnp.float32))}

  def run(key):
    tx = cfg.optimizer(MP_META["lr"], key, engine=engine)
    state = tx.init(params)
    upd0, state = tx.update(first, state, params)
    upd1, state = tx.update(second, state, params)
    return upd0["w"], upd0["w"] + upd1["w"], state.leaves["w"].chi

  after0, after1, chi = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(17), n_keys))
  return np.asarray(after0), np.rint(-np.asarray(after1) / dw), np.asarray(chi)


@pytest.mark.parametrize("engine", ("jnp", "native"))
def test_mixed_precision_commit_matches_aihwkit(engine, native_available):
  """One commit of counts n = trunc(χ/ε) through AIHWKit's pulse train (UM/UBLM, BL ≤ 31): a row with
  |n| ∈ {1 … 5} gives Binomial(5, |n|/5) counts, an all-±1 row exactly n, a row with max |n| = 40 gives 31 pulses
  there and Binomial(31, |n|/40) elsewhere. Means agree within 4 standard errors (from both samples' variances);
  zero-variance crosspoints agree exactly; the remainder χ − n·ε is AIHWKit's."""
  if engine == "native" and not native_available:
    engine = "jnp"  # the native kernel is optional; the jnp twin gives the same bits
  ref = MP["counts"].astype(np.float64)
  after0, ours, chi = _mp_commits(4000, engine)
  assert np.all(after0 == 0)  # AIHWKit never commits at update 0
  # Both sides count pulses as −ΔW/dw: AIHWKit keeps χ = +lr·d·x and moves W by −n·dw, mrl_jax keeps
  # χ = −lr·dᵀx and moves W by +n·ε; the weights move alike and χ has the opposite sign.
  m_ref, v_ref = ref.mean(0), ref.var(0, ddof=1)
  m_our, v_our = ours.mean(0), ours.var(0, ddof=1)
  se = np.sqrt(v_ref / len(ref) + v_our / len(ours))
  exact = (v_ref == 0) & (v_our == 0)
  np.testing.assert_array_equal(m_our[exact], m_ref[exact])
  assert np.all(np.abs(m_our - m_ref)[~exact] <= 4 * se[~exact]), (m_our, m_ref, se)
  np.testing.assert_allclose(chi, np.broadcast_to(-MP["chi_after"], chi.shape), rtol=0, atol=1e-9)


# ---- noise-free traces of the reference preset families -------------------------------------------------------

TRACES, TRACES_META = load_fixture("aihwkit_reference_traces")


def _trace_transform(case: str):
  """The fixture's noise-free version of the reference preset of ``case`` (``Mnist_LeNet5.py``), translated:
  devices without spreads or noise, DeterministicImplicit pulses, perfect reads, every other field as the preset
  (TT-v3: random input choppers off)."""
  cfg = from_rpu_config(TRACES_META["cases"][case]["plain_rpu_config"])
  assert cfg.forward_io == cfg.backward_io == PERFECT_IO
  writes = [cfg.update] if case in ("sgd", "mp") else [cfg.update, cfg.config.transfer_update]
  assert all(u.pulse_type == PulseType.DETERMINISTIC_IMPLICIT for u in writes)
  return cfg.optimizer(TRACES_META["cases"][case]["lr"], 0, engine="jnp")


@pytest.mark.parametrize("case", ("sgd", "ttv1", "ttv2", "ttv3", "ttv4", "mp"))
def test_reference_family_trace_matches_aihwkit(case):
  """40 updates from W = 0, noise-free (``make_parity_fixtures.py --only traces``), bit for bit: analog SGD and
  TT-v1 on the MNIST SoftBoundsReference (dw_min 0.2), buffered TT-v2 (20-state SoftBounds, BL-10 gradient,
  BL-1 transfers; the buffer too), chopped TT-v3 (auto_scale, auto_granularity 1000, BL 5; choppers off) and
  dynamic TT-v4 (periodic choppers, tail_weightening 10) with the fast tile A and the buffer H (C stays 0 in 40
  updates: the buffer does not reach the threshold), mixed precision (commits through the pulse train; χ too).
  The chopped cases scale their rows by (0.1, 0.1, 0.1, 3) in turn: constant rows stay below one pulse under
  auto_scale."""
  tx = _trace_transform(case)
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  scales = jnp.asarray(TRACES_META["cases"][case]["row_scales"], jnp.float32)
  x, d = jnp.asarray(TRACES["x"]), jnp.asarray(TRACES["d"])

  def step(carry, t):
    p, s = carry
    c = scales[t % scales.shape[0]]
    upd, s = tx.update({"w": AnalogGradient(x * c, d * c)}, s, p)
    p = optax.apply_updates(p, upd)
    leaf = s.leaves["w"] if case == "mp" else weight_states(s)[("w",)]
    hidden = {}
    if case in ("ttv1", "ttv2", "ttv3", "ttv4"):
      hidden = {"hidden_weights_0": leaf.tiles[0].weights, "hidden_weights_1": leaf.tiles[1].weights}
    if case == "ttv2":
      hidden["buffered_FP_weight_0"] = leaf.buffer[0]
    if case in ("ttv3", "ttv4"):
      hidden["buffered_FP_weight_0" if case == "ttv3" else "buffered_FP_weight"] = leaf.buffer
    if case == "mp":
      hidden["hidden_weights_chi"] = -leaf.chi  # AIHWKit's χ has the sign of +d·x (see the commit test)
    return (p, s), (p["w"], hidden)

  steps = jnp.arange(TRACES_META["steps"])
  _, (trace, hidden) = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), steps))(params)
  np.testing.assert_array_equal(np.asarray(trace), TRACES[f"{case}_W"], err_msg=case)
  for name, ours in hidden.items():
    np.testing.assert_array_equal(np.asarray(ours), TRACES[f"{case}_{name}"], err_msg=f"{case} {name}")


# ---- the noisy reference device, statistically -----------------------------------------------------------------

NOISY, NOISY_META = load_fixture("aihwkit_sbref_noisy")


def _var_se(samples):
  """Standard error of the sample variance per element, from the sample's own second and fourth moments."""
  n = samples.shape[0]
  c = samples - samples.mean(0)
  m2, m4 = (c**2).mean(0), (c**4).mean(0)
  return np.sqrt(np.maximum(m4 - m2**2 * (n - 3) / (n - 1), 0) / n)


def test_reference_sgd_device_statistics_match_aihwkit():
  """Analog SGD on ``Mnist_LeNet5.py``'s SoftBoundsReference (dw_min 0.2, ±1, AIHWKit's 30 % spreads and noise,
  BL 31 with UM/UBLM): the weights after 10 identical updates on fresh tiles (own device draws each), 2000 of
  ours against AIHWKit's 1000. Per crosspoint, mean and variance within 4 standard errors (from both samples)."""
  cfg = from_rpu_config(NOISY_META["plain_rpu_config"])
  assert cfg.update == UpdateParameters() and cfg.forward_io == cfg.backward_io == PERFECT_IO
  x, d = jnp.asarray(NOISY["x"]), jnp.asarray(NOISY["d"])
  params = {"w": jnp.zeros((3, 4), jnp.float32)}

  def run(key):
    tx = cfg.optimizer(NOISY_META["lr"], key, engine="jnp")

    def step(carry, _):
      p, s = carry
      upd, s = tx.update({"w": AnalogGradient(x, d)}, s, p)
      return (optax.apply_updates(p, upd), s), None

    (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=NOISY_META["steps"])
    return p["w"]

  ours = np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(23), 2000)), np.float64)
  ref = NOISY["W"].astype(np.float64)
  se_mean = np.sqrt(ours.var(0, ddof=1) / len(ours) + ref.var(0, ddof=1) / len(ref))
  assert np.all(np.abs(ours.mean(0) - ref.mean(0)) <= 4 * se_mean), (ours.mean(0), ref.mean(0), se_mean)
  se_var = np.sqrt(_var_se(ours) ** 2 + _var_se(ref) ** 2)
  assert np.all(np.abs(ours.var(0, ddof=1) - ref.var(0, ddof=1)) <= 4 * se_var), (ours.var(0), ref.var(0), se_var)
