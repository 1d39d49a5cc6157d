"""``load_dataset``: a whole split as in-memory numpy arrays, through the TFDS builders, with an embedded fallback."""

from __future__ import annotations

import json
import os
import socket
import sys
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
_ANNOUNCED: list[bool] = []


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
  """Loads a whole split into memory (:func:`load_with_provenance` without the provenance)."""
  arrays, _ = load_with_provenance(name, split, data_dir=data_dir, tfds_dir=tfds_dir,
                                   allow_embedded=allow_embedded, download=download)
  return arrays


def load_with_provenance(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                         tfds_dir: str | os.PathLike | None = None, allow_embedded: bool = True,
                         download: bool = True) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
  """Loads a whole split into memory and says where it came from.

  The first call prepares the dataset with the TFDS builder (``<name>_local``, ``array_record`` files under
  ``tfds_dir``; MNIST takes ~12 s), later calls read the prepared files (~2 s for MNIST train), and repeated calls
  in one process return the same arrays.

  An explicit data directory (``data_dir``, else ``$MRL_DATA_DIR``) must hold the complete dataset, even when the
  prepared data already exist: what a run names is what it uses. Without one, the sources are, in order: data
  already prepared under ``tfds_dir``; the canonical files under ``../shared/data`` beside the repository; a
  download of the canonical URLs (when ``download``); for MNIST with ``allow_embedded``, the embedded subset
  (10,000 train / 2,000 test images), announced on stderr and with an :class:`EmbeddedDataWarning`.

  Args:
    name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
    split: ``"train"`` or ``"test"``.
    data_dir: folder with the canonical files (layouts in :mod:`mrl_jax.data.sources`).
    tfds_dir: folder for the prepared TFDS data (default ``$MRL_TFDS_DIR`` or ``~/.cache/mrl_jax/tfds``).
    allow_embedded: for MNIST without an explicit data directory, fall back to the embedded subset when the files
      are missing.
    download: allow downloading when no data directory was given.

  Returns:
    ``((images, labels), provenance)``: ``images`` uint8 ``[N, 28, 28, 1]`` (MNIST, Fashion-MNIST) or
    ``[N, 32, 32, 3]`` (CIFAR-10), pixel values 0..255, and ``labels`` int32 ``[N]`` in 0..9, both in the original
    file order and read-only; ``provenance`` as :func:`provenance` describes it.

  Raises:
    ValueError: unknown ``name`` or ``split``.
    DatasetNotFoundError: the files are missing or incomplete (and no fallback applies); the message names the
      path, the missing files and how to supply them.
    DatasetChecksumError: a file is not the canonical one.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
  cache_dir = resolve_tfds_dir(tfds_dir)
  root, explicit = sources.resolve_data_dir(data_dir)
  named = None
  if explicit:
    # Checked before the prepared data are looked at: a stale cache must never stand in for a path that is wrong.
    named = sources.source_files(name, root, split)
    if name != "cifar10":
      sources.idx_files(name, named[0].parent, split, verify=True)
  key = (name, split, str(cache_dir))
  if key in _MEMORY:
    return _MEMORY[key], _provenance(name, split, cache_dir, root, named)

  from mrl_jax.data import builders  # TFDS import (~0.5 s) only when needed

  builder = builders.make_builder(name, cache_dir)
  if not builders.is_prepared(builder):
    try:
      if explicit or sources.find_dataset_dir(name, root) is not None:
        builders.prepare(builder, root, cache_dir)
        _write_cache_source(cache_dir, name, root)
      elif download:
        _download(builder, root, cache_dir)
        _write_cache_source(cache_dir, name, None)
      else:
        raise DatasetNotFoundError(f"{name}: no dataset files under {root}. {sources.how_to_supply(name)}")
    except DatasetChecksumError:
      raise
    except DatasetNotFoundError as err:
      if explicit or name != "mnist" or not allow_embedded:
        raise
      _announce_embedded(err)
      arrays = sources.embedded_mnist(split)
      for a in arrays:
        a.flags.writeable = False
      return arrays, embedded_provenance(split, cache_dir)

  arrays = builders.read_prepared(builder, split)
  for a in arrays:
    a.flags.writeable = False
  _MEMORY[key] = arrays
  return arrays, _provenance(name, split, cache_dir, root, named)


def provenance(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
               tfds_dir: str | os.PathLike | None = None, allow_embedded: bool = True,
               download: bool = True) -> dict:
  """Where :func:`load_dataset` with the same arguments takes the split from (loading it if needed).

  Returns:
    A JSON-serialisable dict with ``dataset``, ``split``, ``tfds_dir`` (the prepared-data cache), ``source`` and
    ``files``. ``source`` is ``"files"`` when the canonical files were found (``files``: their ``path`` and
    ``sha256``), ``"embedded"`` for the subset shipped in the package (``files``: the ``.npz``), or ``"tfds_cache"``
    when only data prepared earlier are left (``prepared_from``: the folder they were prepared from, ``"download"``
    or ``"unrecorded"``; ``files``: the ``name`` and canonical ``sha256`` every file was checked against then).
  """
  return load_with_provenance(name, split, data_dir=data_dir, tfds_dir=tfds_dir, allow_embedded=allow_embedded,
                              download=download)[1]


def embedded_provenance(split: str, tfds_dir: str | os.PathLike | None = None) -> dict:
  """The provenance record (as :func:`provenance`) of the embedded MNIST subset."""
  return {"dataset": "mnist", "split": split, "source": "embedded",
          "files": [_file_record(sources.EMBEDDED_PATH)], "tfds_dir": str(resolve_tfds_dir(tfds_dir))}


def _file_record(path: Path) -> dict:
  return {"path": str(Path(path).resolve()), "sha256": sources.sha256_file(path)}


def _cache_source_path(cache_dir: Path, name: str) -> Path:
  return cache_dir / f"{name}_local.source.json"


def _write_cache_source(cache_dir: Path, name: str, root: Path | None) -> None:
  """Records beside the prepared data which files they were prepared from (read back by :func:`provenance`)."""
  if root is None:
    record = {"prepared_from": "download", "files": None}
  else:
    files = [f for split in SPLITS for f in sources.source_files(name, root, split)]
    record = {"prepared_from": str(Path(root).resolve()), "files": [_file_record(f) for f in files]}
  _cache_source_path(cache_dir, name).write_text(json.dumps(record, indent=1) + "\n")


def _provenance(name: str, split: str, cache_dir: Path, root: Path, named: list[Path] | None) -> dict:
  record = {"dataset": name, "split": split, "tfds_dir": str(cache_dir)}
  if named is None:
    try:
      named = sources.source_files(name, root, split)
    except DatasetNotFoundError:
      pass
  if named is not None:
    return {**record, "source": "files", "files": [_file_record(f) for f in named]}
  # Only the prepared data are left; they passed the canonical checksums when they were written.
  recorded = _cache_source_path(cache_dir, name)
  prepared_from = json.loads(recorded.read_text()).get("prepared_from") if recorded.is_file() else "unrecorded"
  canonical = sources.CIFAR_SHA256 if name == "cifar10" else sources.IDX_SHA256[name]
  wanted = sources.CIFAR_SPLIT_FILES[split] if name == "cifar10" else sources.IDX_SPLIT_FILES[split]
  return {**record, "source": "tfds_cache", "prepared_from": prepared_from,
          "files": [{"name": f, "sha256": canonical[f]} for f in wanted]}


def _announce_embedded(err: Exception) -> None:
  message = (f"Full MNIST unavailable ({err}) -- using the embedded MNIST subset (first 10,000 train / 2,000 test "
             "images); results are not comparable with full-MNIST runs.")
  if not _ANNOUNCED:  # once per process: train and test splits come one after the other
    print(f"mrl_jax: {message}", file=sys.stderr)
    _ANNOUNCED.append(True)
  warnings.warn(message, EmbeddedDataWarning, stacklevel=3)


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
