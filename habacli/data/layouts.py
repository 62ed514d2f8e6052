"""Local on-disk layouts (torchvision's, the official archives' and Debian's) and how to find them.

A :class:`Layout` knows which files a dataset needs under a root folder (``find``), how to say so when
they are missing (``expect``), and how to decode them (``read`` -> uint8 ``[N, C, H, W]`` numpy array +
int64 labels). Finding is torch-free and cheap so that ``haba datasets`` stays fast.
"""

from __future__ import annotations

import os
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


LAYOUTS: Registry[Layout] = Registry("data layout")
_LOADED = False


def get_layout(name: str) -> Layout:
    """The layout called ``name`` (imports the loader modules on first use)."""
    global _LOADED
    if not _LOADED:
        from habacli.data import cifar, folder, idx, svhn  # noqa: F401 - they register themselves

        _LOADED = True
    return LAYOUTS.get(name)


def search_roots(spec: DatasetSpec) -> list[Path]:
    """Folders searched when no ``--data-dir`` is given: ``$HABA_DATA`` entries, then system folders
    known for this dataset (Debian's ``/usr/share/datasets/fashion-mnist``)."""
    roots = [Path(p).expanduser() for p in os.environ.get("HABA_DATA", "").split(os.pathsep) if p]
    roots += [Path(p) for p in spec.extra.get("system_dirs", [])]
    return [r for r in roots if r.is_dir()]


@dataclass(frozen=True)
class Found:
    """Local files for both splits of a dataset."""

    layout: Layout
    root: Path
    files: Files


def find_local(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> Found | None:
    """Look for ``spec``'s files under ``data_dir`` (only there) or the default roots."""
    if not spec.layout:
        return None
    layout = get_layout(spec.layout)
    roots = [Path(data_dir).expanduser()] if data_dir is not None else search_roots(spec)
    for root in roots:
        files = layout.find(spec, root) if root.is_dir() else None
        if files:
            return Found(layout, root, files)
    return None


def probe_local(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> Path | None:
    """The root holding ``spec``'s files, checked cheaply (for ``haba datasets``)."""
    if not spec.layout:
        return None
    layout = get_layout(spec.layout)
    roots = [Path(data_dir).expanduser()] if data_dir is not None else search_roots(spec)
    for root in roots:
        if root.is_dir() and (layout.probe(spec, root) if layout.probe else layout.find(spec, root)):
            return root
    return None


def expected_files(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> str:
    """One sentence: which files to put where for ``spec``."""
    if not spec.layout:
        return "no local layout is known"
    root = Path(data_dir).expanduser() if data_dir is not None else Path("DATA_DIR")
    return get_layout(spec.layout).expect(spec, root)


def first_existing(candidates: list[Path]) -> Path | None:
    """The first path of ``candidates`` that exists."""
    for c in candidates:
        if c.exists():
            return c
    return None
