"""The native XLA FFI pulsed update equals the pure-jnp reference bit for bit (jit, vmap, donation), under
every ISA variant of the CPU kernel this machine runs (the ``cpu_variant`` fixture of conftest.py)."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrl_jax as M
from mrl_jax import _native
from mrl_jax.update import pulsed_update


DEVICES = {
    "constant": M.ConstantStepDevice(dw_min=0.05),
    "constant_clean": M.ConstantStepDevice(dw_min=0.05, dw_min_std=0.0),
    "linear_mult": M.LinearStepDevice(dw_min=0.05, gamma_up=0.3, gamma_down=0.6, w_max=1, w_min=-1),
    "linear_add": M.LinearStepDevice(dw_min=0.05, gamma_up=0.3, gamma_down=0.6, mult_noise=False),
    "softbounds": M.SoftBoundsDevice(dw_min=0.05, w_max=1, w_min=-1),
    "sbref": M.SoftBoundsReferenceDevice(dw_min=0.05, reference_std=0.1, subtract_symmetry_point=True),
    "sbref_mult": M.SoftBoundsReferenceDevice(dw_min=0.05, mult_noise=True),
    "expstep": M.ExpStepDevice(dw_min=0.05),
    "pcm_complex_noise": M.PCMPresetDevice(),
    "powstep": M.PowStepDevice(dw_min=0.05, pow_gamma=1.7, pow_up_down=0.2),
    "piecewise": M.PiecewiseStepDevice(dw_min=0.05, piecewise_up=(1.5, 1.2, 1.0, 0.8, 0.5),
                                       piecewise_down=(0.5, 0.8, 1.0, 1.2, 1.5)),
    "reram_sb_preset": M.ReRamSBPresetDevice(subtract_symmetry_point=True),
}
UPDATES = {
    "um_ublm": M.UpdateParameters(),
    "fixed_bl": M.UpdateParameters(update_management=False, update_bl_management=False),
    "um_only": M.UpdateParameters(update_bl_management=False, desired_bl=10),
    "variable_bl": M.UpdateParameters(update_management=False, update_bl_management=False, fixed_bl=False,
                                      desired_bl=5),
    "res": M.UpdateParameters(res=0.05, desired_bl=7),
    "mean_count": M.UpdateParameters(pulse_type="mean_count"),
    "deterministic_implicit": M.UpdateParameters(pulse_type="deterministic_implicit", x_res_implicit=0.1),
    "stochastic": M.UpdateParameters(pulse_type="stochastic", desired_bl=31),
}


def _inputs(out=7, inp=9, rows=6, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (rows, inp)).astype(np.float32)
  d = rng.uniform(-1, 1, (rows, out)).astype(np.float32)
  x[1, 2] = 0.0
  d[2, 3] = 0.0
  w0 = rng.uniform(-0.3, 0.3, (out, inp)).astype(np.float32)
  return jnp.asarray(w0), jnp.asarray(x), jnp.asarray(d)


def test_extension_is_built_and_registered():
  assert _native.available(), _native.import_error()
  assert "cpu" in _native.registered_platforms()


@functools.lru_cache(maxsize=None)
def _reference_and_native(device_name, update_name, summed):
  """The jnp result and the jitted native call of one case; cached, so each variant only re-runs the kernel."""
  device, update = DEVICES[device_name], UPDATES[update_name].replace(aggregate_pulses=summed)
  w0, x, d = _inputs()
  params = device.init(jax.random.key(1), w0.shape)

  def run(engine, w, p):
    return pulsed_update(w, p, x, d, jnp.float32(0.3), jax.random.key(3), device, update, engine=engine)

  ref = np.asarray(jax.jit(run, static_argnums=0)("jnp", w0, params))
  assert np.mean(ref != np.asarray(w0)) > 0.3  # the update does something
  native = jax.jit(functools.partial(run, "native"))
  return ref, lambda: np.asarray(native(w0, params))


@pytest.mark.parametrize("update_name", sorted(UPDATES))
@pytest.mark.parametrize("device_name", sorted(DEVICES))
def test_native_equals_reference_bitwise(device_name, update_name, cpu_variant):
  ref, native = _reference_and_native(device_name, update_name, False)
  np.testing.assert_array_equal(native(), ref)


@pytest.mark.parametrize("update_name", sorted(UPDATES))
@pytest.mark.parametrize("device_name", ["constant", "constant_clean"])
def test_native_equals_reference_bitwise_with_summed_pulses(device_name, update_name, cpu_variant):
  ref, native = _reference_and_native(device_name, update_name, True)
  np.testing.assert_array_equal(native(), ref)


@functools.lru_cache(maxsize=None)
def _sparse_case(summed):
  device, update = DEVICES["constant"], M.UpdateParameters(aggregate_pulses=summed)
  w0, x, d = _inputs(out=16, inp=40, rows=5, seed=7)
  x = x * (jnp.arange(40) % 5 == 0)  # 8 of 40 inputs nonzero
  params = device.init(jax.random.key(2), w0.shape)
  run = lambda engine: jax.jit(lambda: pulsed_update(w0, params, x, d, 0.3, jax.random.key(5), device, update,
                                                     engine=engine))
  ref = np.asarray(run("jnp")())
  changed = np.mean(ref != np.asarray(w0))
  assert 0.05 < changed < 0.3
  native = run("native")
  return ref, lambda: np.asarray(native())


@pytest.mark.parametrize("summed", [False, True], ids=["pulse_by_pulse", "summed"])
def test_native_equals_reference_with_sparse_inputs(summed, cpu_variant):
  """Most crosspoints get no pulse (the kernels' lane-list paths instead of their dense ones)."""
  ref, native = _sparse_case(summed)
  np.testing.assert_array_equal(native(), ref)


@functools.lru_cache(maxsize=None)
def _vmap_case(device_name, summed):
  device, update = DEVICES[device_name], M.UpdateParameters(aggregate_pulses=summed)
  w0, x, d = _inputs(seed=4)
  seeds = jax.random.split(jax.random.key(9), 4)

  def run(engine, key):
    k_dev, k_up = jax.random.split(key)
    params = device.init(k_dev, w0.shape)
    return pulsed_update(w0, params, x, d, 0.2, k_up, device, update, engine=engine)

  ref = np.asarray(jax.jit(jax.vmap(lambda k: run("jnp", k)))(seeds))
  vmapped = jax.jit(jax.vmap(lambda k: run("native", k)))
  single = jax.jit(lambda k: run("native", k))
  return ref, lambda: (np.asarray(vmapped(seeds)), np.stack([np.asarray(single(k)) for k in seeds]))


@pytest.mark.parametrize("device_name, summed", [("softbounds", False), ("piecewise", False),
                                                  ("pcm_complex_noise", False), ("constant", True)])
def test_native_equals_reference_under_vmap_over_seeds(device_name, summed, cpu_variant):
  ref, native = _vmap_case(device_name, summed)
  out, loop = native()
  np.testing.assert_array_equal(out, ref)
  np.testing.assert_array_equal(out, loop)
  assert not np.array_equal(out[0], out[1])  # seeds differ


def test_vmap_emits_one_batched_kernel_call():
  device, update = DEVICES["softbounds"], M.UpdateParameters()
  w0, x, d = _inputs()
  params = device.init(jax.random.key(0), w0.shape)
  fn = jax.vmap(lambda k: pulsed_update(w0, params, x, d, 0.2, k, device, update, engine="native"))
  hlo = jax.jit(fn).lower(jax.random.split(jax.random.key(0), 8)).as_text()
  assert hlo.count("mrl_pulsed_update") == 1
  assert "while" not in hlo.split("mrl_pulsed_update")[0].split("func.func")[-1]


def test_update_is_in_place_with_donation():
  device, update = DEVICES["constant"], M.UpdateParameters()
  _, x, d = _inputs(out=64, inp=64)
  w = jnp.zeros((64, 64), jnp.float32) + 0.0
  params = device.init(jax.random.key(0), w.shape)
  step = jax.jit(lambda w, k: pulsed_update(w, params, x, d, 0.2, k, device, update, engine="native"),
                 donate_argnums=0)
  compiled = step.lower(w, jax.random.key(1)).compile().as_text()
  assert "output_to_operand_aliasing" in compiled or "input_output_alias" in compiled
  ptr = w.unsafe_buffer_pointer()
  new = step(w, jax.random.key(1))
  new.block_until_ready()
  assert w.is_deleted()
  assert new.unsafe_buffer_pointer() == ptr


def test_bad_shapes_and_dtypes_raise_at_trace_time():
  device, update = DEVICES["constant"], M.UpdateParameters()
  w0, x, d = _inputs()
  params = device.init(jax.random.key(0), w0.shape)
  with pytest.raises(ValueError, match=r"weights \(7, 9\).*x \(6, 8\)"):
    pulsed_update(w0, params, x[:, :8], d, 0.1, jax.random.key(0), device, update, engine="native")
  with pytest.raises(ValueError, match="x: expected dtype float32, got float16"):
    pulsed_update(w0, params, x.astype(jnp.float16), d, 0.1, jax.random.key(0), device, update, engine="native")
  with pytest.raises(ValueError, match="lr: expected a scalar"):
    pulsed_update(w0, params, x, d, jnp.ones(3), jax.random.key(0), device, update, engine="native")
  with pytest.raises(ValueError, match="engine"):
    pulsed_update(w0, params, x, d, 0.1, jax.random.key(0), device, update, engine="cuda")


def test_kernel_reports_inconsistent_operands():
  """Calling the FFI target directly with a mismatched operand fails with all shapes in the message."""
  device, update = DEVICES["constant"], M.UpdateParameters()
  attrs = _native.kernel_attrs(device, update, device.granularity)
  call = jax.ffi.ffi_call(_native.TARGET_PULSED_UPDATE,
                          (jax.ShapeDtypeStruct((3, 4), jnp.float32), jax.ShapeDtypeStruct((2, 10), jnp.uint32)))
  planes = [jnp.zeros((3, 4))] * 5 + [jnp.zeros((3, 5))]
  with pytest.raises(Exception, match=r"inconsistent operand shapes: weights \[3,4\], params \[3,4\] .* \[3,5\]"):
    call(jnp.zeros((3, 4)), *planes, jnp.zeros((2, 4)), jnp.zeros((2, 3)), jnp.float32(0.1),
         jnp.zeros(2, jnp.uint32), jnp.zeros(65536), **attrs).block_until_ready()


def test_non_finite_inputs_skip_the_update():
  device, update = DEVICES["softbounds"], M.UpdateParameters()
  w0, x, d = _inputs()
  params = device.init(jax.random.key(0), w0.shape)
  for engine in ("jnp", "native"):
    for bad_x, bad_lr in ((x.at[0, 0].set(jnp.nan), 0.1), (x, jnp.inf), (x.at[2, 1].set(jnp.inf), 0.1)):
      out = pulsed_update(w0, params, bad_x, d, bad_lr, jax.random.key(0), device, update, engine=engine)
      np.testing.assert_array_equal(np.asarray(out), np.asarray(w0))


_THREAD_SCRIPT = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp, numpy as np
    import mrl_jax as M
    from mrl_jax.update import pulsed_update
    dev = M.SoftBoundsDevice(dw_min=0.01)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (32, 96)).astype(np.float32))
    d = jnp.asarray(rng.uniform(-1, 1, (32, 80)).astype(np.float32))
    p = dev.init(jax.random.key(0), (80, 96))
    w = pulsed_update(jnp.zeros((80, 96)), p, x, d, 0.1, jax.random.key(1), dev, M.UpdateParameters(), engine='native')
    sys.stdout.write(np.asarray(w).tobytes().hex())
""")


def test_result_independent_of_thread_count(cpu_variant):
  """Same key, same bits with one CPU (a one-thread XLA pool) and with all CPUs; the variant forced through
  ``$MRL_CPU_VARIANT`` as a user would."""
  env = dict(os.environ, MRL_CPU_VARIANT=cpu_variant)
  runs = []
  for prefix in ([], ["taskset", "-c", "0"]):
    out = subprocess.run(prefix + [sys.executable, "-c", _THREAD_SCRIPT], capture_output=True, text=True, env=env,
                         check=True)
    runs.append(out.stdout)
  assert len(runs[0]) == 80 * 96 * 8 and runs[0] == runs[1]


def test_variants_give_identical_bits_in_one_process():
  """The same compiled program, run under each variant in turn, gives one result (no per-variant jit cache)."""
  ref, native = _reference_and_native("softbounds", "um_ublm", False)
  results = {}
  for name, runs in _native.cpu_variants().items():
    if runs:
      with _native.forced_cpu_variant(name):
        assert _native.cpu_variant() == name
        results[name] = native()
  assert len(results) >= 1 and all(np.array_equal(r, ref) for r in results.values())


def test_forcing_a_variant_validates_its_name_and_the_cpu(monkeypatch):
  before = _native.cpu_variant()
  with pytest.raises(ValueError, match=r"cpu_variant = 'avx512' is invalid: allowed is 'auto' or one of 'baseline'"):
    _native.set_cpu_variant("avx512")
  # A CPU without AVX-512 (simulated): the message names the variant, its flags and the flags found.
  monkeypatch.setattr(_native, "cpu_variants", lambda: {"baseline": True, "x86-64-v3": True, "x86-64-v4": False})
  monkeypatch.setattr(_native, "cpu_flags", lambda: ["avx", "avx2", "fma"])
  with pytest.raises(ValueError, match=r"'x86-64-v4' cannot run on this CPU: it needs avx512f .*CPU flags found: "
                                       r"avx avx2 fma; allowed here: 'auto', 'baseline', 'x86-64-v3'"):
    _native.set_cpu_variant("x86-64-v4")
  assert _native.cpu_variant() == before  # nothing changed


def test_bad_variant_in_the_environment_is_a_clear_error_at_import():
  env = dict(os.environ, MRL_CPU_VARIANT="x86-64-v9")
  res = subprocess.run([sys.executable, "-c", "import mrl_jax"], capture_output=True, text=True, env=env)
  assert res.returncode != 0
  assert "$MRL_CPU_VARIANT: cpu_variant = 'x86-64-v9' is invalid" in res.stderr
  assert "Illegal instruction" not in res.stderr


def test_mean_count_quotient_is_exact():
  """The jnp twin's mean-count coincidences round the exactly rounded cd / bl · cx, as the kernel does: XLA turned
  a division by a broadcast scalar into a multiplication by its reciprocal (21/28·22 gave 16.500002 → 17 pulses,
  the kernel 16.5 → 16), found by the property tests on one example in thousands."""
  from mrl_jax import pulses
  up, dw = M.UpdateParameters(pulse_type="mean_count"), 0.1
  rng = np.random.default_rng(3)
  rows = [(np.array([-1.5217143, 1.4519697, 1.8629990, -0.8953878, 0.6483480, 0.2313087, -1.6891792], np.float32),
           np.array([-1.5777767, 0.4719570, 0.8982464, -1.1743343, 0.3238379], np.float32))]
  rows += [(rng.uniform(-2, 2, 7).astype(np.float32), rng.uniform(-2, 2, 5).astype(np.float32)) for _ in range(200)]
  lr = np.float32(0.92719597)
  count = jax.jit(lambda x, d: pulses.row_counts(up, jnp.zeros(2, jnp.uint32), jnp.uint32(0), x, d, lr, dw)[0])
  halves = 0
  for x, d in rows:
    bl, a, b = (np.asarray(v) for v in pulses.row_bl_and_scales(up, np.abs(x).max(), np.abs(d).max(), lr, dw))
    blf = np.float32(bl)
    cx = np.clip(np.round(blf * (np.abs(x) * b)), 0, blf).astype(np.float32)
    cd = np.clip(np.round(blf * (np.abs(d) * a)), 0, blf).astype(np.float32)
    q = cd[:, None] / np.maximum(blf, np.float32(1)) * cx[None, :]
    halves += np.sum(q % 1 == 0.5)
    np.testing.assert_array_equal(np.asarray(count(x, d)), np.round(q).astype(np.int32))
  assert halves > 0  # the cases that tell the two quotients apart occur
