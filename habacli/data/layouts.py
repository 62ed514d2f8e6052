"""What a local on-disk layout is (torchvision's, the official archives' and Debian's) and the registry
the reader modules add theirs to; finding them is :mod:`habacli.data.locate`.

A :class:`Layout` knows which files a dataset needs under a root folder (``find``), how to say so when
they are missing (``expect``), and how to decode them (``read`` -> uint8 ``[N, C, H, W]`` numpy array +
int64 labels). Finding is torch-free and cheap so that ``haba datasets`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from habacli._registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from habacli.data.spec import DatasetSpec

Files = dict[str, list[Path]]  # split ("train" | "test") -> files
Reader = Callable[["DatasetSpec", list[Path], str, "tuple[int, int] | None"], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class Layout:
    """One way a dataset can sit in a folder."""

    name: str
    find: Callable[[DatasetSpec, Path], Files | None]
    expect: Callable[[DatasetSpec, Path], str]
    read: Reader
    probe: Callable[[DatasetSpec, Path], bool] | None = None  # cheap presence check (no file listing)


LAYOUTS: Registry[Layout] = Registry("data layout")  # filled by the reader modules (cifar, folder, idx, svhn)


def first_existing(candidates: list[Path]) -> Path | None:
    """The first path of ``candidates`` that exists."""
    for c in candidates:
        if c.exists():
            return c
    return None
