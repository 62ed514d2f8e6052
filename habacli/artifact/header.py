"""Everything knowable from an artifact's header, without its payload and without torch: reading and
validating the safetensors header and the metadata document (spec formats/haba-artifact-v1.md sections 1-3,
6 and 8.1-8.4), the tensors the document implies, the storage accounting, and ``haba info``'s summary.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from habacli._shapes import ARCHITECTURES, MODULATIONS, PARAM_NAMES, hallucinator_shapes
from habacli.errors import ArtifactError, ArtifactNotFoundError

FORMAT = "haba"
FORMAT_VERSION = "1.3"  # the newest minor version this reader implements; writers use format_version_of
MAX_HEADER_BYTES = 100_000_000
MAX_TENSORS = 1024
MAX_RANK = 8
HAL_PREFIX, ZCA_PREFIX = "hallucinators.", "zca."
COMP_PREFIX, INSTANCE_SOFT = "compensators.", "instance_soft_labels"  # format 1.2 (INFER)
INFER_KEYS = ("compensators", "instance_soft_labels", "evaluation_recipe")  # format 1.2 document keys
RECIPE_KEYS: dict[str, type | tuple[type, ...]] = {
    "label_mode": str,
    "loss": str,
    "temperature": (int, float),
    "temperature_squared": bool,
    "mixup_alpha": (int, float),
    "soft_label_mixing": str,
    "optimizer": str,
    "lr": (int, float),
    "weight_decay": (int, float),
    "schedule": str,
    "epochs": int,
    "batch_size": int,
    "augmentations": list,
    "reported": str,
}
HAL_KEYS = PARAM_NAMES
ITEMSIZE = {
    "F32": 4,
    "I64": 8,
    "F16": 2,
    "BF16": 2,
    "F64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")
_VERSION = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}")
_PICKLE_MAGICS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


class _Problem(Exception):
    """Internal: one validation failure; turned into ArtifactError (with the path) or ConfigError."""


@dataclass(frozen=True)
class Header:
    """A validated safetensors header: ``doc`` is the parsed ``haba`` metadata document."""

    meta: dict[str, str]
    doc: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]  # name -> (dtype, shape, begin, end)
    header_bytes: int  # 8 + N
    file_bytes: int


# ----------------------------------------------------------------------------- header (no torch)
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Problem(f"has the key {dup!r} twice (duplicate JSON keys are refused)")
    return out


def _no_constant(name: str) -> Any:
    raise _Problem(f"holds {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Problem(f"holds the number {text[:20]}, which overflows a double")
    return value


def strict_json(text: str) -> Any:
    """Parse JSON strictly (spec section 8.1/8.3): no duplicate keys at any depth, no NaN/Infinity
    literals, no number that overflows a double, bounded nesting and integer size. Raises ``_Problem``."""
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite_float
        )
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate (\ud800) is not Unicode text
        return value
    except UnicodeEncodeError:
        raise _Problem("is not valid JSON (a string holds a lone surrogate, which is not Unicode)") from None
    except json.JSONDecodeError as e:
        raise _Problem(f"is not valid JSON ({e})") from None
    except RecursionError:
        raise _Problem("is not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise _Problem(f"is not valid JSON ({str(e).splitlines()[0][:80]})") from None


def _parse_header(raw: bytes, file_size: int) -> tuple[dict, int]:
    """``raw`` starts at byte 0 of the file (at least 8 bytes). Returns (header JSON, N)."""
    # bytes 0-7 are a length; a pickle/zip checkpoint is named only when byte 8 cannot open a JSON header
    if (raw[:2] in _PICKLE_MAGICS or raw[:4] in _PICKLE_MAGICS) and raw[8:9] != b"{":
        raise _Problem("this is a PyTorch pickle/zip checkpoint, not safetensors (haba never unpickles)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES:
        raise _Problem(f"header claims {n} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > file_size:
        raise _Problem(
            f"header length {n} runs past the end of the file ({file_size} bytes): truncated or not safetensors"
        )
    if n < 2:
        raise _Problem(f"header length {n} is too small for a safetensors header")
    text = raw[8 : 8 + n]
    if text[:1] != b"{":
        raise _Problem("header does not start with '{': not a safetensors file")
    try:
        header = strict_json(text.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _Problem(f"header is not valid UTF-8 JSON ({e})") from None
    except _Problem as e:
        raise _Problem(f"header {e}") from None
    if not isinstance(header, dict):
        raise _Problem("header is not a JSON object")
    return header, n


def _check_layout(header: dict, n: int, file_size: int) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        raise _Problem(f"{len(entries)} tensors, over the limit of {MAX_TENSORS}")
    out = {}
    for name, e in entries.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            raise _Problem(f"tensor {name!r}: header entry needs dtype, shape and data_offsets")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if not isinstance(dtype, str) or dtype not in ITEMSIZE:
            raise _Problem(f"tensor {name!r}: unknown dtype {dtype!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_RANK
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise _Problem(f"tensor {name!r}: invalid shape {shape!r}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)
        ):
            raise _Problem(f"tensor {name!r}: invalid data_offsets {offs!r}")
        if offs[1] - offs[0] != math.prod(shape) * ITEMSIZE[dtype]:
            raise _Problem(f"tensor {name!r}: offsets {offs} do not match {dtype} {shape}")
        out[name] = (dtype, tuple(shape), offs[0], offs[1])
    pos = 0
    for name, (_, _, begin, end) in sorted(out.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != pos:
            raise _Problem(f"tensor {name!r}: data is not contiguous (starts at {begin}, expected {pos})")
        pos = end
    if 8 + n + pos != file_size:
        raise _Problem(
            f"the tensors declare {pos} payload bytes but the file holds {file_size - 8 - n}: truncated or padded"
        )
    return out


def _parse_metadata(header: dict) -> tuple[dict[str, str], dict]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Problem("no haba metadata (a plain safetensors file, not a haba artifact)")
    if meta.get("format") != FORMAT:
        raise _Problem(f"metadata format is {meta.get('format')!r}, not 'haba': not a haba artifact")
    version = meta.get("format_version", "")
    if not _VERSION.fullmatch(version):
        raise _Problem(f"invalid format_version {version!r}")
    major = version.partition(".")[0]
    if int(major) != 1:
        raise _Problem(f"unsupported format version {version} (this haba reads 1.x); upgrade haba")
    try:
        doc = strict_json(meta.get("haba", ""))
    except _Problem as e:
        raise _Problem(f"the 'haba' metadata {e}") from None
    if not isinstance(doc, dict):
        raise _Problem("the 'haba' metadata is not a JSON object")
    return meta, doc


def _read(path: str | os.PathLike, whole: bool) -> tuple[bytes, int]:
    p = Path(path)
    if not p.exists():
        raise ArtifactNotFoundError(p, "no such file")
    if not p.is_file():
        raise ArtifactNotFoundError(p, "not a file (a directory?)")
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ArtifactError(p, f"file of {size} bytes is too short to be a safetensors file")
            if whole:
                return f.read(), size
            raw = f.read(8)
            (n,) = struct.unpack("<Q", raw)
            if n <= MAX_HEADER_BYTES and 8 + n <= size:
                raw += f.read(n)
            return raw, size
    except PermissionError:
        raise ArtifactError(p, "permission denied") from None
    except IsADirectoryError:
        raise ArtifactNotFoundError(p, "not a file (a directory?)") from None
    except OSError as e:
        raise ArtifactError(p, f"cannot read ({e.strerror or e})") from None


def _header_from(raw: bytes, size: int) -> Header:
    header, n = _parse_header(raw, size)
    layout = _check_layout(header, n, size)
    meta, doc = _parse_metadata(header)
    _validate_doc(doc)
    _validate_shapes(doc, {k: (v[0], v[1]) for k, v in layout.items()})
    return Header(meta, doc, layout, 8 + n, size)


def parse_header(raw: bytes, file_size: int, *, name: str | os.PathLike | None = None) -> Header:
    """Validate a header from its bytes (``raw``: the file's first ``8 + N`` bytes or more, e.g. fetched by
    an HTTP range request; ``file_size``: the whole file's size). Raises :class:`ArtifactError` for ``name``."""
    if len(raw) < 8:
        raise ArtifactError(name, f"{len(raw)} bytes are too short to be a safetensors header")
    try:
        return _header_from(raw, file_size)
    except _Problem as e:
        raise ArtifactError(name, str(e)) from None


def read_header(path: str | os.PathLike) -> Header:
    """Read and validate the header only (never the payload); raises :class:`ArtifactError`."""
    raw, size = _read(path, whole=False)
    return parse_header(raw, size, name=path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata document of an artifact, from its header alone."""
    return read_header(path).doc


# ----------------------------------------------------------------------------- document rules
def _need(d: dict, key: str, kinds: type | tuple, where: str) -> Any:
    at = f"{where}.{key}" if where else key
    if key not in d:
        raise _Problem(f"metadata: missing required key {at!r}")
    v = d[key]
    bad_bool = isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
    if not isinstance(v, kinds) or bad_bool:
        raise _Problem(f"metadata {at}: wrong type {type(v).__name__}")
    return v


def _valid_created(text: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS[.fff]Z`` naming a real instant (month 13, Feb 30, hour 24 refused; a leap second
    ``:60`` is allowed as RFC 3339 allows it)."""
    if not _CREATED.fullmatch(text):
        return False
    try:
        stamp = text[:17] + ("59" if text[17:19] == "60" else text[17:19])
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def _pos(d: dict, key: str, where: str, minimum: int = 1) -> int:
    v = _need(d, key, int, where)
    if v < minimum:
        raise _Problem(f"metadata {where}.{key} must be >= {minimum}, got {v}")
    return v


def _validate_doc(doc: dict) -> None:
    ds = _need(doc, "dataset", dict, "")
    _need(ds, "name", str, "dataset")
    c = _pos(ds, "channels", "dataset")
    _pos(ds, "height", "dataset")
    _pos(ds, "width", "dataset")
    nc = _pos(ds, "num_classes", "dataset")
    names = _need(ds, "class_names", list, "dataset")
    if len(names) != nc or not all(isinstance(s, str) for s in names):
        raise _Problem(f"metadata dataset.class_names: expected {nc} strings")
    norm = _need(doc, "normalization", dict, "")
    for key in ("mean", "std"):
        vals = _need(norm, key, list, "normalization")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals)
        if len(vals) != c or not numbers:
            raise _Problem(f"metadata normalization.{key}: expected {c} finite numbers")
    if any(v <= 0 for v in norm["std"]):
        raise _Problem("metadata normalization.std must be > 0")
    z = _need(doc, "zca", (dict, type(None)), "")
    if z is not None:
        eps = _need(z, "eps", (int, float), "zca")
        if not (math.isfinite(eps) and eps > 0):
            raise _Problem("metadata zca.eps must be > 0")
        _pos(z, "dim", "zca")
        _pos(z, "rank", "zca", minimum=0)
        for key in ("tail_scale", "tolerance", "error_bound"):
            if not math.isfinite(_need(z, key, (int, float), "zca")):
                raise _Problem(f"metadata zca.{key} must be finite")
    b = _need(doc, "bases", dict, "")
    _pos(b, "count", "bases", minimum=0)
    _pos(b, "channels", "bases")
    for key in ("height", "width"):  # format 1.1: low-resolution bases
        if key in b and _pos(b, key, "bases") > ds[key]:
            raise _Problem(f"metadata bases.{key} {b[key]} is larger than the images' {ds[key]}")
    h = _need(doc, "hallucinators", dict, "")
    if _pos(h, "count", "hallucinators", minimum=0) > 0:
        if _need(h, "architecture", str, "hallucinators") not in ARCHITECTURES.values():
            raise _Problem(f"unknown hallucinator architecture {h['architecture']!r}")
        for key in ("kernel_size", "in_channels", "mid_channels", "out_channels"):
            _pos(h, key, "hallucinators")
        if hallucinator_padding(h) == "same" and h["kernel_size"] % 2 == 0:  # format 1.3
            raise _Problem(f"{h['architecture']} needs an odd kernel_size, got {h['kernel_size']}")
        if h.get("modulation", "pixel") not in MODULATIONS:
            raise _Problem(f"unknown hallucinator modulation {h['modulation']!r} (known: {', '.join(MODULATIONS)})")
    _need(doc, "soft_labels", bool, "")
    _pos(doc, "ipc", "")
    _pos(doc, "num_images", "", minimum=0)
    obj = _need(doc, "objective", dict, "")
    _need(obj, "name", str, "objective")
    _need(obj, "config", dict, "objective")
    lr = _need(doc, "learned_lr", (int, float, type(None)), "")
    if lr is not None and not math.isfinite(lr):
        raise _Problem("metadata learned_lr must be finite")
    _need(doc, "seed", int, "")
    st = _need(doc, "storage", dict, "")
    for key in ("bases", "hallucinators", "soft_labels", "total", "baseline", "zca"):
        _pos(st, key, "storage", minimum=0)
    _need(st, "ratio", (int, float), "storage")
    lib = _need(doc, "library", dict, "")
    _need(lib, "name", str, "library")
    _need(lib, "version", str, "library")
    if not _valid_created(_need(doc, "created", str, "")):
        raise _Problem(f"metadata created {doc['created']!r} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    sha = _need(doc, "payload_sha256", str, "")
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise _Problem("metadata payload_sha256 is not 64 lower-case hex digits")
    if "extra" in doc:
        _need(doc, "extra", dict, "")
    _validate_infer_doc(doc)


def uses_infer(doc: dict) -> bool:
    """Whether ``doc`` uses a format 1.2 feature (compensators, instance soft labels, an evaluation recipe)."""
    return any(doc.get(key) is not None for key in INFER_KEYS)


def _finite(d: dict, key: str, where: str, *, positive: bool = False) -> float:
    v = _need(d, key, (int, float), where)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise _Problem(f"metadata {where}.{key} must be a finite number {'> 0' if positive else '>= 0'}, got {v}")
    return float(v)


def _validate_infer_doc(doc: dict) -> None:
    """Format 1.2 keys (spec section 12): compensators, instance_soft_labels, evaluation_recipe, num_instances."""
    comp = _need(doc, "compensators", (dict, type(None)), "") if "compensators" in doc else None
    if comp is not None:
        if _need(comp, "method", str, "compensators") != "infer-ufc":
            raise _Problem(f"unknown compensator method {comp['method']!r} (known: infer-ufc)")
        if _need(comp, "combine", str, "compensators") != "add-clip":
            raise _Problem(f"unknown compensator combine rule {comp['combine']!r} (known: add-clip)")
        _pos(comp, "subsets", "compensators")
        m = _pos(comp, "per_subset", "compensators")
        if "teachers" in comp:
            teachers = _need(comp, "teachers", list, "compensators")
            if len(teachers) != m or not all(isinstance(t, str) for t in teachers):
                raise _Problem(f"metadata compensators.teachers: expected {m} strings")
        if "config" in comp:
            _need(comp, "config", dict, "compensators")
    isl = _need(doc, "instance_soft_labels", (dict, type(None)), "") if "instance_soft_labels" in doc else None
    if isl is not None:
        _pos(isl, "count", "instance_soft_labels", minimum=0)
        _finite(isl, "temperature", "instance_soft_labels", positive=True)
        if _need(isl, "kind", str, "instance_soft_labels") != "logits":
            raise _Problem(f"unknown instance_soft_labels kind {isl['kind']!r} (known: logits)")
        if doc["soft_labels"]:
            raise _Problem("instance_soft_labels together with the 1.0 soft_labels flag: a file has one or the other")
    rec = _need(doc, "evaluation_recipe", (dict, type(None)), "") if "evaluation_recipe" in doc else None
    if rec is not None:
        for key, kinds in RECIPE_KEYS.items():
            _need(rec, key, kinds, "evaluation_recipe")
        for key in ("temperature", "lr"):
            _finite(rec, key, "evaluation_recipe", positive=True)
        for key in ("mixup_alpha", "weight_decay"):
            _finite(rec, key, "evaluation_recipe")
        for key in ("epochs", "batch_size"):
            _pos(rec, key, "evaluation_recipe")
        if not all(isinstance(a, str) for a in rec["augmentations"]):
            raise _Problem("metadata evaluation_recipe.augmentations: expected a list of strings")
    if uses_infer(doc) or "num_instances" in doc:
        _pos(doc, "num_instances", "", minimum=0)
        st = doc["storage"]
        for key in ("compensators", "instance_soft_labels", "full_total"):
            _pos(st, key, "storage", minimum=0)
        _need(st, "full_ratio", (int, float), "storage")


def num_instances_of(doc: dict) -> int:
    """``num_images + K*M*C`` (format 1.2; ``num_images`` without compensators)."""
    comp = doc.get("compensators")
    extra = 0 if comp is None else comp["subsets"] * comp["per_subset"] * doc["dataset"]["num_classes"]
    return int(doc["num_images"]) + extra


def expected_shapes(doc: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) that the metadata document requires (spec section 3)."""
    ds, b, h = doc["dataset"], doc["bases"], doc["hallucinators"]
    c, hh, ww, n, cb = ds["channels"], ds["height"], ds["width"], b["count"], b["channels"]
    out = {"bases": ("F32", (n, cb, b.get("height", hh), b.get("width", ww))), "labels": ("I64", (n,))}
    if doc["soft_labels"]:
        out["soft_labels"] = ("F32", (n, ds["num_classes"]))
    k = h["count"]
    if k > 0:
        shapes = hallucinator_shapes(
            k,
            cb,
            c,
            hh,
            ww,
            h["kernel_size"],
            mid_channels=h["mid_channels"],
            modulation=h.get("modulation", "pixel"),
            padding=hallucinator_padding(h),
        )
        out.update({HAL_PREFIX + key: ("F32", s) for key, s in shapes.items()})
    if doc["zca"] is not None:
        d, r = doc["zca"]["dim"], doc["zca"]["rank"]
        out.update({"zca.mean": ("F32", (d,)), "zca.basis": ("F32", (d, r)), "zca.eigenvalues": ("F32", (r,))})
    comp = doc.get("compensators")
    if comp is not None:  # format 1.2
        out[COMP_PREFIX + "values"] = ("F32", (comp["subsets"], comp["per_subset"], c, hh, ww))
        out[COMP_PREFIX + "subset"] = ("I64", (n,))
    if doc.get("instance_soft_labels") is not None:
        out[INSTANCE_SOFT] = ("F32", (num_instances_of(doc), ds["num_classes"]))
    return out


def hallucinator_padding(hallucinators: dict) -> str:
    """The padding ("valid" or "same") of a metadata ``hallucinators`` object's architecture (spec section 4)."""
    by_name = {name: padding for padding, name in ARCHITECTURES.items()}
    return by_name.get(hallucinators.get("architecture", ARCHITECTURES["valid"]), "valid")


def format_version_of(doc: dict) -> str:
    """The format version a writer records for ``doc``: 1.3 when it uses a 1.3 feature (same-padded
    hallucinators, spec section 14), else 1.2 when it uses a 1.2 feature (compensators, instance soft labels,
    an evaluation recipe; section 12), else 1.1 when it uses a 1.1 feature (low-resolution bases, per-channel
    modulation; section 11), else 1.0 (so such files stay 1.0-readable)."""
    if doc["hallucinators"].get("count", 0) and hallucinator_padding(doc["hallucinators"]) == "same":
        return "1.3"
    if uses_infer(doc):
        return "1.2"
    ds, b, h = doc["dataset"], doc["bases"], doc["hallucinators"]
    lowres = b.get("height", ds["height"]) != ds["height"] or b.get("width", ds["width"]) != ds["width"]
    return "1.1" if lowres or h.get("modulation", "pixel") != "pixel" else "1.0"


def storage_of(doc: dict) -> dict[str, int | float]:
    """Stored values by part and the baseline's ``num_classes * ipc * c * h * w`` (spec section 6); for a 1.2
    document also ``compensators``, ``instance_soft_labels``, ``full_total`` and ``full_ratio`` (section 12.6)."""
    shapes = expected_shapes(doc)
    count = {
        part: sum(math.prod(s) for name, (_, s) in shapes.items() if name.startswith(prefix))
        for part, prefix in (
            ("bases", "bases"),
            ("hallucinators", HAL_PREFIX),
            ("soft_labels", "soft_labels"),
            ("zca", ZCA_PREFIX),
        )
    }
    ds = doc["dataset"]
    total = count["bases"] + count["hallucinators"] + count["soft_labels"]
    baseline = ds["num_classes"] * doc["ipc"] * ds["channels"] * ds["height"] * ds["width"]
    out: dict[str, int | float] = {**count, "total": total, "baseline": baseline, "ratio": total / baseline}
    if uses_infer(doc) or "num_instances" in doc:
        comp = math.prod(shapes[COMP_PREFIX + "values"][1]) if COMP_PREFIX + "values" in shapes else 0
        soft = math.prod(shapes[INSTANCE_SOFT][1]) if INSTANCE_SOFT in shapes else 0
        full = total + comp + soft
        out.update(compensators=comp, instance_soft_labels=soft, full_total=full, full_ratio=full / baseline)
    return out


def _validate_shapes(doc: dict, have: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    ds, b, h = doc["dataset"], doc["bases"], doc["hallucinators"]
    k, c = h["count"], ds["channels"]
    if k > 0 and (h["in_channels"] != b["channels"] or h["mid_channels"] != c or h["out_channels"] != c):
        raise _Problem(
            f"hallucinator channels {h['in_channels']}->{h['mid_channels']}->{h['out_channels']} "
            f"contradict bases with {b['channels']} and a dataset with {c} channels"
        )
    if k > 0 and h["kernel_size"] > min(ds["height"], ds["width"]):
        raise _Problem("hallucinator kernel larger than the images")
    if k > 0 and b["channels"] not in (1, c):
        raise _Problem(f"bases have {b['channels']} channels; hallucinators need 1 or the dataset's {c}")
    if k == 0 and b["channels"] != c:
        raise _Problem(f"without hallucinators the bases must have the dataset's {c} channels, not {b['channels']}")
    z = doc["zca"]
    if z is not None and (z["dim"] != c * ds["height"] * ds["width"] or z["rank"] > z["dim"]):
        raise _Problem(f"zca dim {z['dim']} / rank {z['rank']} do not fit {c}x{ds['height']}x{ds['width']} images")
    if doc["num_images"] != b["count"] * max(k, 1):
        raise _Problem(f"num_images {doc['num_images']} != bases x max(hallucinators, 1)")
    _validate_infer_shapes(doc)
    for name, (dtype, shape) in expected_shapes(doc).items():
        if name not in have:
            raise _Problem(f"missing required tensor {name!r}")
        if have[name][0] != dtype:
            raise _Problem(f"tensor {name!r} has dtype {have[name][0]}, expected {dtype}")
        if have[name][1] != shape:
            raise _Problem(f"tensor {name!r} has shape {list(have[name][1])}, expected {list(shape)}")
    for name in have:
        if name == "soft_labels" and not doc["soft_labels"]:
            raise _Problem("tensor 'soft_labels' is present but the metadata says soft_labels is false")
        if (name.startswith((HAL_PREFIX, ZCA_PREFIX, COMP_PREFIX)) or name == INSTANCE_SOFT) and name not in (
            expected_shapes(doc)
        ):
            raise _Problem(f"tensor {name!r} is not allowed by the metadata")
    st, want = doc["storage"], storage_of(doc)
    for key, value in want.items():
        same = math.isclose(st[key], value, rel_tol=1e-9) if key == "ratio" else st[key] == value
        if not same:
            raise _Problem(f"storage.{key} is {st[key]} but the tensors give {value}")


def _validate_infer_shapes(doc: dict) -> None:
    """Format 1.2 cross-field rules (spec section 12.7) that need no tensor."""
    ds, b, comp = doc["dataset"], doc["bases"], doc.get("compensators")
    if comp is not None:
        if doc["hallucinators"]["count"] != 0 or doc["zca"] is not None:
            raise _Problem("compensators cannot be combined with hallucinators or ZCA")
        if (
            b["channels"] != ds["channels"]
            or b.get("height", ds["height"]) != ds["height"]
            or (b.get("width", ds["width"]) != ds["width"])
        ):
            raise _Problem("compensators need full-resolution bases with the dataset's channels")
        if b["count"] < comp["subsets"] * ds["num_classes"]:
            raise _Problem(
                f"{comp['subsets']} subsets of {ds['num_classes']} classes need {comp['subsets'] * ds['num_classes']} "
                f"bases, the file has {b['count']}"
            )
    if "num_instances" in doc and doc["num_instances"] != num_instances_of(doc):
        raise _Problem(f"num_instances {doc['num_instances']} != num_images + subsets x per_subset x classes")
    isl = doc.get("instance_soft_labels")
    if isl is not None and isl["count"] != num_instances_of(doc):
        raise _Problem(f"instance_soft_labels.count {isl['count']} != num_instances {num_instances_of(doc)}")


def local_path(ref: str | os.PathLike) -> Path:
    """``ref`` as an existing local path, or :class:`ArtifactNotFoundError` (Hub references are resolved above,
    in :func:`habacli.hub.transfer.resolve_artifact`)."""
    path = Path(ref)
    if not path.exists():
        raise ArtifactNotFoundError(path, "no such file")
    return path
