"""Datasets for mrl_jax: MNIST, Fashion-MNIST and CIFAR-10 as in-memory numpy arrays, plus a batcher.

Typical use::

    from mrl_jax import data
    images, labels = data.load_dataset("mnist", "train")          # uint8 [60000, 28, 28, 1], int32 [60000]
    for x, y in data.batches(images, labels, 128, seed, epoch=e):  # deterministic per (seed, epoch), resumable
        x = data.to_float(x)                                       # float32 in [0, 1], NHWC

Data come from the canonical files (``data_dir`` argument, ``$MRL_DATA_DIR``, or ``../shared/data`` beside the
repository), through TFDS builders that need no TensorFlow; prepared data are cached under ``$MRL_TFDS_DIR``
(default ``~/.cache/mrl_jax/tfds``). An explicit data directory that lacks files is an error; without one and without
the files, ``load_dataset("mnist", ...)`` falls back to a small embedded MNIST subset, says so on stderr and warns
(:class:`EmbeddedDataWarning`). ``load_with_provenance`` / ``provenance`` also say which files a split came from
(paths and sha256), for a run's ``meta.json``.
"""

from mrl_jax.data.batching import CHANNEL_STATS, batches, epoch_order, normalize, num_batches, to_float
from mrl_jax.data.loader import (EmbeddedDataWarning, embedded_provenance, load_dataset, load_with_provenance,
                                 provenance)
from mrl_jax.data.sources import DATASETS, SPLITS, DatasetChecksumError, DatasetNotFoundError, embedded_mnist
from mrl_jax.data.synthetic import synthetic_cifar

__all__ = [
    "CHANNEL_STATS", "DATASETS", "SPLITS", "DatasetChecksumError", "DatasetNotFoundError", "EmbeddedDataWarning",
    "batches", "embedded_mnist", "embedded_provenance", "epoch_order", "load_dataset", "load_with_provenance",
    "normalize", "num_batches", "provenance", "synthetic_cifar", "to_float",
]
