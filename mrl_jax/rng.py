"""Counter-based random numbers shared bit for bit by the jnp reference and the native kernels.

Every random quantity of a pulsed update is a pure function of a JAX Threefry key and an integer
coordinate, never of a sequential generator state, so that the C++/CUDA handlers (which see the same
key as a ``uint32[2]`` operand) draw exactly the same numbers in any thread order.

Streams:
  * Pulse trains: one Threefry-2x32-20 block (the block cipher of ``jax.random``) per line, input
    ``((s << 24) | b, j)`` for line ``j`` (an x or d element) of row ``b`` in stream ``s``, seeds the
    same two-round ``lowbias32`` mixer as the pulse noise, evaluated at each time slot ``t < 32``:
    ``lowbias32(lowbias32(t ^ y0) ^ y1)``. One block per line instead of one per slot makes the pulse
    trains ~4x cheaper (up to 31 slots per line); streams changed once for that (README).
  * Per-pulse cycle-to-cycle noise is needed once per device pulse (hundreds of millions per
    update), so it uses one Threefry block per row to seed a cheap 32-bit integer mixer
    (two rounds of the ``lowbias32`` finaliser) over the element/pulse index.
  * Normal deviates come from a 65536-entry table of N(0, 1) quantiles at ``(i + 0.5) / 65536``
    indexed by 16 random bits. A table lookup involves no transcendental function, so XLA, g++
    and nvcc produce identical values (their ``log``/``cos`` differ in the last ulp). The table is
    truncated at |z| = 4.33; for device noise of 30 % this is immaterial.
"""

from __future__ import annotations

import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np

# Stream identifiers (upper 8 bits of the first Threefry counter word).
STREAM_X_PULSES = 1
STREAM_D_PULSES = 2
STREAM_PULSE_NOISE = 3

MAX_ROWS = 1 << 24  # rows (samples or patches) of one update call; row index lives in 24 bits.
NORMAL_TABLE_SIZE = 1 << 16

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x, r):
  return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
  """Threefry-2x32-20 block cipher on uint32 arrays (broadcasting); returns ``(y0, y1)``."""
  k0 = jnp.asarray(k0, jnp.uint32)
  k1 = jnp.asarray(k1, jnp.uint32)
  k2 = k0 ^ k1 ^ jnp.uint32(_PARITY)
  ks = (k0, k1, k2)
  x0 = jnp.asarray(x0, jnp.uint32) + k0
  x1 = jnp.asarray(x1, jnp.uint32) + k1
  for block in range(5):
    for r in _ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = _rotl(x1, r) ^ x0
    x0 = x0 + ks[(block + 1) % 3]
    x1 = x1 + ks[(block + 2) % 3] + jnp.uint32(block + 1)
  return x0, x1


def key_words(key) -> jax.Array:
  """Returns the ``uint32[..., 2]`` data of a Threefry key (typed or raw)."""
  if jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
    impl = jax.random.key_impl(key)
    if "threefry" not in str(impl):
      raise ValueError(f"key: mrl_jax needs a Threefry key, got implementation {impl}")
    key = jax.random.key_data(key)
  key = jnp.asarray(key)
  if key.dtype != jnp.uint32 or key.shape[-1:] != (2,):
    raise ValueError(f"key: expected a Threefry key or uint32[..., 2] key data, got {key.dtype}{key.shape}")
  return key


def line_seed(kw, stream: int, row, line):
  """Seed ``(y0, y1)`` of the pulse-train slots of ``line`` of ``row`` in ``stream`` (``kw``: uint32[2] key data)."""
  hi = (jnp.uint32(stream) << jnp.uint32(24)) | jnp.asarray(row, jnp.uint32)
  return threefry2x32(kw[0], kw[1], hi, jnp.asarray(line, jnp.uint32))


def slot_bits(y0, y1, slot):
  """32 random bits of time slot ``slot`` (< 32) of the line seeded ``(y0, y1)``."""
  return _lowbias32(_lowbias32(jnp.asarray(slot, jnp.uint32) ^ y0) ^ y1)


def uniform24(bits):
  """Maps 32 random bits to float32 in [0, 1) using the high 24 bits (exact in float32)."""
  return (bits >> jnp.uint32(8)).astype(jnp.float32) * jnp.float32(2.0**-24)


def _lowbias32(x):
  x = x ^ (x >> jnp.uint32(16))
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> jnp.uint32(15))
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> jnp.uint32(16))


def row_noise_seed(kw, row):
  """Per-row seed ``(s0, s1)`` of the pulse-noise mixer (one Threefry block per row)."""
  return threefry2x32(kw[0], kw[1], (jnp.uint32(STREAM_PULSE_NOISE) << jnp.uint32(24)) | jnp.asarray(row, jnp.uint32), jnp.uint32(0))


def pulse_noise_index(s0, s1, element, pulse):
  """16-bit normal-table index for pulse ``pulse`` (< 32) of flat element ``element`` of a row."""
  pulse = jnp.asarray(pulse, jnp.uint32)
  word = (jnp.asarray(element, jnp.uint32) << jnp.uint32(4)) | (pulse >> jnp.uint32(1))
  h = _lowbias32(_lowbias32(word ^ s0) ^ s1)
  return jnp.where((pulse & jnp.uint32(1)) == 0, h >> jnp.uint32(16), h & jnp.uint32(0xFFFF))


@functools.lru_cache(maxsize=None)
def normal_table() -> np.ndarray:
  """float32[65536] quantiles of N(0, 1) at the midpoints ``(i + 0.5) / 65536``."""
  inv = statistics.NormalDist().inv_cdf
  n = NORMAL_TABLE_SIZE
  return np.array([inv((i + 0.5) / n) for i in range(n)], dtype=np.float64).astype(np.float32)


@functools.lru_cache(maxsize=None)
def scaled_normal_table(std: float) -> np.ndarray:
  """``float32(std * z)`` for the quantile table; computed once per std in numpy (float64 → f32)."""
  return (np.float64(std) * normal_table().astype(np.float64)).astype(np.float32)
