"""In-memory batching with a deterministic, resumable shuffle, and pixel scaling helpers."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

# Per-channel mean / std of the training split's pixels scaled to [0, 1] (computed from the canonical files).
CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
  """Number of batches per epoch of ``n`` examples."""
  return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, key_or_seed: Any, epoch: int = 0) -> np.ndarray:
  """The example order of one epoch: a permutation of ``range(n)`` fixed by ``(key_or_seed, epoch)``.

  Args:
    n: number of examples.
    key_or_seed: a non-negative int seed (numpy ``PCG64`` seeded with ``[seed, epoch]``), a JAX PRNG key
      (``jax.random.permutation`` of ``fold_in(key, epoch)``), or None for the natural order.
    epoch: epoch number; each epoch gets its own permutation.

  Returns:
    int64 ``[n]``.
  """
  if key_or_seed is None:
    return np.arange(n)
  if isinstance(key_or_seed, (int, np.integer)):
    if key_or_seed < 0 or epoch < 0:
      raise ValueError(f"seed and epoch must be non-negative, got {key_or_seed}, {epoch}")
    return np.random.default_rng([int(key_or_seed), int(epoch)]).permutation(n)
  import jax
  return np.asarray(jax.random.permutation(jax.random.fold_in(key_or_seed, epoch), n), dtype=np.int64)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, key_or_seed: Any, drop_remainder: bool = True,
            start: int = 0, *, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields the batches of one epoch in a shuffled order that depends only on ``(key_or_seed, epoch)``.

  ``start`` resumes an interrupted epoch: ``batches(..., start=k)`` yields exactly the batches ``k, k+1, ...`` of
  ``batches(..., start=0)``, so a checkpoint needs only ``(epoch, next batch index)``.

  Args:
    images: ``[N, ...]`` (any dtype; usually uint8 NHWC).
    labels: ``[N]``.
    batch_size: examples per batch.
    key_or_seed: int seed, JAX PRNG key, or None (no shuffling); see :func:`epoch_order`.
    drop_remainder: drop the last partial batch (keeps shapes static for ``jit``).
    start: index of the first batch to yield, ``0 <= start <= num_batches(...)``.
    epoch: epoch number (keyword only).

  Yields:
    ``(images[idx], labels[idx])`` numpy copies of ``batch_size`` examples (the last may be smaller when
    ``drop_remainder`` is False).
  """
  n = len(labels)
  if len(images) != n:
    raise ValueError(f"images and labels differ in length: {len(images)} vs {n}")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  total = num_batches(n, batch_size, drop_remainder)
  if not 0 <= start <= total:
    raise ValueError(f"start must be in [0, {total}], got {start}")
  order = epoch_order(n, key_or_seed, epoch)
  images, labels = np.asarray(images), np.asarray(labels)
  for b in range(start, total):
    idx = order[b * batch_size:(b + 1) * batch_size]
    yield images[idx], labels[idx]


def to_float(images: Any) -> Any:
  """Scales uint8 pixels to float32 in [0, 1] (numpy or JAX arrays).

  Args:
    images: ``[N, H, W, C]``, or ``[N, H, W]`` (a batch of single-channel images; a channel axis is appended).

  Returns:
    float32 ``[N, H, W, C]``.
  """
  if images.ndim == 3:
    images = images[..., None]
  return images.astype(np.float32) / np.float32(255)


def normalize(images: Any, mean: float | Sequence[float], std: float | Sequence[float]) -> Any:
  """``(to_float(images) - mean) / std``, per channel; e.g. ``normalize(x, *CHANNEL_STATS["cifar10"])``.

  Args:
    images: as for :func:`to_float`.
    mean: mean of the [0, 1]-scaled pixels, a scalar or one value per channel.
    std: standard deviation, likewise.

  Returns:
    float32 ``[N, H, W, C]``.
  """
  return (to_float(images) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
