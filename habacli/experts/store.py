"""On-disk expert trajectories: one safetensors file per expert plus ``manifest.json``.

Layout of a buffer folder (``haba-experts-v1``)::

    expert_00000.safetensors   tensor "trajectory" float32 [epochs + 1, P]: row 0 is the
                               initialisation, row e the parameters after epoch e, each row the
                               flat parameter vector in ParamLayout order (named_parameters()).
                               Header metadata: one key "haba_experts" holding a JSON object
                               (dataset, model, normalisation/ZCA, hyper-parameters, param names
                               and shapes, seeds, test accuracy per row). One key, sorted JSON,
                               so the file bytes are deterministic (safetensors writes metadata
                               keys in random order).
    manifest.json              the index: the shared configuration, and per expert its file,
                               SHA-256, size, seed and test accuracies. Always rebuildable from
                               the files (:func:`rebuild_manifest`), written atomically.
    .expert_00007.partial.safetensors
                               a per-epoch checkpoint of an unfinished expert (rows so far and
                               the RNG state); removed when the expert is finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from habacli.errors import ExpertsError
from habacli.runtime.atomic import atomic_write_bytes

FORMAT = "haba-experts-v1"
MANIFEST_FORMAT = "haba-experts-manifest-v1"
META_KEY = "haba_experts"
MANIFEST = "manifest.json"
_FILE_RE = re.compile(r"^expert_(\d{5,})\.safetensors$")
#: per-expert metadata keys; everything else in the metadata is the shared configuration
PER_EXPERT_KEYS = ("index", "expert_seed", "test_accuracy")


def expert_file(index: int) -> str:
    """File name of expert ``index``."""
    return f"expert_{index:05d}.safetensors"


def partial_file(index: int) -> str:
    """File name of expert ``index``'s per-epoch checkpoint."""
    return f".expert_{index:05d}.partial.safetensors"


def config_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The shared configuration part of an expert's metadata (what every file must agree on)."""
    return {k: v for k, v in meta.items() if k not in PER_EXPERT_KEYS}


def describe(config: dict[str, Any]) -> str:
    """A short human description: ``fashion_mnist/convnet (no ZCA), 2 epochs``."""
    zca = "ZCA" if config.get("zca") else "no ZCA"
    sub = f", subset {config['subset']}" if config.get("subset") else ""
    return f"{config.get('dataset')}/{config.get('model')} ({zca}), {config.get('epochs')} epochs, seed {config.get('seed')}{sub}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def encode_expert(trajectory: torch.Tensor, meta: dict[str, Any]) -> bytes:
    """The bytes of an expert file (deterministic for the same tensor and metadata)."""
    return save(
        {"trajectory": trajectory.detach().to("cpu", torch.float32).contiguous()}, metadata={META_KEY: _dumps(meta)}
    )


def write_expert(folder: Path, index: int, trajectory: torch.Tensor, meta: dict[str, Any]) -> Path:
    """Write expert ``index`` atomically; returns its path."""
    path = folder / expert_file(index)
    atomic_write_bytes(path, encode_expert(trajectory, meta))
    return path


def read_header(path: Path) -> tuple[dict[str, Any], list[int]]:
    """``(metadata, trajectory shape)`` of an expert file, reading only its header."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            shape = list(f.get_slice("trajectory").get_shape()) if "trajectory" in f.keys() else None  # noqa: SIM118 - safe_open has no __contains__
    except Exception as e:  # safetensors raises several types for a damaged header
        raise ExpertsError(f"{path}: not a readable expert file ({type(e).__name__}: {e}); delete it to retrain") from e
    if raw is None or shape is None:
        raise ExpertsError(f"{path}: not a haba expert file (no {META_KEY!r} metadata or 'trajectory' tensor)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ExpertsError(f"{path}: damaged expert metadata ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise ExpertsError(f"{path}: damaged expert metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ExpertsError(f"{path}: unsupported expert format {meta.get('format')!r} (expected {FORMAT})")
    if len(shape) != 2 or shape[0] != meta.get("epochs", -2) + 1 or shape[1] != meta.get("num_params"):
        raise ExpertsError(
            f"{path}: trajectory shape {shape} does not match its metadata "
            f"({meta.get('epochs')} epochs + 1, {meta.get('num_params')} parameters)"
        )
    return meta, shape


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def list_expert_files(folder: Path) -> dict[int, Path]:
    """``{index: path}`` of the finished expert files in ``folder``."""
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = _FILE_RE.match(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The parsed manifest of ``folder`` or None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or UTF-8, a 5000-digit integer
        problem = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ExpertsError(
            f"{path}: damaged manifest ({problem}); rebuild it with `haba experts ... --merge`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("experts"), list):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ExpertsError(f"{path}: not a haba expert manifest (format {found!r})")
    return data


def check_config(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise :class:`ExpertsError` naming the first key where ``found`` differs from ``expected``."""
    for key in sorted(set(found) | set(expected)):
        if found.get(key) != expected.get(key):
            shown = "parameter layout" if key == "params" else key
            raise ExpertsError(
                f"{path}: expert of another configuration ({shown}: {_short(found.get(key))} vs "
                f"{_short(expected.get(key))}); it holds {describe(found)}; use another --out folder"
            )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rebuild_manifest(folder: Path) -> dict[str, Any] | None:
    """(Re)build ``manifest.json`` from the expert files present and write it atomically.

    Deterministic: the same files give the same bytes whichever process or shard wrote them.
    Checksums of files already listed with the same size in an older manifest are reused.
    Returns the manifest, or None when the folder holds no expert.
    """
    files = list_expert_files(folder)
    if not files:
        return None
    try:
        old = read_manifest(folder)
    except ExpertsError:
        old = None
    manifest_path = folder / MANIFEST
    old_entries: dict[str, dict] = {}
    if old is not None:
        old_mtime = manifest_path.stat().st_mtime
        for e in old["experts"]:
            p = folder / str(e.get("file"))
            if p.is_file() and p.stat().st_size == e.get("bytes") and p.stat().st_mtime <= old_mtime:
                old_entries[e["file"]] = e
    config: dict[str, Any] | None = None
    entries = []
    for index, path in files.items():
        meta, _ = read_header(path)
        if meta.get("index") != index:
            raise ExpertsError(f"{path}: file name says expert {index} but it holds expert {meta.get('index')}")
        cfg = config_of(meta)
        if config is None:
            config = cfg
        else:
            check_config(path, cfg, config)
        cached = old_entries.get(path.name)
        sha = cached["sha256"] if cached else sha256_file(path)
        acc = [float(a) for a in meta.get("test_accuracy", [])]
        entries.append(
            {
                "index": index,
                "file": path.name,
                "sha256": sha,
                "bytes": path.stat().st_size,
                "expert_seed": meta.get("expert_seed"),
                "test_accuracy": acc,
                "final_test_accuracy": acc[-1] if acc else None,
            }
        )
    assert config is not None
    finals = [e["final_test_accuracy"] for e in entries if e["final_test_accuracy"] is not None]
    manifest = {
        "format": MANIFEST_FORMAT,
        **{k: v for k, v in config.items() if k != "format"},
        "num_experts": len(entries),
        "mean_final_test_accuracy": (sum(finals) / len(finals)) if finals else None,
        "experts": entries,
    }
    atomic_write_bytes(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


def manifest_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The shared configuration recorded in a manifest (same keys as :func:`config_of`)."""
    drop = {"experts", "num_experts", "mean_final_test_accuracy"}
    cfg = {k: v for k, v in manifest.items() if k not in drop}
    cfg["format"] = FORMAT
    return cfg


@dataclass
class PartialState:
    """A per-epoch checkpoint of an unfinished expert."""

    rows: torch.Tensor  # float32 [epochs_done + 1, P]
    generator_state: torch.Tensor  # uint8, torch.Generator.get_state()
    test_accuracy: list[float]


def write_partial(folder: Path, index: int, meta: dict[str, Any], state: PartialState) -> None:
    """Atomically write expert ``index``'s checkpoint (``meta`` is the expert's metadata)."""
    tensors = {
        "rows": state.rows.detach().to("cpu", torch.float32).contiguous(),
        "generator_state": state.generator_state.cpu(),
    }
    info = {**meta, "test_accuracy": state.test_accuracy}
    atomic_write_bytes(folder / partial_file(index), save(tensors, metadata={META_KEY: _dumps(info)}))


def read_partial(folder: Path, index: int, meta: dict[str, Any]) -> PartialState | None:
    """Expert ``index``'s checkpoint when it exists and belongs to the same configuration."""
    path = folder / partial_file(index)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})[META_KEY])
            rows = f.get_tensor("rows")
            gen = f.get_tensor("generator_state")
    except Exception:  # noqa: BLE001 - a damaged checkpoint is only a lost head start: retrain the expert
        return None
    expected = {k: v for k, v in meta.items() if k != "test_accuracy"}
    if {k: v for k, v in info.items() if k != "test_accuracy"} != expected:
        return None
    if rows.ndim != 2 or rows.shape[1] != meta["num_params"] or not 1 <= rows.shape[0] <= meta["epochs"]:
        return None
    return PartialState(rows, gen, [float(a) for a in info["test_accuracy"]])


def remove_partial(folder: Path, index: int) -> None:
    """Delete expert ``index``'s checkpoint if present."""
    try:
        os.unlink(folder / partial_file(index))
    except FileNotFoundError:
        pass
