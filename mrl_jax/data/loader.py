"""``load_dataset``: a whole split as in-memory numpy arrays, through the TFDS builders, with an embedded fallback."""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from mrl_jax.data import sources
from mrl_jax.data.sources import DATASETS, SPLITS, DatasetChecksumError, DatasetNotFoundError

ENV_TFDS_DIR = "MRL_TFDS_DIR"
DEFAULT_TFDS_DIR = Path("~/.cache/mrl_jax/tfds")

# (name, split, prepared-data dir) -> read-only (images, labels): each split is decoded once per process.
_MEMORY: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}


class EmbeddedDataWarning(UserWarning):
  """The full dataset was unavailable and the small embedded MNIST subset is used instead."""


def resolve_tfds_dir(tfds_dir: str | os.PathLike | None = None) -> Path:
  """Where prepared TFDS data lives: ``tfds_dir``, else ``$MRL_TFDS_DIR``, else ``~/.cache/mrl_jax/tfds``."""
  chosen = tfds_dir if tfds_dir is not None else os.environ.get(ENV_TFDS_DIR) or DEFAULT_TFDS_DIR
  return Path(chosen).expanduser().resolve()


def clear_cache() -> None:
  """Forgets the splits decoded in this process (the prepared files on disk stay)."""
  _MEMORY.clear()


def load_dataset(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                 tfds_dir: str | os.PathLike | None = None, allow_embedded: bool = True,
                 download: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split into memory.

  The first call prepares the dataset with the TFDS builder (``<name>_local``, ``array_record`` files under
  ``tfds_dir``; MNIST takes ~12 s), later calls read the prepared files (~2 s for MNIST train), and repeated calls
  in one process return the same arrays.

  Sources, in order: data already prepared under ``tfds_dir``; the canonical files under the data directory
  (``data_dir``, else ``$MRL_DATA_DIR``, else ``../shared/data`` beside the repository); a download of the
  canonical URLs (only when ``download`` and neither ``data_dir`` nor ``$MRL_DATA_DIR`` is set); for MNIST with
  ``allow_embedded``, the embedded subset (10,000 train / 2,000 test images) with an :class:`EmbeddedDataWarning`.

  Args:
    name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
    split: ``"train"`` or ``"test"``.
    data_dir: folder with the canonical files (layouts in :mod:`mrl_jax.data.sources`).
    tfds_dir: folder for the prepared TFDS data (default ``$MRL_TFDS_DIR`` or ``~/.cache/mrl_jax/tfds``).
    allow_embedded: for MNIST, fall back to the embedded subset when the files are missing.
    download: allow downloading when no data directory was given.

  Returns:
    ``images`` uint8 ``[N, 28, 28, 1]`` (MNIST, Fashion-MNIST) or ``[N, 32, 32, 3]`` (CIFAR-10), pixel values
    0..255, and ``labels`` int32 ``[N]`` in 0..9, both in the original file order and read-only.

  Raises:
    ValueError: unknown ``name`` or ``split``.
    DatasetNotFoundError: the files are missing (and no fallback applies); the message says how to supply them.
    DatasetChecksumError: a file is not the canonical one.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
  cache_dir = resolve_tfds_dir(tfds_dir)
  key = (name, split, str(cache_dir))
  if key in _MEMORY:
    return _MEMORY[key]

  from mrl_jax.data import builders  # TFDS import (~0.5 s) only when needed

  builder = builders.make_builder(name, cache_dir)
  if not builders.is_prepared(builder):
    root, explicit = sources.resolve_data_dir(data_dir)
    try:
      if sources.find_dataset_dir(name, root) is not None:
        builders.prepare(builder, root, cache_dir)
      elif download and not explicit:
        _download(builder, root, cache_dir)
      else:
        raise DatasetNotFoundError(f"{name}: no dataset files under {root}. {sources.how_to_supply(name)}")
    except DatasetChecksumError:
      raise
    except DatasetNotFoundError as err:
      if name == "mnist" and allow_embedded:
        warnings.warn(f"Full MNIST unavailable ({err}) -- using the embedded MNIST subset (first 10,000 train / "
                      "2,000 test images); results are not comparable with full-MNIST runs.",
                      EmbeddedDataWarning, stacklevel=2)
        arrays = sources.embedded_mnist(split)
        for a in arrays:
          a.flags.writeable = False
        return arrays
      raise

  arrays = builders.read_prepared(builder, split)
  for a in arrays:
    a.flags.writeable = False
  _MEMORY[key] = arrays
  return arrays


def _reachable(url: str, timeout: float = 5.0) -> bool:
  """Quick check that ``url``'s host accepts connections (or that a proxy is configured).

  Without it an offline machine spends minutes in the HTTP client's retries before the embedded fallback.
  """
  parts = urllib.parse.urlsplit(url)
  if urllib.request.getproxies().get(parts.scheme):
    return True
  ok = []

  def probe():
    try:
      socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                               timeout=timeout).close()
      ok.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores the socket timeout
  thread.start()
  thread.join(timeout + 1.0)
  return bool(ok)


def _download(builder, root: Path, cache_dir: Path) -> None:
  """Prepares from the canonical URLs; any failure other than a bad file becomes a DatasetNotFoundError."""
  from mrl_jax.data import builders
  url = next(iter(builder.source_urls().values()))
  if not _reachable(url):
    raise DatasetNotFoundError(f"{builder.DATASET}: no dataset files under {root}, and {url} is unreachable "
                               f"(offline?). {sources.how_to_supply(builder.DATASET)}")
  try:
    builders.prepare(builder, None, cache_dir)
  except DatasetNotFoundError:
    raise
  except Exception as err:  # network/HTTP errors come in many types (requests, urllib3, TFDS)
    raise DatasetNotFoundError(f"{builder.DATASET}: no dataset files under {root} and the download failed "
                               f"({type(err).__name__}: {err}). {sources.how_to_supply(builder.DATASET)}") from err
