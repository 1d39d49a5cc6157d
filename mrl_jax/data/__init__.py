"""Datasets for mrl_jax: MNIST, Fashion-MNIST and CIFAR-10 as in-memory numpy arrays, plus a batcher.

Typical use::

    from mrl_jax import data
    images, labels = data.load_dataset("mnist", "train")          # uint8 [60000, 28, 28, 1], int32 [60000]
    for x, y in data.batches(images, labels, 128, seed, epoch=e):  # deterministic per (seed, epoch), resumable
        x = data.to_float(x)                                       # float32 in [0, 1], NHWC

Data come from the canonical files (``data_dir`` argument, ``$MRL_DATA_DIR``, or ``../shared/data`` beside the
repository), through TFDS builders that need no TensorFlow; prepared data are cached under ``$MRL_TFDS_DIR``
(default ``~/.cache/mrl_jax/tfds``). Without the files, ``load_dataset("mnist", ...)`` falls back to a small
embedded MNIST subset and warns (:class:`EmbeddedDataWarning`).
"""

from mrl_jax.data.batching import CHANNEL_STATS, batches, epoch_order, normalize, num_batches, to_float
from mrl_jax.data.loader import EmbeddedDataWarning, load_dataset
from mrl_jax.data.sources import DATASETS, SPLITS, DatasetChecksumError, DatasetNotFoundError, embedded_mnist
from mrl_jax.data.synthetic import synthetic_cifar

__all__ = [
    "CHANNEL_STATS", "DATASETS", "SPLITS", "DatasetChecksumError", "DatasetNotFoundError", "EmbeddedDataWarning",
    "batches", "embedded_mnist", "epoch_order", "load_dataset", "normalize", "num_batches", "synthetic_cifar",
    "to_float",
]
