"""The haba artifact: one safetensors file holding a (factorised) distilled dataset.

Normative spec: ``formats/haba-artifact-v1.md``. Header reading and validation here are pure Python
(json + struct), so ``haba info`` never imports torch; torch is imported inside the functions that
build, decode, save or load tensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.errors import ArtifactError, ArtifactNotFoundError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

    from habacli.zca import ZCA, CompactZCA

FORMAT = "haba"
FORMAT_VERSION = "1.0"
MAX_HEADER_BYTES = 100_000_000
MAX_TENSORS = 1024
MAX_RANK = 8
HAL_PREFIX, ZCA_PREFIX = "hallucinators.", "zca."
HAL_KEYS = ("enc_weight", "enc_bias", "scale", "shift", "dec_weight", "dec_bias")
ITEMSIZE = {"F32": 4, "I64": 8, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
            "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
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
def _parse_header(raw: bytes, file_size: int) -> tuple[dict, int]:
    """``raw`` starts at byte 0 of the file (at least 8 bytes). Returns (header JSON, N)."""
    if raw[:2] in _PICKLE_MAGICS or raw[:4] in _PICKLE_MAGICS:
        raise _Problem("this is a PyTorch pickle/zip checkpoint, not safetensors (haba never unpickles)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES:
        raise _Problem(f"header claims {n} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > file_size:
        raise _Problem(f"header length {n} runs past the end of the file ({file_size} bytes): truncated or not safetensors")
    if n < 2:
        raise _Problem(f"header length {n} is too small for a safetensors header")
    text = raw[8:8 + n]
    if text[:1] != b"{":
        raise _Problem("header does not start with '{': not a safetensors file")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Problem(f"header is not valid UTF-8 JSON ({e})") from None
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
        if dtype not in ITEMSIZE:
            raise _Problem(f"tensor {name!r}: unknown dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise _Problem(f"tensor {name!r}: invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)):
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
        raise _Problem(f"the tensors declare {pos} payload bytes but the file holds {file_size - 8 - n}: truncated or padded")
    return out


def _parse_metadata(header: dict) -> tuple[dict[str, str], dict]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Problem("no haba metadata (a plain safetensors file, not a haba artifact)")
    if meta.get("format") != FORMAT:
        raise _Problem(f"metadata format is {meta.get('format')!r}, not 'haba': not a haba artifact")
    version = meta.get("format_version", "")
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise _Problem(f"invalid format_version {version!r}")
    if int(major) != 1:
        raise _Problem(f"unsupported format version {version} (this haba reads 1.x); upgrade haba")
    try:
        doc = json.loads(meta.get("haba", ""))
    except json.JSONDecodeError as e:
        raise _Problem(f"the 'haba' metadata is not valid JSON ({e})") from None
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
        if len(vals) != c or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
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
    h = _need(doc, "hallucinators", dict, "")
    if _pos(h, "count", "hallucinators", minimum=0) > 0:
        if _need(h, "architecture", str, "hallucinators") != "haba-style-translator":
            raise _Problem(f"unknown hallucinator architecture {h['architecture']!r}")
        for key in ("kernel_size", "in_channels", "mid_channels", "out_channels"):
            _pos(h, key, "hallucinators")
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
    _need(doc, "created", str, "")
    sha = _need(doc, "payload_sha256", str, "")
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise _Problem("metadata payload_sha256 is not 64 lower-case hex digits")
    if "extra" in doc:
        _need(doc, "extra", dict, "")


def expected_shapes(doc: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) that the metadata document requires (spec section 3)."""
    ds, b, h = doc["dataset"], doc["bases"], doc["hallucinators"]
    c, hh, ww, n, cb = ds["channels"], ds["height"], ds["width"], b["count"], b["channels"]
    out = {"bases": ("F32", (n, cb, hh, ww)), "labels": ("I64", (n,))}
    if doc["soft_labels"]:
        out["soft_labels"] = ("F32", (n, ds["num_classes"]))
    k = h["count"]
    if k > 0:
        ks, cm = h["kernel_size"], h["mid_channels"]
        shapes = {"enc_weight": (k, cm, cb, ks, ks), "enc_bias": (k, cm), "scale": (k, cm, hh - ks + 1, ww - ks + 1),
                  "shift": (k, cm, hh - ks + 1, ww - ks + 1), "dec_weight": (k, cm, c, ks, ks), "dec_bias": (k, c)}
        out.update({HAL_PREFIX + key: ("F32", s) for key, s in shapes.items()})
    if doc["zca"] is not None:
        d, r = doc["zca"]["dim"], doc["zca"]["rank"]
        out.update({"zca.mean": ("F32", (d,)), "zca.basis": ("F32", (d, r)), "zca.eigenvalues": ("F32", (r,))})
    return out


def storage_of(doc: dict) -> dict[str, int | float]:
    """Stored values by part and the baseline's ``num_classes * ipc * c * h * w`` (spec section 6)."""
    shapes = expected_shapes(doc)
    count = {part: sum(math.prod(s) for name, (_, s) in shapes.items() if name.startswith(prefix))
             for part, prefix in (("bases", "bases"), ("hallucinators", HAL_PREFIX), ("soft_labels", "soft_labels"),
                                  ("zca", ZCA_PREFIX))}
    ds = doc["dataset"]
    total = count["bases"] + count["hallucinators"] + count["soft_labels"]
    baseline = ds["num_classes"] * doc["ipc"] * ds["channels"] * ds["height"] * ds["width"]
    return {**count, "total": total, "baseline": baseline, "ratio": total / baseline}


def _validate_shapes(doc: dict, have: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    ds, b, h = doc["dataset"], doc["bases"], doc["hallucinators"]
    k, c = h["count"], ds["channels"]
    if k > 0 and (h["in_channels"] != b["channels"] or h["mid_channels"] != c or h["out_channels"] != c):
        raise _Problem(f"hallucinator channels {h['in_channels']}->{h['mid_channels']}->{h['out_channels']} "
                       f"contradict bases with {b['channels']} and a dataset with {c} channels")
    if k > 0 and h["kernel_size"] > min(ds["height"], ds["width"]):
        raise _Problem("hallucinator kernel larger than the images")
    if k == 0 and b["channels"] != c:
        raise _Problem(f"without hallucinators the bases must have the dataset's {c} channels, not {b['channels']}")
    z = doc["zca"]
    if z is not None and (z["dim"] != c * ds["height"] * ds["width"] or z["rank"] > z["dim"]):
        raise _Problem(f"zca dim {z['dim']} / rank {z['rank']} do not fit {c}x{ds['height']}x{ds['width']} images")
    if doc["num_images"] != b["count"] * max(k, 1):
        raise _Problem(f"num_images {doc['num_images']} != bases x max(hallucinators, 1)")
    for name, (dtype, shape) in expected_shapes(doc).items():
        if name not in have:
            raise _Problem(f"missing required tensor {name!r}")
        if have[name][0] != dtype:
            raise _Problem(f"tensor {name!r} has dtype {have[name][0]}, expected {dtype}")
        if have[name][1] != shape:
            raise _Problem(f"tensor {name!r} has shape {list(have[name][1])}, expected {list(shape)}")
    for name in have:
        if name.startswith((HAL_PREFIX, ZCA_PREFIX)) and name not in expected_shapes(doc):
            raise _Problem(f"tensor {name!r} is not allowed by the metadata")
    st, want = doc["storage"], storage_of(doc)
    for key, value in want.items():
        same = math.isclose(st[key], value, rel_tol=1e-9) if key == "ratio" else st[key] == value
        if not same:
            raise _Problem(f"storage.{key} is {st[key]} but the tensors give {value}")


def _validate_values(tensors: dict[str, Tensor], doc: dict) -> None:
    import torch

    labels = tensors["labels"]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= doc["dataset"]["num_classes"]):
        raise _Problem(f"labels out of range [0, {doc['dataset']['num_classes']})")
    known = expected_shapes(doc)
    for name, t in tensors.items():
        if t.is_floating_point() and name in known and not bool(torch.isfinite(t).all()):
            raise _Problem(f"tensor {name!r} contains NaN or Inf")

# ----------------------------------------------------------------------------- the artifact
_DTYPE_NAMES = {"float32": "F32", "int64": "I64", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
                "int32": "I32", "uint8": "U8", "bool": "BOOL"}


def _dtype_name(t: Tensor) -> str:
    return _DTYPE_NAMES.get(str(t.dtype).removeprefix("torch."), str(t.dtype))


def _hal_params(state: Any) -> dict[str, Tensor]:
    """Accept a HallucinatorBank, its ``params()``/``state_dict()`` (optionally prefixed) or None."""
    if state is None:
        return {}
    if hasattr(state, "params") and callable(state.params):
        state = state.params()
    if not isinstance(state, dict):
        raise ConfigError(f"hallucinator state must be a HallucinatorBank or a dict, got {type(state).__name__}")
    params = {k.removeprefix(HAL_PREFIX): v for k, v in state.items() if k.removeprefix(HAL_PREFIX) in HAL_KEYS}
    if not params or params.get("enc_weight") is None or params["enc_weight"].shape[0] == 0:
        return {}
    if set(params) != set(HAL_KEYS):
        raise ConfigError(f"hallucinator state needs {', '.join(HAL_KEYS)}; got {', '.join(sorted(params))}")
    return {k: params[k].detach().float().cpu().contiguous() for k in HAL_KEYS}


def _floats(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in (v.reshape(-1).tolist() if hasattr(v, "reshape") else v))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the exact text of the ``haba`` metadata value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass
class HabaArtifact:
    """A distilled dataset: bases and labels, K hallucinators (K = 0: a plain set), and everything needed
    to decode them to pixels (normalisation, compact inverse ZCA) and to reproduce them."""

    bases: Tensor
    labels: Tensor
    soft_labels: Tensor | None
    hallucinators: dict[str, Tensor]  # HAL_KEYS -> stacked [K, ...] tensors; {} when K = 0
    spec: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    zca: CompactZCA | None
    objective: str
    objective_config: dict[str, Any]
    ipc: int
    learned_lr: float | None
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    library_version: str = ""
    payload_sha256: str = ""

    @classmethod
    def build(cls, bases: Tensor, labels: Tensor, hallucinators: Any, spec: Any, mean: Any, std: Any,
              zca: ZCA | CompactZCA | None = None, *, objective: str, objective_config: dict, ipc: int, seed: int,
              learned_lr: float | None = None, soft_labels: Tensor | None = None, extra: dict | None = None,
              zca_tolerance: float | None = None, created: str | None = None,
              library_version: str | None = None) -> HabaArtifact:
        """Assemble and validate an artifact (CPU copies). ``hallucinators``: a HallucinatorBank, its
        ``params()``/``state_dict()`` or None/{} (K = 0). A full :class:`~habacli.zca.ZCA` is compacted here
        against this artifact's own decoded images (``zca_tolerance``, default 0.5/255)."""
        import torch

        from habacli import __version__
        from habacli.zca import DEFAULT_TOLERANCE, ZCA

        spec_d = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        soft = None if soft_labels is None else soft_labels.detach().float().cpu().contiguous()
        art = cls(bases.detach().float().cpu().contiguous(), labels.detach().to("cpu", torch.int64).contiguous(), soft,
                  _hal_params(hallucinators), spec_d, _floats(mean), _floats(std),
                  None, str(objective), dict(objective_config), int(ipc), None if learned_lr is None else float(learned_lr),
                  int(seed), dict(extra or {}), created or _now(), library_version or __version__)
        if isinstance(zca, ZCA):
            images, _ = art.decode(pixel=False)
            hw = int(spec_d["height"]) * int(spec_d["width"])
            scale = torch.tensor(art.std, dtype=torch.float64).repeat_interleave(hw)
            zca = zca.compact(images, zca_tolerance or DEFAULT_TOLERANCE, pixel_scale=scale)
        art.zca = zca
        art.check()
        return art

    # --- derived facts
    @property
    def num_hallucinators(self) -> int:
        """K (0 for a plain, non-factorised set)."""
        return int(self.hallucinators["enc_weight"].shape[0]) if self.hallucinators else 0

    @property
    def num_images(self) -> int:
        """Images the artifact decodes to: bases x max(K, 1)."""
        return int(self.bases.shape[0]) * max(self.num_hallucinators, 1)

    @property
    def storage(self) -> dict[str, int | float]:
        """Stored values by part, their total and the baseline budget (spec section 6)."""
        return storage_of(self.to_document())

    @property
    def evaluation(self) -> dict | None:
        """``extra["evaluation"]`` when an evaluation was saved into the artifact."""
        return self.extra.get("evaluation")

    def tensors(self) -> dict[str, Tensor]:
        """The file's tensors by name (CPU, contiguous)."""
        out = {"bases": self.bases, "labels": self.labels}
        if self.soft_labels is not None:
            out["soft_labels"] = self.soft_labels
        out.update({HAL_PREFIX + k: v for k, v in self.hallucinators.items()})
        if self.zca is not None:
            out.update({ZCA_PREFIX + k: v for k, v in self.zca.to_tensors().items()})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def to_document(self, payload_sha256: str | None = None) -> dict[str, Any]:
        """The ``haba`` metadata document (formats/haba-artifact-v1.schema.json)."""
        k, n = self.num_hallucinators, int(self.bases.shape[0])
        hal: dict[str, Any] = {"count": k}
        if k:
            w = self.hallucinators["enc_weight"]
            hal.update(architecture="haba-style-translator", kernel_size=int(w.shape[-1]), in_channels=int(w.shape[2]),
                       mid_channels=int(w.shape[1]), out_channels=int(self.hallucinators["dec_weight"].shape[2]))
        doc = {
            "dataset": self.spec, "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "zca": None if self.zca is None else self.zca.to_metadata(),
            "bases": {"count": n, "channels": int(self.bases.shape[1]) if self.bases.dim() > 1 else 0},
            "hallucinators": hal, "soft_labels": self.soft_labels is not None, "ipc": self.ipc,
            "num_images": self.num_images, "objective": {"name": self.objective, "config": self.objective_config},
            "learned_lr": self.learned_lr, "seed": self.seed, "library": {"name": "haba", "version": self.library_version},
            "created": self.created, "payload_sha256": payload_sha256 or self.payload_sha256 or "0" * 64,
            "extra": self.extra,
        }
        try:
            doc["storage"] = storage_of(doc)
        except (KeyError, TypeError, ZeroDivisionError):
            doc["storage"] = {}  # the validation then names the real problem
        return doc

    def check(self) -> None:
        """Validate against the spec; raises :class:`ConfigError` naming the problem."""
        doc = self.to_document()
        try:
            canonical_json(doc)
            _validate_doc(doc)
            tensors = self.tensors()
            _validate_shapes(doc, {k: (_dtype_name(v), tuple(v.shape)) for k, v in tensors.items()})
            _validate_values(tensors, doc)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid artifact: metadata is not JSON-serialisable ({e})") from None
        except _Problem as e:
            raise ConfigError(f"invalid artifact: {e}") from None

    # --- decoding
    def to_pixel(self, x: Tensor) -> Tensor:
        """Model space -> pixel space: inverse ZCA, de-normalise, clamp to [0, 1]."""
        import torch

        if self.zca is not None:
            x = self.zca.invert(x)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp_(0.0, 1.0)

    def decode(self, *, device: Any = "cpu", pixel: bool = True, indices: Tensor | None = None,
               batch_size: int = 8192) -> tuple[Tensor, Tensor]:
        """Images and hard labels. All ``num_images`` in basis-major order (image ``i*K + k`` is basis ``i``
        under hallucinator ``k``), or only ``indices`` of that order. ``pixel=False``: model space."""
        import torch

        from habacli.hallucinator import apply_pairs, decode_all

        kk = self.num_hallucinators
        params = {k: v.to(device) for k, v in self.hallucinators.items()}
        bases, labels = self.bases.to(device), self.labels.to(device)
        with torch.no_grad():
            if indices is None:
                per = max(1, batch_size // max(kk, 1))
                parts = [decode_all(bases[i:i + per], params) for i in range(0, len(bases), per)]
                x = torch.cat(parts) if parts else bases[:0]
                y = labels.repeat_interleave(max(kk, 1))
            else:
                j = torch.as_tensor(indices, device=device, dtype=torch.long).reshape(-1)
                if j.numel() and (int(j.min()) < 0 or int(j.max()) >= self.num_images):
                    raise ConfigError(f"image indices must be in [0, {self.num_images})")
                i = j // max(kk, 1)
                x = apply_pairs(bases[i], params, j % kk) if kk else bases[i]
                y = labels[i]
            return (self.to_pixel(x) if pixel else x), y

    def sample_model_space(self, generator: torch.Generator, *, device: Any = "cpu") -> tuple[Tensor, Tensor]:
        """Every basis once, each under one uniformly random hallucinator (HaBa's evaluation expansion),
        in model space. ``generator`` is a CPU generator."""
        import torch

        n, kk = int(self.bases.shape[0]), self.num_hallucinators
        k = torch.randint(max(kk, 1), (n,), generator=generator)
        return self.decode(device=device, pixel=False, indices=torch.arange(n) * max(kk, 1) + k)

    def model_space_sampler(self, generator: torch.Generator, *, device: Any = "cpu"):
        """``epoch -> (x, y)``: a fresh :meth:`sample_model_space` per call, for ``train_and_test``."""
        return lambda epoch=None: self.sample_model_space(generator, device=device)


# ----------------------------------------------------------------------------- save / load
def save_artifact(artifact: HabaArtifact, path: str | os.PathLike) -> Path:
    """Validate and write ``artifact`` atomically as one safetensors file; returns the path."""
    from safetensors.torch import save

    from habacli.atomic import atomic_path

    artifact.check()
    body = save(artifact.tensors())  # safetensors lays the payload out deterministically
    (n,) = struct.unpack("<Q", body[:8])
    entries = json.loads(body[8:8 + n])
    entries.pop("__metadata__", None)
    payload = memoryview(body)[8 + n:]
    sha = hashlib.sha256(payload).hexdigest()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "haba": canonical_json(artifact.to_document(sha))}
    text = json.dumps({"__metadata__": meta, **{k: entries[k] for k in sorted(entries)}},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    dest = Path(path)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; an artifact is a shareable file
    artifact.payload_sha256 = sha
    return dest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_artifact(path: str | os.PathLike, *, device: Any = "cpu", verify: bool = True) -> HabaArtifact:
    """Read, validate (header, shapes, checksum when ``verify``, values) and return the artifact."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from habacli.zca import CompactZCA

    raw, size = _read(path, whole=True)
    try:
        hdr = _header_from(raw, size)
        doc = hdr.doc
        if verify and hashlib.sha256(memoryview(raw)[hdr.header_bytes:]).hexdigest() != doc["payload_sha256"]:
            raise _Problem("checksum mismatch: the payload's SHA-256 differs from payload_sha256 (corrupted file)")
        tensors = load(raw)
        _validate_values(tensors, doc)
    except _Problem as e:
        raise ArtifactError(path, str(e)) from None
    except SafetensorError as e:
        raise ArtifactError(path, f"safetensors cannot read it ({e})") from None
    ds, z = doc["dataset"], doc["zca"]
    zca = None
    if z is not None:
        shape = (ds["channels"], ds["height"], ds["width"])
        zca = CompactZCA.from_parts({k: tensors[ZCA_PREFIX + k] for k in ("mean", "basis", "eigenvalues")}, z, shape)
    hal = {k: tensors[HAL_PREFIX + k].to(device) for k in HAL_KEYS} if doc["hallucinators"]["count"] else {}
    soft = tensors["soft_labels"].to(device) if doc["soft_labels"] else None
    norm = doc["normalization"]
    return HabaArtifact(tensors["bases"].to(device), tensors["labels"].to(device), soft, hal, ds,
                        tuple(norm["mean"]), tuple(norm["std"]), zca, doc["objective"]["name"],
                        doc["objective"]["config"], doc["ipc"], doc["learned_lr"], doc["seed"], doc.get("extra", {}),
                        doc["created"], doc["library"]["version"], doc["payload_sha256"])
