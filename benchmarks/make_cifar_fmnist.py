"""Write Fashion-MNIST as CIFAR-10 python batches: the "CIFAR-shaped Fashion-MNIST" of the accuracy tables.

Each 28x28 grey image is zero-padded by 2 pixels on every side to 32x32 and repeated to 3 channels, then
written in the official ``cifar-10-batches-py`` layout: ``data_batch_1`` .. ``data_batch_5`` (the 60,000
training images in 5 batches of 12,000, in file order), ``test_batch`` (the 10,000 test images) and
``batches.meta`` (``label_names`` = the Fashion-MNIST class names). Each batch is a protocol-2 pickle of a
plain dict with text keys, which is how CIFAR's own Python 2 files load under ``encoding="latin1"``:
``"data"`` (uint8 ``[N, 3072]``, channel-major rows) and ``"labels"`` (a list of ints). So torchvision's
``CIFAR10`` (and with it the official DC/DSA/DM, MTT and HaBa code) reads the folder unchanged, and haba
reads it with ``haba distill cifar10 --data-dir OUT`` (it never unpickles: habacli/data/inert_pickle.py
decodes the data only).

The output is deterministic (same input, same bytes) and atomic: the folder is written under a temporary
name in OUT and renamed to ``OUT/cifar-10-batches-py`` at the end.

    python benchmarks/make_cifar_fmnist.py runs/accuracy/cifar-fmnist [--source DIR] [--limit N] [--force]
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
FOLDER = "cifar-10-batches-py"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PAD = 2  # 28 + 2 * 2 = 32


def _idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a uint8 array of its stated shape."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise SystemExit(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise SystemExit(f"{path} is truncated: {data.size} bytes for shape {shape}")
    return data.reshape(shape)


def _find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise SystemExit(f"{source}: no {stem}[.gz] (Fashion-MNIST IDX files; apt-get install dataset-fashion-mnist)")


def load(source: Path, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``split`` ('train' or 'test') of Fashion-MNIST -> uint8 ``[N, 28, 28]``, int64 ``[N]``."""
    prefix = "train" if split == "train" else "t10k"
    images = _idx(_find(source, f"{prefix}-images-idx3-ubyte"))[:limit]
    labels = _idx(_find(source, f"{prefix}-labels-idx1-ubyte"))[:limit].astype(np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise SystemExit(f"{source}: unexpected Fashion-MNIST {split} shapes {images.shape}, {labels.shape}")
    return images, labels


def to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, 28, 28]`` -> uint8 ``[N, 3072]``: padded to 32x32, 3 equal channels, CIFAR's row order."""
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))
    rgb = np.repeat(padded[:, None], 3, axis=1)  # [N, 3, 32, 32]
    return np.ascontiguousarray(rgb.reshape(len(images), 3 * 32 * 32))


def _write(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_batches(folder: Path, source: Path, limit: int | None = None) -> None:
    """The CIFAR-10 python files of Fashion-MNIST in ``folder`` (which exists and is empty)."""
    images, labels = load(source, "train", limit)
    rows = to_cifar_rows(images)
    for i, idx in enumerate(np.array_split(np.arange(len(rows)), 5), start=1):
        _write(
            folder / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5 (Fashion-MNIST, padded to 32x32x3)",
                "labels": [int(y) for y in labels[idx]],
                "data": rows[idx],
            },
        )
    images, labels = load(source, "test", limit)
    _write(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1 (Fashion-MNIST, padded to 32x32x3)",
            "labels": [int(y) for y in labels],
            "data": to_cifar_rows(images),
        },
    )
    per_batch = -(-len(rows) // 5)
    _write(
        folder / "batches.meta",
        {"label_names": list(CLASS_NAMES), "num_cases_per_batch": per_batch, "num_vis": 3072},
    )


def make(out: Path, source: Path = SOURCE, limit: int | None = None, force: bool = False) -> Path:
    """Write ``out/cifar-10-batches-py`` atomically; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / FOLDER
    if final.exists() and not force:
        raise SystemExit(f"{final} already exists (--force replaces it)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.tmp-", dir=out))
    try:
        write_batches(tmp, source, limit)
        tmp.chmod(0o755)  # mkdtemp's 0700 would outlive the rename
        if final.exists():  # --force: move the old one aside first, so that final is never half-written
            old = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.old-", dir=out))
            os.replace(final, old / FOLDER)
            shutil.rmtree(old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write cifar-10-batches-py/ into (pass it as --data-dir)")
    ap.add_argument("--source", type=Path, default=SOURCE, help=f"Fashion-MNIST IDX files (default: {SOURCE})")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each split (tests)")
    ap.add_argument("--force", action="store_true", help="replace an existing cifar-10-batches-py")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    final = make(args.out, args.source, args.limit, args.force)
    print(f"wrote {final}", file=sys.stderr)


if __name__ == "__main__":
    main()
