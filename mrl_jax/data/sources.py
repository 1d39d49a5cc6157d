"""The canonical dataset files: where to find them, how to check them and how to decode them.

Nothing here needs TensorFlow Datasets; the TFDS builders in :mod:`mrl_jax.data.builders` call these readers.

Supported layouts below a data directory ``root`` (the ``data_dir`` argument, ``MRL_DATA_DIR``, or
``../shared/data`` beside the repository):

* MNIST / Fashion-MNIST: ``root/<name>/`` or ``root/`` itself holding the four original IDX files
  ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz`` (byte-identical to the canonical downloads; checked by sha256).
* CIFAR-10: a folder (``root/cifar10/``, ``root/cifar-10-batches-bin/``, ``root/cifar10/cifar-10-batches-bin/`` or
  ``root/``) holding ``data_batch_{1..5}.bin`` and ``test_batch.bin``, each optionally xz-compressed (``.bin.xz``),
  or the original archive ``cifar-10-binary.tar.gz`` in ``root/`` or ``root/cifar10/``. The decompressed batch
  contents are checked by sha256, whatever the container.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import tarfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
NUM_CLASSES = 10

ENV_DATA_DIR = "MRL_DATA_DIR"
# Default data directory: ``../shared/data`` next to the repository root (this file is mrl_jax/data/sources.py).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

# sha256 of the original gzipped IDX files (equal to TFDS 4.9.10 url_checksums/{mnist,fashion_mnist}.txt).
IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
IDX_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# sha256 of the decompressed original CIFAR-10 binary batches (the md5 of these files is what loaders pin).
CIFAR_SHA256 = {
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}
CIFAR_SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_TARBALL = "cifar-10-binary.tar.gz"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_RECORD = 1 + 3 * 32 * 32


class DatasetNotFoundError(FileNotFoundError):
  """A dataset's files are missing; the message names the file and how to supply it."""


class DatasetChecksumError(DatasetNotFoundError, ValueError):
  """A dataset file exists but is not the canonical file (wrong sha256 or malformed)."""


def how_to_supply(name: str) -> str:
  if name == "cifar10":
    layout = ("<dir>/cifar10/{data_batch_1..5,test_batch}.bin[.xz], <dir>/cifar-10-batches-bin/*.bin, "
              f"or <dir>/{CIFAR_TARBALL} (from {CIFAR_URL})")
  else:
    files = ", ".join(IDX_SHA256[name])
    layout = f"<dir>/{name}/{{{files}}} (the original files from {IDX_URLS[name]})"
  return (f"Supply the data directory with the `data_dir` argument (CLI: --data-dir) or the environment variable "
          f"{ENV_DATA_DIR}; expected layout: {layout}.")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
  """Returns the data directory to search and whether the caller chose it explicitly.

  Args:
    data_dir: explicit directory; else ``$MRL_DATA_DIR``; else ``../shared/data`` beside the repository root.

  Returns:
    ``(path, explicit)``; ``explicit`` is False only for the built-in default.
  """
  if data_dir is not None:
    return Path(data_dir).expanduser(), True
  env = os.environ.get(ENV_DATA_DIR)
  if env:
    return Path(env).expanduser(), True
  return DEFAULT_DATA_DIR.resolve(), False


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
  """Hex sha256 of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def _check_sha256(name: str, label: str, actual: str, expected: str) -> None:
  if actual != expected:
    raise DatasetChecksumError(
        f"{name}: {label} is corrupt or not the canonical file (sha256 {actual}, expected {expected}). "
        f"Replace it with the original file. {how_to_supply(name)}")


# ---------------------------------------------------------------------------------------------------------------------
# Locating files


def find_dataset_dir(name: str, root: str | os.PathLike) -> Path | None:
  """The folder (or, for CIFAR-10, possibly the tarball) below ``root`` holding ``name``'s files; None if none.

  A folder qualifies when it holds at least one of the expected files, so that a partial copy is reported with
  the names of the missing files instead of being ignored.
  """
  root = Path(root)
  if name == "cifar10":
    for d in (root / "cifar10", root / "cifar-10-batches-bin", root / "cifar10" / "cifar-10-batches-bin", root):
      if any((d / f).is_file() or (d / f"{f}.xz").is_file() for f in CIFAR_SHA256):
        return d
    for t in (root / CIFAR_TARBALL, root / "cifar10" / CIFAR_TARBALL):
      if t.is_file():
        return t
    return None
  for d in (root / name, root):
    if any((d / f).is_file() for f in IDX_SHA256[name]):
      return d
  return None


def source_files(name: str, root: str | os.PathLike, split: str) -> list[Path]:
  """The files under ``root`` that hold ``name``'s data, checked for completeness; those of ``split`` are returned.

  Preparing a dataset reads both splits, so every file of both must be there. For CIFAR-10 in a tarball only the
  tarball's presence is checked here (its members are checked when it is read).

  Args:
    name: dataset name.
    root: data directory (or, for CIFAR-10, a batch folder or the tarball).
    split: ``"train"`` or ``"test"``.

  Returns:
    The paths of ``split``'s files (for a CIFAR-10 folder each ``.bin`` or, failing that, ``.bin.xz``).

  Raises:
    DatasetNotFoundError: ``root`` holds none of the files or only some; the message names ``root`` and every
      missing file.
  """
  root = Path(root)
  located = root if (name == "cifar10" and root.is_file()) else find_dataset_dir(name, root)
  if name == "cifar10":
    expected = tuple(CIFAR_SHA256)
  else:
    expected = tuple(IDX_SHA256[name])
  if located is None:
    raise DatasetNotFoundError(f"{name}: {root} holds none of the dataset files ({', '.join(expected)})"
                               f"{'' if root.exists() else '; the path does not exist'}. {how_to_supply(name)}")
  if located.is_file():  # the CIFAR-10 tarball
    return [located]

  def present(fname: str) -> Path | None:
    for candidate in (located / fname, located / f"{fname}.xz") if name == "cifar10" else (located / fname,):
      if candidate.is_file():
        return candidate
    return None

  missing = [fname for fname in expected if present(fname) is None]
  if missing:
    raise DatasetNotFoundError(f"{name}: {located} is incomplete: missing {', '.join(missing)}. "
                               f"{how_to_supply(name)}")
  wanted = CIFAR_SPLIT_FILES[split] if name == "cifar10" else IDX_SPLIT_FILES[split]
  return [present(fname) for fname in wanted]


def idx_files(name: str, directory: str | os.PathLike, split: str, verify: bool = True) -> tuple[Path, Path]:
  """Paths ``(images, labels)`` of an MNIST-style split in ``directory``, checked against the canonical sha256.

  Raises:
    DatasetNotFoundError: a file is missing.
    DatasetChecksumError: a file's sha256 differs from the canonical one.
  """
  paths = []
  for fname in IDX_SPLIT_FILES[split]:
    path = Path(directory) / fname
    if not path.is_file():
      raise DatasetNotFoundError(f"{name}: missing file {path}. {how_to_supply(name)}")
    if verify:
      digest = sha256_file(path)
      other = [n for n in IDX_SHA256 if n != name and IDX_SHA256[n][fname] == digest]
      if other:  # MNIST and Fashion-MNIST share file names
        raise DatasetChecksumError(f"{name}: {path} is the {other[0]} file, not {name}'s. {how_to_supply(name)}")
      _check_sha256(name, str(path), digest, IDX_SHA256[name][fname])
    paths.append(path)
  return paths[0], paths[1]


# ---------------------------------------------------------------------------------------------------------------------
# Decoding


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
  """Decodes an (uncompressed) IDX file: big-endian header ``0 0 type ndim``, ``ndim`` uint32 sizes, data.

  Only the unsigned-byte type (0x08) is supported, which is what MNIST and Fashion-MNIST use.
  """
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{what}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  if len(data) != header + int(np.prod(shape)):
    raise ValueError(f"{what}: size {len(data)} does not match the header shape {shape}")
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_split(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads a pair of gzipped IDX files.

  Returns:
    ``images`` uint8 ``[N, 28, 28, 1]`` (0 = background), ``labels`` int32 ``[N]``, in file order.
  """
  with gzip.open(images_path, "rb") as f:
    images = parse_idx(f.read(), str(images_path))
  with gzip.open(labels_path, "rb") as f:
    labels = parse_idx(f.read(), str(labels_path))
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(f"IDX shapes do not match: images {images.shape}, labels {labels.shape}")
  return images[..., None].copy(), labels.astype(np.int32)


def read_mnist(name: str, root: str | os.PathLike, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Reads an MNIST-style split (``name`` in ``"mnist"``, ``"fashion_mnist"``) straight from the IDX files.

  Args:
    name: dataset name.
    root: data directory (``root/<name>/`` or ``root/`` holds the four files).
    split: ``"train"`` or ``"test"``.
    verify: check the files' sha256 first.

  Returns:
    ``images`` uint8 ``[N, 28, 28, 1]``, ``labels`` int32 ``[N]``, in the original file order.
  """
  directory = find_dataset_dir(name, root)
  if directory is None:
    raise DatasetNotFoundError(f"{name}: no dataset files under {root}. {how_to_supply(name)}")
  return read_idx_split(*idx_files(name, directory, split, verify))


def _cifar_bytes(source: Path, fnames: tuple[str, ...]) -> dict[str, bytes]:
  """Raw (decompressed) bytes of CIFAR-10 batch files from a folder (``.bin`` / ``.bin.xz``) or the tarball."""
  out = {}
  if source.is_dir():
    for fname in fnames:
      plain, xz = source / fname, source / f"{fname}.xz"
      if plain.is_file():
        out[fname] = plain.read_bytes()
      elif xz.is_file():
        try:
          with lzma.open(xz) as f:
            out[fname] = f.read()
        except (lzma.LZMAError, EOFError) as err:
          raise DatasetChecksumError(f"cifar10: {xz} is not a valid xz file ({err}). "
                                     f"{how_to_supply('cifar10')}") from err
      else:
        raise DatasetNotFoundError(f"cifar10: missing file {plain} (or {xz.name}). {how_to_supply('cifar10')}")
    return out
  try:
    with tarfile.open(source, "r:*") as tar:
      members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
      for fname in fnames:
        if fname in members:
          out[fname] = tar.extractfile(members[fname]).read()
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
    raise DatasetChecksumError(f"cifar10: {source} is not a readable tar.gz archive ({err}). "
                               f"{how_to_supply('cifar10')}") from err
  for fname in fnames:
    if fname not in out:
      raise DatasetNotFoundError(f"cifar10: {source} lacks member {fname}. {how_to_supply('cifar10')}")
  return out


def parse_cifar_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a CIFAR-10 binary batch (records of 1 label byte + R, G, B planes of 32×32).

  Returns:
    ``images`` uint8 ``[N, 32, 32, 3]`` (HWC), ``labels`` int32 ``[N]``.
  """
  if len(data) % _CIFAR_RECORD:
    raise ValueError(f"CIFAR-10 batch of {len(data)} bytes is not a whole number of {_CIFAR_RECORD}-byte records")
  records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), records[:, 0].astype(np.int32)


def read_cifar10(source: str | os.PathLike, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Reads a CIFAR-10 split from a data directory, a batch folder or the tarball.

  Args:
    source: a data directory (searched as in :func:`find_dataset_dir`), a folder of ``.bin``/``.bin.xz`` batches,
      or ``cifar-10-binary.tar.gz``.
    split: ``"train"`` (50,000 images, batches 1..5 in order) or ``"test"`` (10,000 images).
    verify: check the decompressed batches' sha256.

  Returns:
    ``images`` uint8 ``[N, 32, 32, 3]``, ``labels`` int32 ``[N]``, in the original order.
  """
  source = Path(source)
  located = source if source.is_file() else find_dataset_dir("cifar10", source)
  if located is None:
    raise DatasetNotFoundError(f"cifar10: no dataset files under {source}. {how_to_supply('cifar10')}")
  raw = _cifar_bytes(located, CIFAR_SPLIT_FILES[split])
  parts = []
  for fname, data in raw.items():
    if verify:
      _check_sha256("cifar10", f"{located}: {fname}", hashlib.sha256(data).hexdigest(), CIFAR_SHA256[fname])
    parts.append(parse_cifar_batch(data))
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_split(name: str, source: str | os.PathLike, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Dispatches to :func:`read_mnist` / :func:`read_cifar10`."""
  if name == "cifar10":
    return read_cifar10(source, split, verify)
  return read_mnist(name, source, split, verify)


def read_downloaded(name: str, paths: Mapping[str, str | os.PathLike], split: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a split from downloaded files, ``paths`` mapping the canonical file name to where it was saved.

  Used by the TFDS builders, whose download manager stores files under hashed names.
  """
  if name == "cifar10":
    return read_cifar10(Path(paths[CIFAR_TARBALL]), split)
  for fname in IDX_SPLIT_FILES[split]:
    _check_sha256(name, f"downloaded {fname}", sha256_file(paths[fname]), IDX_SHA256[name][fname])
  return read_idx_split(*(paths[f] for f in IDX_SPLIT_FILES[split]))


# ---------------------------------------------------------------------------------------------------------------------
# Embedded MNIST subset

EMBEDDED_PATH = Path(__file__).resolve().parent / "mnist_subset.npz"


def embedded_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """The small real MNIST subset shipped in the package (see ``make_embedded_subset.py``).

  Args:
    split: ``"train"`` (the first 10,000 training images) or ``"test"`` (the first 2,000 test images).

  Returns:
    ``images`` uint8 ``[N, 28, 28, 1]``, ``labels`` int32 ``[N]``, in the original file order.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  with np.load(EMBEDDED_PATH) as z:
    return z[f"{split}_images"], z[f"{split}_labels"].astype(np.int32)
