"""Synthetic CIFAR-shaped data for unit tests and CI (real CIFAR-10 runs belong on a GPU)."""

from __future__ import annotations

import numpy as np

# Class appearance, fixed for all seeds: colour (RGB gains in [0.25, 1]), grating orientation and frequency.
_COLORS = np.random.default_rng(20240611).uniform(0.25, 1.0, size=(10, 3))
_ANGLES = np.pi * np.arange(10) / 10
_FREQS = 2.0 + np.arange(10) % 3  # cycles per image


def synthetic_cifar(n: int, seed: int = 0, noise: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
  """Class-dependent 32×32×3 patterns: a coloured sine grating per class, random phase, Gaussian pixel noise.

  Classes differ in colour (a linear model can pick that up) and in the grating's orientation and frequency
  (what a small CNN learns), so a short training run shows clear learning. The class appearance is fixed; ``seed``
  chooses the label order, phases and noise.

  Args:
    n: number of images.
    seed: random seed.
    noise: standard deviation of the added pixel noise, in 0..255 units.

  Returns:
    ``images`` uint8 ``[n, 32, 32, 3]`` and ``labels`` int32 ``[n]`` (balanced: each class ``n // 10`` or one more
    times, in random order).
  """
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
  yy, xx = np.mgrid[0:32, 0:32] / 32.0
  angle, freq = _ANGLES[labels][:, None, None], _FREQS[labels][:, None, None]
  phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
  grating = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
  images = 255.0 * grating[..., None] * _COLORS[labels][:, None, None, :]
  images += rng.normal(0.0, noise, size=images.shape)
  return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels
