"""An :class:`InferSet` as one safetensors file (exact float32 round trip), and the per-UFC resume state.

This is haba's working form (checkpoints, the benchmark scripts); the shareable form is the artifact,
format 1.2 (``formats/haba-artifact-v1.md`` section 12), written by the artifact codec.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from habacli.errors import ConfigError
from habacli.infer._io import load_tensors, read_meta, save_tensors_atomic
from habacli.infer.pipeline import InferSet

__all__ = ["load_infer_set", "load_ufc_state", "save_infer_set", "save_ufc_state"]

SET_FORMAT = "haba-infer-set"
STATE_FORMAT = "haba-infer-ufc-state"


def save_infer_set(path: str | os.PathLike, s: InferSet) -> None:
    """Write ``s`` atomically (tensors float32; metadata: temperature, normalisation, teachers, seed...)."""
    tensors = {"natural": s.natural.float()}
    if s.ufc is not None:
        tensors["ufc"] = s.ufc.float()
    if s.soft_labels is not None:
        tensors["soft_labels"] = s.soft_labels.float()
    meta = {
        "format": SET_FORMAT,
        "version": 1,
        "temperature": s.temperature,
        "mean": list(s.mean),
        "std": list(s.std),
        "dataset": s.dataset,
        "ipc": s.ipc,
        "teachers": s.teachers,
        "seed": s.seed,
        "info": s.info,
    }
    save_tensors_atomic(path, tensors, meta)


def load_infer_set(path: str | os.PathLike, device: torch.device | str = "cpu") -> InferSet:
    """Read a file of :func:`save_infer_set`; shape problems are one-line :class:`ConfigError` s."""
    try:
        meta = read_meta(path)
        t = load_tensors(path)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{os.fspath(path)}: not an INFER set file ({type(e).__name__})") from None
    if meta.get("format") != SET_FORMAT or "natural" not in t:
        raise ConfigError(f"{os.fspath(path)}: not an INFER set file")
    try:
        return InferSet(
            t["natural"].to(device),
            t["ufc"].to(device) if "ufc" in t else None,
            t["soft_labels"].to(device) if "soft_labels" in t else None,
            float(meta["temperature"]),
            tuple(meta["mean"]),
            tuple(meta["std"]),
            meta.get("dataset", ""),
            int(meta.get("ipc", 0)),
            list(meta.get("teachers", [])),
            int(meta.get("seed", 0)),
            dict(meta.get("info", {})),
        )
    except ConfigError as e:
        raise ConfigError(f"{os.fspath(path)}: {e}") from None


def save_ufc_state(path: str | os.PathLike, done: dict[tuple[int, int], Tensor], meta: dict[str, Any]) -> None:
    """Finished UFCs ``{(k, m): u}`` plus the run's settings ``meta`` (to check on resume)."""
    tensors = {f"ufc.{k}.{m}": u.reshape(1, *u.shape[-3:]).float() for (k, m), u in done.items()}
    save_tensors_atomic(path, tensors, {"format": STATE_FORMAT, "version": 1, "run": meta})


def load_ufc_state(path: str | os.PathLike, expect: dict[str, Any] | None = None) -> dict[tuple[int, int], Tensor]:
    """The finished UFCs of :func:`save_ufc_state`; with ``expect``, a run setting that differs is a
    one-line :class:`ConfigError` (a checkpoint of another run is never resumed)."""
    meta = read_meta(path)
    if meta.get("format") != STATE_FORMAT:
        raise ConfigError(f"{os.fspath(path)}: not an INFER UFC checkpoint")
    for key, want in (expect or {}).items():
        got = meta.get("run", {}).get(key)
        if got != want:
            raise ConfigError(f"{os.fspath(path)}: checkpoint has {key}={got!r}, this run has {want!r}")
    out = {}
    for name, u in load_tensors(path).items():
        _, k, m = name.split(".")
        out[(int(k), int(m))] = u
    return out
