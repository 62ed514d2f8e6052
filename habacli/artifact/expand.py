"""Expand an artifact into plain training images: a PNG image folder, safetensors, or parquet.

Every basis x hallucinator pair decodes to one image (basis-major: pair ``i*K + k`` is basis ``i``
under hallucinator ``k``); ``per_basis=k`` keeps k distinct random hallucinators per basis instead.
An artifact without hallucinators (a plain baseline) expands to its bases, with hallucinator -1. A format
1.2 (INFER) artifact expands to all its instances in the spec's order: the natural images, then
clip(natural + compensator) with a ``compensator`` index (k*M + m; -1 for a natural image), and its
instance soft labels (logits; the temperature is in the metadata).

Output layouts (everything is written into a temporary folder and renamed into place):

- ``imagefolder``: ``CLASS/b<basis>_h<k>.png`` plus ``metadata.csv`` (file_name, label, basis,
  hallucinator). ``datasets.load_dataset("imagefolder", data_dir=OUT)`` reads the label from the
  metadata; torchvision's ``ImageFolder`` numbers classes by sorted folder name, so when the
  sanitised names are not already in label order the folders get a zero-padded index prefix
  (``00_T-shirt_top``) and both loaders agree with the artifact's labels.
- ``safetensors``: ``images.safetensors`` with ``images`` uint8 [M, C, H, W], ``labels`` int64,
  ``basis`` / ``hallucinator`` int64 (and ``soft_labels`` float32 [M, C] logits when the artifact
  has them) and the class names (JSON) in the metadata.
- ``parquet``: ``train-00000-of-00001.parquet`` written by ``datasets`` with ``Image()`` and
  ``ClassLabel(names)`` features (plus ``soft_label`` lists of logits when present), the layout the
  Hub's dataset viewer reads. Image folders carry hard labels only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.artifact.codec import load_artifact
from habacli.artifact.grid import DEFAULT_MAX_COLUMNS, grid_layout, render_grid
from habacli.artifact.header import local_path
from habacli.artifact.pixels import class_names, image_shape, to_uint8
from habacli.errors import ConfigError, UnknownNameError
from habacli.runtime.atomic import atomic_dir, atomic_path
from habacli.runtime.progress import Progress, ProgressFn

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image as PILImage

FORMATS: tuple[str, ...] = ("imagefolder", "safetensors", "parquet")
PARQUET_NAME = "train-00000-of-00001.parquet"
SAFETENSORS_NAME = "images.safetensors"
METADATA_NAME = "metadata.csv"
GRID_NAME = "grid.png"
#: Images decoded per chunk (bounds memory for large artifacts).
DECODE_CHUNK = 4096

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_MAX_NAME = 100


@dataclass(frozen=True)
class ExpandResult:
    """What :func:`expand` wrote."""

    out: Path
    fmt: str
    num_images: int
    num_classes: int
    num_bases: int
    num_hallucinators: int
    per_basis: int | None
    files: tuple[str, ...]  # main output files, relative to ``out``
    class_dirs: tuple[str, ...] | None  # imagefolder only: folder name of each class, by label
    grid: Path | None
    grid_note: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        d["grid"] = None if self.grid is None else str(self.grid)
        d["files"], d["class_dirs"] = list(self.files), None if self.class_dirs is None else list(self.class_dirs)
        return d


def sanitize_class_names(names: Sequence[str]) -> list[str]:
    """Safe, unique, non-empty folder names for ``names`` (same order).

    Path separators, NUL and control characters, Windows-reserved characters and names
    (``CON``, ``nul.txt``...), leading dots/spaces, trailing dots/spaces and empty names are
    neutralised; names equal after sanitising (case-insensitively) get ``_2``, ``_3``... suffixes.
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names):
        name = unicodedata.normalize("NFC", str(raw))
        name = _UNSAFE.sub("_", name).strip()
        name = name.lstrip(". ").rstrip(". ")
        name = name[:_MAX_NAME].rstrip(". ")
        if name.split(".")[0].lower() in _WINDOWS_RESERVED:
            name = f"_{name}"
        if not name or set(name) <= {"_"}:
            name = f"class_{i}" if not name else f"class_{i}{name}"
        base, n = name, 2
        while name.casefold() in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name.casefold())
        out.append(name)
    return out


def class_folders(names: Sequence[str]) -> list[str]:
    """Folder names whose sorted order is the label order (what ``ImageFolder`` assumes)."""
    safe = sanitize_class_names(names)
    if safe == sorted(safe):
        return safe
    width = len(str(len(safe) - 1))
    return [f"{i:0{width}d}_{s}" for i, s in enumerate(safe)]


def select_pairs(
    num_bases: int, num_hallucinators: int, per_basis: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(basis index, hallucinator index) of every image to expand, basis-major.

    All pairs, or ``per_basis`` distinct hallucinators per basis drawn with ``seed``. With no
    hallucinators the bases themselves are the images (hallucinator index -1).
    """
    import torch  # lazy: torch

    k_all = max(num_hallucinators, 1)
    if per_basis is not None and not 1 <= per_basis <= k_all:
        have = f"{num_hallucinators} hallucinator(s)" if num_hallucinators else "no hallucinators (1 image per basis)"
        raise ConfigError(f"--per-basis must be between 1 and {k_all}: the artifact has {have}, got {per_basis}")
    if num_hallucinators == 0:
        return torch.arange(num_bases), torch.full((num_bases,), -1, dtype=torch.long)
    if per_basis is None or per_basis == num_hallucinators:
        basis = torch.arange(num_bases).repeat_interleave(num_hallucinators)
        return basis, torch.arange(num_hallucinators).repeat(num_bases)
    g = torch.Generator().manual_seed(int(seed))
    picks = torch.rand(num_bases, num_hallucinators, generator=g).argsort(dim=1)[:, :per_basis]
    picks = picks.sort(dim=1).values
    return torch.arange(num_bases).repeat_interleave(per_basis), picks.reshape(-1)


def select_instances(
    artifact: Any, per_basis: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``(basis, hallucinator, compensator or None, instance index)`` of every image to expand. For a 1.2
    artifact with compensators: every instance, ``basis`` its natural image and ``compensator`` k*M + m
    (-1 for the natural image itself); otherwise :func:`select_pairs`."""
    import torch  # lazy: torch

    n, k = int(artifact.bases.shape[0]), int(artifact.num_hallucinators)
    comp = getattr(artifact, "compensators", None)
    if comp is None:
        basis, hall = select_pairs(n, k, per_basis, seed)
        return basis, hall, None, (basis if k == 0 else basis * k + hall)
    if per_basis is not None:
        raise ConfigError("--per-basis selects hallucinators; an INFER artifact expands all its instances")
    k_sub, m_per, nc = int(comp.shape[0]), int(comp.shape[1]), len(class_names(artifact))
    subset, labels = artifact.compensator_subset.detach().cpu().long(), artifact.labels.detach().cpu().long()
    slot = torch.full((k_sub * nc,), -1, dtype=torch.long)
    paired = torch.nonzero(subset >= 0).reshape(-1)
    slot[subset[paired] * nc + labels[paired]] = paired
    basis = torch.cat([torch.arange(n), slot.reshape(k_sub, 1, nc).expand(k_sub, m_per, nc).reshape(-1)])
    comp_idx = torch.cat([torch.full((n,), -1, dtype=torch.long), torch.arange(k_sub * m_per).repeat_interleave(nc)])
    return basis, torch.full_like(basis, -1), comp_idx, torch.arange(basis.numel())


def soft_labels_of(artifact: Any, basis: torch.Tensor, flat: torch.Tensor) -> torch.Tensor | None:
    """Per-image soft labels (logits): the 1.2 instance soft labels, else the 1.0 per-basis ones, else None."""
    isl = getattr(artifact, "instance_soft_labels", None)
    if isl is not None:
        return isl.detach().float().cpu()[flat].contiguous()
    if artifact.soft_labels is not None:  # per-image logits (the basis's), spec section 3
        return artifact.soft_labels.detach().float().cpu()[basis].contiguous()
    return None


def decode_uint8(
    artifact: Any,
    basis: torch.Tensor,
    hall: torch.Tensor,
    *,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    flat: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, uint8 images [m, C, H, W])`` chunks of the selected pairs (or instances ``flat``), on
    the CPU."""
    import torch  # lazy: torch

    k = int(artifact.num_hallucinators)
    if flat is None:
        flat = basis if k == 0 else basis * k + hall
    total = int(flat.numel())
    with torch.no_grad():
        for start in range(0, total, DECODE_CHUNK):
            idx = flat[start : start + DECODE_CHUNK]
            images, _ = artifact.decode(device=device, pixel=True, indices=idx)
            yield start, to_uint8(images.float()).cpu()
            if progress is not None:
                progress(Progress("decode", "decoding", min(start + DECODE_CHUNK, total), total))


def _pil(img: torch.Tensor) -> PILImage.Image:
    from PIL import Image  # lazy: Pillow

    c = img.shape[0]
    if c == 1:
        return Image.fromarray(img[0].numpy(), mode="L")
    if c in (3, 4):
        return Image.fromarray(img.permute(1, 2, 0).contiguous().numpy(), mode="RGB" if c == 3 else "RGBA")
    raise ConfigError(f"cannot write {c}-channel images as PNG (1, 3 or 4 channels)")


def png_bytes(img: torch.Tensor) -> bytes:
    """PNG encoding of one uint8 image [C, H, W]."""
    buf = io.BytesIO()
    _pil(img).save(buf, format="PNG")
    return buf.getvalue()


def _file_name(b: int, k: int, wb: int, wk: int, u: int = -1) -> str:
    if u >= 0:
        return f"b{b:0{wb}d}_u{u}.png"
    return f"b{b:0{wb}d}.png" if k < 0 else f"b{b:0{wb}d}_h{k:0{wk}d}.png"


def _write_imagefolder(
    artifact: Any, tmp: Path, basis, hall, labels, device, progress, comp=None, flat=None
) -> tuple[list[str], list[str]]:
    folders = class_folders(class_names(artifact))
    for f in folders:
        (tmp / f).mkdir()
    wb = len(str(max(int(artifact.bases.shape[0]) - 1, 0)))
    wk = len(str(max(int(artifact.num_hallucinators) - 1, 0)))
    rows = []
    for start, chunk in decode_uint8(artifact, basis, hall, device=device, progress=progress, flat=flat):
        for j in range(chunk.shape[0]):  # PNG encoding is inherently one file at a time
            b, k, y = int(basis[start + j]), int(hall[start + j]), int(labels[start + j])
            u = -1 if comp is None else int(comp[start + j])
            rel = f"{folders[y]}/{_file_name(b, k, wb, wk, u)}"
            _pil(chunk[j]).save(tmp / rel, format="PNG")
            rows.append((rel, y, b, k) if comp is None else (rel, y, b, k, u))
    with open(tmp / METADATA_NAME, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "label", "basis", "hallucinator", *([] if comp is None else ["compensator"])])
        w.writerows(rows)
    return [METADATA_NAME], folders


def _write_safetensors(artifact: Any, path: Path, basis, hall, labels, device, progress, comp=None, flat=None) -> None:
    import torch  # lazy: torch
    from safetensors.torch import save  # lazy: safetensors

    parts = [chunk for _, chunk in decode_uint8(artifact, basis, hall, device=device, progress=progress, flat=flat)]
    c, h, w = image_shape(artifact)
    images = torch.cat(parts) if parts else torch.empty((0, c, h, w), dtype=torch.uint8)
    spec = artifact.spec if isinstance(artifact.spec, dict) else artifact.spec.to_dict()
    meta = {
        "format": "haba-expanded",
        "layout": "images uint8 [M, C, H, W]; labels, basis, hallucinator int64 [M] (hallucinator -1 = the basis)",
        "class_names": json.dumps(class_names(artifact)),
        "dataset": str(spec.get("name", "")),
        "num_hallucinators": str(int(artifact.num_hallucinators)),
    }
    tensors = {
        "images": images.contiguous(),
        "labels": labels.to(torch.int64).contiguous(),
        "basis": basis.to(torch.int64).contiguous(),
        "hallucinator": hall.to(torch.int64).contiguous(),
    }
    if comp is not None:
        tensors["compensator"] = comp.to(torch.int64).contiguous()
    soft = soft_labels_of(artifact, basis, basis if flat is None else flat)
    if soft is not None:
        tensors["soft_labels"] = soft
    if getattr(artifact, "soft_label_temperature", None) is not None:
        meta["soft_label_temperature"] = str(artifact.soft_label_temperature)
    # safetensors writes metadata keys in a random order: lay the header out sorted, so the same artifact
    # always expands to the same bytes (the payload's layout is already deterministic)
    body = save(tensors)
    (n,) = struct.unpack("<Q", body[:8])
    entries = json.loads(body[8 : 8 + n])
    entries.pop("__metadata__", None)
    header = {"__metadata__": dict(sorted(meta.items())), **{k: entries[k] for k in sorted(entries)}}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(memoryview(body)[8 + n :])


def _pair_labels(artifact: Any, basis: torch.Tensor) -> torch.Tensor:
    return artifact.labels.detach().cpu().long()[basis]


def write_parquet(
    artifact: Any,
    path: str | os.PathLike,
    *,
    per_basis: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> int:
    """Write the expansion of ``artifact`` as one parquet file (``image``: Image, ``label``:
    ClassLabel(names), plus ``basis`` / ``hallucinator`` ints), atomically. Returns the row count."""
    import datasets  # lazy: the datasets library

    artifact = _as_artifact(artifact)
    basis, hall, comp, flat = select_instances(artifact, per_basis, seed)
    labels = _pair_labels(artifact, basis)
    images: list[dict[str, bytes | None]] = []
    for _, chunk in decode_uint8(artifact, basis, hall, device=device, progress=progress, flat=flat):
        images.extend({"bytes": png_bytes(chunk[j]), "path": None} for j in range(chunk.shape[0]))
    names = class_names(artifact)
    if len(set(names)) != len(names) or not all(names):
        names = sanitize_class_names(names)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "basis": datasets.Value("int32"),
            "hallucinator": datasets.Value("int32"),
        }
    )
    columns = {"image": images, "label": labels.tolist(), "basis": basis.tolist(), "hallucinator": hall.tolist()}
    if comp is not None:
        features["compensator"] = datasets.Value("int32")
        columns["compensator"] = comp.tolist()
    soft = soft_labels_of(artifact, basis, flat)
    if soft is not None:  # logits: the 1.2 instance soft labels, or the 1.0 basis's
        features["soft_label"] = datasets.List(datasets.Value("float32"))
        columns["soft_label"] = soft.tolist()
    ds = datasets.Dataset.from_dict(columns, features=features)
    from datasets.utils import logging as ds_logging  # lazy: the datasets library

    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # library code: no tqdm bars on the caller's stderr
    try:
        with atomic_path(path, suffix=".parquet") as tmp:
            ds.to_parquet(str(tmp))
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    return len(ds)


def _as_artifact(ref: Any) -> Any:
    if hasattr(ref, "decode") and hasattr(ref, "bases"):
        return ref

    return load_artifact(local_path(ref), device="cpu")


def expand(
    artifact_ref: Any,
    out: str | os.PathLike,
    *,
    fmt: str,
    per_basis: int | None = None,
    grid: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
    max_grid_columns: int | None = None,
    progress: ProgressFn | None = None,
) -> ExpandResult:
    """Decode ``artifact_ref`` (path, ``hf://`` reference or loaded artifact) into ``out``.

    ``fmt`` is one of :data:`FORMATS`; ``grid`` adds a contact sheet ``grid.png``. An existing
    non-empty ``out`` is refused unless ``overwrite``.
    """
    from habacli.runtime.device import pick_device  # lazy: torch

    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty (pass --overwrite to replace it)")
    dev = str(pick_device(device))
    artifact = _as_artifact(artifact_ref)
    n_bases, k = int(artifact.bases.shape[0]), int(artifact.num_hallucinators)
    basis, hall, comp, flat = select_instances(artifact, per_basis, seed)
    labels = _pair_labels(artifact, basis)
    class_dirs: list[str] | None = None
    grid_path, note = None, None
    with atomic_dir(out, overwrite=True) as tmp:
        if fmt == "imagefolder":
            files, class_dirs = _write_imagefolder(artifact, tmp, basis, hall, labels, dev, progress, comp, flat)
        elif fmt == "safetensors":
            _write_safetensors(artifact, tmp / SAFETENSORS_NAME, basis, hall, labels, dev, progress, comp, flat)
            files = [SAFETENSORS_NAME]
        else:
            write_parquet(artifact, tmp / PARQUET_NAME, per_basis=per_basis, seed=seed, device=dev, progress=progress)
            files = [PARQUET_NAME]
        if grid:
            cap = max_grid_columns or DEFAULT_MAX_COLUMNS
            render_grid(artifact, max_columns=cap).save(tmp / GRID_NAME, format="PNG")
            note = grid_layout(artifact, max_columns=cap).note
            grid_path = out / GRID_NAME
    return ExpandResult(
        out=out,
        fmt=fmt,
        num_images=int(basis.numel()),
        num_classes=len(class_names(artifact)),
        num_bases=n_bases,
        num_hallucinators=k,
        per_basis=per_basis,
        files=tuple(files),
        class_dirs=None if class_dirs is None else tuple(class_dirs),
        grid=grid_path,
        grid_note=note,
    )
