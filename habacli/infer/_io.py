"""Small file helpers for INFER: safetensors files with a JSON document under ``__metadata__['haba']``,
written atomically through :mod:`habacli.runtime.atomic`."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from habacli.runtime.atomic import atomic_path


def save_tensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` with ``meta`` (a JSON document under ``__metadata__['haba']``) to ``path`` atomically."""
    from safetensors.torch import save_file  # lazy: safetensors' torch half only when writing

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, tmp, metadata={"haba": json.dumps(meta, sort_keys=True, separators=(",", ":"))})


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a file written by :func:`save_tensors_atomic` (header only)."""
    from safetensors import safe_open  # lazy: header reads only

    with safe_open(os.fspath(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("haba")
    if raw is None:
        raise ValueError("no 'haba' metadata")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise TypeError("metadata is not a JSON object")
    return doc


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file  # lazy: safetensors' torch half only when reading

    return load_file(os.fspath(path))
