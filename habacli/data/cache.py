"""haba's on-disk cache of decoded datasets (uint8 safetensors) and fitted ZCA transforms.

Location: ``$HABA_CACHE``, else the platform's user cache folder + ``haba`` (``$XDG_CACHE_HOME/haba``
or ``~/.cache/haba`` on Linux, ``~/Library/Caches/haba`` on macOS, ``%LOCALAPPDATA%/haba/Cache`` on
Windows). Keys hash the source files' paths, sizes and mtimes (or a Hub id + revision) and the image
size, so a changed source is decoded again instead of served stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from habacli.runtime.atomic import atomic_path

CACHE_VERSION = 2


def cache_dir() -> Path:
    """The root of haba's cache (not created here)."""
    env = os.environ.get("HABA_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "haba" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "haba"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "haba"


def files_fingerprint(paths: Iterable[str | os.PathLike]) -> list[list[Any]]:
    """``[[path, size, mtime_ns], ...]`` for the given files (sorted, absolute)."""
    out = []
    for p in sorted({os.path.abspath(p) for p in paths}):
        st = os.stat(p)
        out.append([p, st.st_size, st.st_mtime_ns])
    return out


def cache_key(payload: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able description of what was decoded and how."""
    blob = json.dumps({"v": CACHE_VERSION, **payload}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def slug(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return keep.strip("_")[:60] or "dataset"


def split_path(name: str, split: str, key: str) -> Path:
    """Where a decoded split lives: ``<cache>/data/<name>/<split>-<key>.safetensors``."""
    return cache_dir() / "data" / slug(name) / f"{split}-{key}.safetensors"


def zca_path(key: str) -> Path:
    """Where a fitted ZCA lives."""
    return cache_dir() / "zca" / f"{key}.safetensors"


def cached_splits(name: str) -> list[Path]:
    """Decoded splits of ``name`` present in the cache (cheap; no torch)."""
    folder = cache_dir() / "data" / slug(name)
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Write tensors + JSON metadata atomically as safetensors."""
    from safetensors.torch import save_file  # lazy: safetensors

    meta = {"format": "haba-cache", "version": str(CACHE_VERSION), "haba": json.dumps(metadata, sort_keys=True)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_tensors(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Read a cache entry; None when missing or unreadable (a corrupt entry is treated as a miss).

    The tensors are copy-on-write memory maps of the file (that is why a cached load takes
    milliseconds). Entries are only ever replaced atomically (a new inode), never rewritten in place,
    so live tensors stay valid; do not truncate cache files by hand while haba is running.
    """
    if not path.is_file():
        return None
    from safetensors import safe_open  # lazy: safetensors

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get("haba", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never fatal
        return None
    return tensors, meta


def read_meta(path: Path) -> dict[str, Any] | None:
    """The JSON metadata of a cache entry (header only), or None."""
    from safetensors import safe_open  # lazy: safetensors

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return json.loads((f.metadata() or {}).get("haba", "{}"))
    except Exception:  # noqa: BLE001
        return None
