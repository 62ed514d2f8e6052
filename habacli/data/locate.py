"""Where a built-in dataset's files are: the registered layouts (imported here, so that they register
themselves) searched under ``--data-dir``, ``$HABA_DATA`` and known system folders. Torch-free and
cheap, so that ``haba datasets`` stays fast."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from habacli.data import cifar, folder, idx, svhn  # noqa: F401 - each registers its layouts in LAYOUTS
from habacli.data.layouts import LAYOUTS, Files, Layout
from habacli.data.spec import DatasetSpec


def get_layout(name: str) -> Layout:
    """The layout called ``name``."""
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
