"""CUDA checks on a GPU machine: CUDA op == CPU op == jnp reference (bit for bit), and timings.

    python scripts/gpu_check.py OUTDIR
    compute-sanitizer --tool memcheck python scripts/gpu_check.py OUTDIR --sanitize

Writes OUTDIR/gpu_check.json (per-case results and timings) and prints a summary; exits non-zero when a
CUDA result differs from the CPU result. ``--sanitize`` only launches the CUDA kernels of a few cases (every
update setting for three devices and for summed ConstantStep pulses, and a vmapped call), for the slow runs under compute-sanitizer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import mrl_jax as M
from mrl_jax import _native
from mrl_jax.update import pulsed_update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_native import DEVICES, UPDATES, _inputs  # noqa: E402  (same cases as the CPU tests)


def _run(device, update, platform, engine, w0, x, d, params):
  dev = jax.devices(platform)[0]
  args = jax.device_put((w0, x, d, params), dev)
  fn = jax.jit(lambda w, x, d, p: pulsed_update(w, p, x, d, jnp.float32(0.3), jax.random.key(3), device, update,
                                                engine=engine))
  return np.asarray(fn(*args))


def _time(fn, args, repeats=10):
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats * 1e3


def sanitize_cases() -> int:
  """Launches the CUDA kernel for the cases a sanitizer should see; returns 0 (errors are the tool's)."""
  w0, x, d = _inputs()
  n = 0
  for dname, summed in (("softbounds", False), ("piecewise", False), ("pcm_complex_noise", False),
                        ("constant", True)):
    device = DEVICES[dname]
    params = device.init(jax.random.key(1), w0.shape)
    for update in UPDATES.values():
      _run(device, update.replace(aggregate_pulses=summed), "gpu", "native", w0, x, d, params)
      n += 1
  dev_sb = DEVICES["softbounds"]
  keys = jax.device_put(jax.random.split(jax.random.key(9), 4), jax.devices("gpu")[0])
  jax.block_until_ready(jax.jit(jax.vmap(lambda k: pulsed_update(
      w0, dev_sb.init(k, w0.shape), x, d, 0.2, k, dev_sb, M.UpdateParameters(), engine="native")))(keys))
  print(f"sanitize: {n + 1} kernel calls completed")
  return 0


def main(outdir: str) -> int:
  out = Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  report = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
            "native_platforms": list(_native.registered_platforms()), "cases": [], "timings_ms": {}}
  failures = 0
  w0, x, d = _inputs()
  cases = [(dn, dev, un, up) for dn, dev in DEVICES.items() for un, up in UPDATES.items()]
  cases += [(dn, DEVICES[dn], un + "+summed", up.replace(aggregate_pulses=True))
            for dn in ("constant", "constant_clean") for un, up in UPDATES.items()]
  for dname, device, uname, update in cases:
    params = device.init(jax.random.key(1), w0.shape)
    cpu = _run(device, update, "cpu", "native", w0, x, d, params)
    cuda = _run(device, update, "gpu", "native", w0, x, d, params)
    jnp_gpu = _run(device, update, "gpu", "jnp", w0, x, d, params)
    case = {"device": dname, "update": uname, "cuda_eq_cpu": bool(np.array_equal(cuda, cpu)),
            "jnp_gpu_eq_cpu": bool(np.array_equal(jnp_gpu, cpu)), "max_abs_cuda_cpu": float(np.abs(cuda - cpu).max())}
    failures += not case["cuda_eq_cpu"]
    report["cases"].append(case)
  # vmap over seeds on the GPU equals the CPU
  seeds = jax.random.split(jax.random.key(9), 4)
  dev_sb = DEVICES["softbounds"]

  def seeded(key):
    k_dev, k_up = jax.random.split(key)
    return pulsed_update(w0, dev_sb.init(k_dev, w0.shape), x, d, 0.2, k_up, dev_sb, M.UpdateParameters(),
                         engine="native")

  vm_gpu = np.asarray(jax.jit(jax.vmap(seeded))(jax.device_put(seeds, jax.devices("gpu")[0])))
  vm_cpu = np.asarray(jax.jit(jax.vmap(seeded))(jax.device_put(seeds, jax.devices("cpu")[0])))
  report["vmap_cuda_eq_cpu"] = bool(np.array_equal(vm_gpu, vm_cpu))
  failures += not report["vmap_cuda_eq_cpu"]
  # timings: 512x512, batch 64, BL 31 (as benchmarks/bench_update.py)
  rng = np.random.default_rng(0)
  xb = rng.uniform(-1, 1, (64, 512)).astype(np.float32)
  db = rng.uniform(-1, 1, (64, 512)).astype(np.float32)
  db /= np.abs(db).max(axis=1, keepdims=True)
  gpu = jax.devices("gpu")[0]
  plain, summed = M.UpdateParameters(), M.UpdateParameters(aggregate_pulses=True)
  for name, device, update in (("constant_step", M.ConstantStepDevice(), plain),
                               ("soft_bounds", M.SoftBoundsDevice(), plain),
                               ("constant_step_summed", M.ConstantStepDevice(), summed)):
    params = jax.device_put(device.init(jax.random.key(0), (512, 512)), gpu)
    args = jax.device_put((jnp.zeros((512, 512)), jnp.asarray(xb), jnp.asarray(db)), gpu)
    for engine in ("native", "jnp"):
      fn = jax.jit(lambda w, x, d, e=engine: pulsed_update(w, params, x, d, 0.1, jax.random.key(1), device,
                                                           update, engine=e))
      report["timings_ms"][f"{name}_{engine}"] = _time(fn, args, 10 if engine == "native" else 3)
    for seeds_n in (1, 16):
      ws = jax.device_put(jnp.zeros((seeds_n, 512, 512)), gpu)
      keys = jax.device_put(jax.random.split(jax.random.key(2), seeds_n), gpu)
      fn = jax.jit(jax.vmap(lambda w, k: pulsed_update(w, params, args[1], args[2], 0.1, k, device,
                                                       update, engine="native")))
      report["timings_ms"][f"{name}_native_vmap{seeds_n}"] = _time(fn, (ws, keys), 5)
  (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
  n = len(report["cases"])
  print(f"CUDA == CPU: {n - sum(not c['cuda_eq_cpu'] for c in report['cases'])}/{n} cases; "
        f"jnp(GPU) == CPU: {sum(c['jnp_gpu_eq_cpu'] for c in report['cases'])}/{n}; "
        f"vmap: {report['vmap_cuda_eq_cpu']}")
  print(json.dumps(report["timings_ms"], indent=1))
  return 1 if failures else 0


if __name__ == "__main__":
  if "--sanitize" in sys.argv:
    sys.exit(sanitize_cases())
  sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu_out"))
