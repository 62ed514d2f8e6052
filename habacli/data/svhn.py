"""SVHN cropped digits: ``train_32x32.mat`` / ``test_32x32.mat`` (torchvision's layout), read with
``scipy.io.loadmat`` when scipy is installed (it is optional)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from habacli.data.layouts import LAYOUTS, Files, Layout
from habacli.errors import DataNotFoundError

if TYPE_CHECKING:
    from habacli.data.spec import DatasetSpec

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def find(spec: DatasetSpec, root: Path) -> Files | None:
    """Both .mat files in ``root`` or ``root/svhn``."""
    for d in (root, root / "svhn", root / "SVHN"):
        if all((d / n).is_file() for n in FILES.values()):
            return {s: [d / n] for s, n in FILES.items()}
    return None


def expect(spec: DatasetSpec, root: Path) -> str:
    """Which files to put where."""
    return f"put {FILES['train']} and {FILES['test']} (from ufldl.stanford.edu/housenumbers) in {root}/"


def read(spec: DatasetSpec, files: list[Path], split: str, size: tuple[int, int] | None) -> tuple:
    """Decode one .mat file -> uint8 ``[N, 3, 32, 32]``; label 10 means digit 0 (as torchvision maps it)."""
    import numpy as np  # lazy: numpy

    try:
        from scipy.io import loadmat  # lazy: scipy
    except ImportError:
        raise DataNotFoundError(
            f"reading {files[0].name} needs scipy (pip install scipy), or use the Hub copy "
            f"{spec.hub_id} by leaving out --data-dir"
        ) from None
    try:
        mat = loadmat(str(files[0]), variable_names=["X", "y"])
    except Exception as e:  # noqa: BLE001 - scipy raises several types for bad files
        raise DataNotFoundError(f"{files[0]} is not a readable SVHN .mat file ({type(e).__name__})") from None
    if "X" not in mat or "y" not in mat:
        raise DataNotFoundError(f"{files[0]} has no X/y arrays")
    x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8, copy=False)
    y = mat["y"].astype(np.int64).reshape(-1) % 10
    return x, y


LAYOUTS.add("svhn", Layout("svhn", find, expect, read))
