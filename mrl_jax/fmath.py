"""float32 ``exp``, ``log2`` and ``pow`` built from correctly rounded operations only.

XLA, glibc and CUDA each ship their own ``exp``/``pow`` with different last-ulp results, so the
device models that need them (ExpStep, PowStep) use these versions in both the jnp reference and
the native kernels (``xla_ops/include/mrl_ops/fmath.h``), with the same constants and evaluation
order.

``fence_from(anchor)`` returns the identity on float32 values in a form XLA cannot see through. It is
needed wherever the jnp twin of a kernel must round exactly like C++ compiled without contraction:
XLA's CPU backend always lets LLVM fuse ``a * b + c`` into an FMA (a ``where`` does not stop it: LLVM
hoists additions into selects), and XLA rewrites a division by a compile-time constant into a
multiplication by its reciprocal.
Relative error below 2e-6 over the ranges the devices use.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax



def fence_from(anchor):
  """Returns ``fence(v)``: an identity on float32 ``v`` that blocks FMA contraction and constant folding.

  ``v``'s bits are OR-ed with ``uint32(anchor != anchor)``: zero for finite ``anchor``, but not provably
  so for the compiler, and integer operations stop floating-point contraction.
  """
  zero = (anchor != anchor).astype(jnp.uint32)
  return lambda v: lax.bitcast_convert_type(lax.bitcast_convert_type(jnp.asarray(v, jnp.float32), jnp.uint32) | zero,
                                            jnp.float32)


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
# Taylor coefficients of 2**r = exp(r ln2) for |r| <= 0.5, highest order first.
_EXP2_COEFFS = tuple(_LN2**k / __import__("math").factorial(k) for k in range(8, -1, -1))
# ln((1 + s)/(1 - s)) = 2 (s + s^3/3 + ...): coefficients of the series in s^2, highest first.
_LOG_COEFFS = tuple(2.0 / (2 * k + 1) for k in range(6, -1, -1))


def _horner(coeffs, x, fence):
  acc = jnp.float32(coeffs[0])
  for c in coeffs[1:]:
    acc = fence(acc * x) + jnp.float32(c)
  return acc


def exp2(t, fence):
  """``2**t`` for float32 ``t`` (clamped to [-126, 127])."""
  t = jnp.clip(t, jnp.float32(-126), jnp.float32(127))
  k = jnp.round(t)  # round half to even, like rintf
  r = t - k
  p = _horner(_EXP2_COEFFS, r, fence)
  scale = lax.bitcast_convert_type(((k.astype(jnp.int32) + 127) << 23), jnp.float32)
  return p * scale


def exp(x, fence):
  """``e**x`` for float32 ``x``."""
  return exp2(x * jnp.float32(_LOG2E), fence)


def log2(x, fence):
  """``log2(x)`` for float32 ``x > 0`` (normal numbers); ``-126`` for zero and subnormals."""
  x = jnp.maximum(x, jnp.float32(2.0**-126))
  bits = lax.bitcast_convert_type(x, jnp.int32)
  e = ((bits >> 23) & 0xFF) - 127
  m = lax.bitcast_convert_type((bits & 0x007FFFFF) | 0x3F800000, jnp.float32)  # [1, 2)
  big = m > jnp.float32(1.4142135)
  m = jnp.where(big, m * jnp.float32(0.5), m)
  e = jnp.where(big, e + 1, e)
  s = (m - jnp.float32(1)) / (m + jnp.float32(1))
  s2 = s * s
  ln_m = _horner(_LOG_COEFFS, s2, fence) * s
  return e.astype(jnp.float32) + fence(ln_m * jnp.float32(_LOG2E))


def pow(base, gamma, fence):  # noqa: A001 - mirrors the C name
  """``base**gamma`` for ``base >= 0``; ``0**gamma = 0`` for ``gamma > 0`` and 1 for ``gamma == 0``."""
  positive = base > 0
  value = exp2(gamma * log2(jnp.where(positive, base, jnp.float32(1)), fence), fence)
  zero_case = jnp.where(gamma == 0, jnp.float32(1), jnp.float32(0))
  return jnp.where(positive, value, zero_case)
