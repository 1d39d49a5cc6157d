"""Writes ``mrl_jax/data/mnist_subset.npz``: the first 10,000 training and 2,000 test images of MNIST.

Run from the repository root::

    python -m mrl_jax.data.make_embedded_subset [--data-dir ../shared/data] [--out mrl_jax/data/mnist_subset.npz]

The source IDX files are checked against their canonical sha256 first. The output is byte-reproducible (fixed zip
timestamps, deflate level 9): arrays ``train_images`` / ``test_images`` uint8 ``[N, 28, 28, 1]``, ``train_labels`` /
``test_labels`` uint8 ``[N]``, and ``meta_json`` (source file names and sha256, counts).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from mrl_jax.data import sources


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
  """Like ``np.savez_compressed`` but byte-reproducible (fixed entry timestamps and order)."""
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for key, value in arrays.items():
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
      info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      zf.writestr(info, buf.getvalue(), compresslevel=9)


def make_subset(data_dir: str | Path, n_train: int = 10_000, n_test: int = 2_000) -> dict[str, np.ndarray]:
  """The first ``n_train`` / ``n_test`` images and labels of the verified MNIST files under ``data_dir``."""
  directory = sources.find_dataset_dir("mnist", data_dir)
  if directory is None:
    raise sources.DatasetNotFoundError(f"mnist: no dataset files under {data_dir}. {sources.how_to_supply('mnist')}")
  out, meta = {}, {"source": "MNIST (first images of the canonical IDX files)", "files": {}}
  for split, n in (("train", n_train), ("test", n_test)):
    paths = sources.idx_files("mnist", directory, split, verify=True)
    images, labels = sources.read_idx_split(*paths)
    out[f"{split}_images"], out[f"{split}_labels"] = images[:n], labels[:n].astype(np.uint8)
    meta["files"].update({p.name: sources.IDX_SHA256["mnist"][p.name] for p in paths})
    meta[f"{split}_count"] = int(n)
  out["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $MRL_DATA_DIR or ../shared/data)")
  parser.add_argument("--out", default=str(sources.EMBEDDED_PATH))
  parser.add_argument("--train", type=int, default=10_000)
  parser.add_argument("--test", type=int, default=2_000)
  args = parser.parse_args(argv)
  root, _ = sources.resolve_data_dir(args.data_dir)
  write_npz(args.out, make_subset(root, args.train, args.test))
  digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
  print(f"wrote {args.out}: {Path(args.out).stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
  main()
