"""MNIST / Fashion-MNIST IDX files: flat, torchvision's ``<Name>/raw/`` sub-layout, gzipped or not."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from habacli.data.layouts import LAYOUTS, Files, Layout, first_existing
from habacli.errors import DataNotFoundError

if TYPE_CHECKING:
    import numpy as np

    from habacli.data.spec import DatasetSpec

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _dirs(spec: DatasetSpec, root: Path) -> list[Path]:
    sub = spec.extra.get("torchvision_dir", "")
    return [root, root / sub / "raw", root / sub] if sub else [root]


def find(spec: DatasetSpec, root: Path) -> Files | None:
    """All four IDX files in one of the accepted folders, or None."""
    for d in _dirs(spec, root):
        files: Files = {}
        for split, names in FILES.items():
            found = [first_existing([d / n, d / f"{n}.gz"]) for n in names]
            if any(f is None for f in found):
                break
            files[split] = [f for f in found if f is not None]
        else:
            return files
    return None


def expect(spec: DatasetSpec, root: Path) -> str:
    """Which files to put where."""
    sub = spec.extra.get("torchvision_dir", "")
    names = ", ".join(n for pair in FILES.values() for n in pair)
    where = f"{root}/ or {root}/{sub}/raw/" if sub else f"{root}/"
    return f"put {names} (optionally .gz) in {where}"


def _read_idx(path: Path) -> np.ndarray:
    import numpy as np  # lazy: numpy

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(data) - offset != count:
        raise DataNotFoundError(f"{path} is truncated or corrupt: {len(data) - offset} bytes for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def read(spec: DatasetSpec, files: list[Path], split: str, size: tuple[int, int] | None) -> tuple:
    """Decode images ``[N, 1, 28, 28]`` uint8 and labels ``[N]`` int64."""
    images = _read_idx(files[0])
    labels = _read_idx(files[1]).astype("int64")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataNotFoundError(f"{files[0]} and {files[1]} do not match ({images.shape} vs {labels.shape})")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataNotFoundError(f"{files[1]}: labels outside 0..{spec.num_classes - 1}")
    return images[:, None, :, :], labels


LAYOUTS.add("idx", Layout("idx", find, expect, read))
