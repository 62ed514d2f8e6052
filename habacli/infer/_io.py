"""Small file helpers for INFER: atomic safetensors writes (temporary sibling, then ``os.replace``)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_tensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` with ``meta`` (a JSON document under ``__metadata__['haba']``) to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(clean, tmp, metadata={"haba": json.dumps(meta, sort_keys=True, separators=(",", ":"))})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a file written by :func:`save_tensors_atomic` (header only)."""
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("haba")
    if raw is None:
        raise ValueError("no 'haba' metadata")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise TypeError("metadata is not a JSON object")
    return doc


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(os.fspath(path))
