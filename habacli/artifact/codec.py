"""The haba artifact: one safetensors file holding a (factorised) distilled dataset.

Normative spec: ``formats/haba-artifact-v1.md``. The header rules live in :mod:`habacli.artifact.header` (pure
Python, so ``haba info`` never imports torch); this module is the in-memory artifact, its decoding and
the tensor I/O. torch is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli import __version__
from habacli._shapes import ARCHITECTURES, PADDINGS, padding_size
from habacli.artifact.header import (  # noqa: F401 - re-exported: the codec's public header API
    COMP_PREFIX,
    FORMAT,
    HAL_KEYS,
    HAL_PREFIX,
    INSTANCE_SOFT,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    ZCA_PREFIX,
    Header,
    _header_from,  # noqa: F401 - used by habacli.hub.transfer for headers fetched over HTTP
    _Problem,
    _read,
    _validate_doc,
    _validate_shapes,
    expected_shapes,
    format_version_of,
    hallucinator_padding,
    num_instances_of,
    parse_header,
    read_header,
    read_metadata,
    storage_of,
)
from habacli.errors import ArtifactError, ConfigError
from habacli.runtime.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

    from habacli.transforms.zca import ZCA, CompactZCA


def _validate_values(tensors: dict[str, Tensor], doc: dict) -> None:
    import torch  # lazy: torch

    labels = tensors["labels"]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= doc["dataset"]["num_classes"]):
        raise _Problem(f"labels out of range [0, {doc['dataset']['num_classes']})")
    known = expected_shapes(doc)
    for name, t in tensors.items():
        if t.is_floating_point() and name in known and not bool(torch.isfinite(t).all()):
            raise _Problem(f"tensor {name!r} contains NaN or Inf")
    subset = tensors.get(COMP_PREFIX + "subset")
    comp = doc.get("compensators")
    if subset is not None and comp is not None:  # format 1.2 pairing (spec section 12.3.1)
        k_sub, nc = comp["subsets"], doc["dataset"]["num_classes"]
        if subset.numel() and (int(subset.min()) < -1 or int(subset.max()) >= k_sub):
            raise _Problem(f"compensators.subset holds a value outside -1 and [0, {k_sub})")
        paired = subset >= 0
        keys = (subset[paired] * nc + labels[paired]).tolist()
        if sorted(keys) != list(range(k_sub * nc)):
            raise _Problem(f"compensators.subset: every subset must hold exactly one basis of each of the {nc} classes")
    eig = tensors.get(ZCA_PREFIX + "eigenvalues")
    if eig is not None and ZCA_PREFIX + "eigenvalues" in known and eig.numel() and float(eig.min()) < 0:
        raise _Problem(f"tensor 'zca.eigenvalues' holds a negative value ({float(eig.min()):g}): a covariance has none")


# ----------------------------------------------------------------------------- the artifact
_DTYPE_NAMES = {
    "float32": "F32",
    "int64": "I64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int32": "I32",
    "uint8": "U8",
    "bool": "BOOL",
}


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
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    # format 1.2 (INFER): compensators [K, M, c, H, W] with each basis's subset [n] (-1: none), instance soft
    # labels [num_instances, C] (logits at ``soft_label_temperature``) and the evaluation recipe
    compensators: Tensor | None = None
    compensator_subset: Tensor | None = None
    compensator_info: dict[str, Any] = field(default_factory=dict)  # teachers, config
    instance_soft_labels: Tensor | None = None
    soft_label_temperature: float | None = None
    soft_label_info: dict[str, Any] = field(default_factory=dict)  # source, teachers
    evaluation_recipe: dict[str, Any] | None = None
    # format 1.3: "same" = the zero-padded hallucinator architecture (spec section 4 step 1); "valid": the paper's
    hallucinator_padding: str = "valid"

    @classmethod
    def build(
        cls,
        bases: Tensor,
        labels: Tensor,
        hallucinators: Any,
        spec: Any,
        mean: Any,
        std: Any,
        zca: ZCA | CompactZCA | None = None,
        *,
        objective: str,
        objective_config: dict,
        ipc: int,
        seed: int,
        learned_lr: float | None = None,
        soft_labels: Tensor | None = None,
        extra: dict | None = None,
        zca_tolerance: float | None = None,
        created: str | None = None,
        library_version: str | None = None,
        compensators: Tensor | None = None,
        compensator_subset: Tensor | None = None,
        compensator_info: dict | None = None,
        instance_soft_labels: Tensor | None = None,
        soft_label_temperature: float | None = None,
        soft_label_info: dict | None = None,
        evaluation_recipe: dict | None = None,
        hallucinator_padding: str | None = None,
    ) -> HabaArtifact:
        """Assemble and validate an artifact (CPU copies). ``hallucinators``: a HallucinatorBank, its
        ``params()``/``state_dict()`` or None/{} (K = 0); ``hallucinator_padding`` defaults to the bank's, else
        "valid". A full :class:`~habacli.transforms.zca.ZCA` is compacted here
        against this artifact's own decoded images (``zca_tolerance``, default 0.5/255)."""
        import torch  # lazy: torch

        from habacli.transforms.zca import DEFAULT_TOLERANCE, ZCA  # lazy: torch

        spec_d = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        padding = hallucinator_padding or getattr(hallucinators, "padding", None) or "valid"
        if padding not in PADDINGS:
            raise ConfigError(f"hallucinator padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        soft = None if soft_labels is None else soft_labels.detach().float().cpu().contiguous()
        lr = None if learned_lr is None else float(learned_lr)
        art = cls(
            bases.detach().float().cpu().contiguous(),
            labels.detach().to("cpu", torch.int64).contiguous(),
            soft,
            _hal_params(hallucinators),
            spec_d,
            _floats(mean),
            _floats(std),
            None,
            str(objective),
            dict(objective_config),
            int(ipc),
            lr,
            int(seed),
            dict(extra or {}),
            created or _now(),
            library_version or __version__,
            compensators=None if compensators is None else compensators.detach().float().cpu().contiguous(),
            compensator_subset=None
            if compensator_subset is None
            else compensator_subset.detach().to("cpu", torch.int64).contiguous(),
            compensator_info=dict(compensator_info or {}),
            instance_soft_labels=None
            if instance_soft_labels is None
            else instance_soft_labels.detach().float().cpu().contiguous(),
            soft_label_temperature=None if soft_label_temperature is None else float(soft_label_temperature),
            soft_label_info=dict(soft_label_info or {}),
            evaluation_recipe=None if evaluation_recipe is None else dict(evaluation_recipe),
            hallucinator_padding=padding,
        )
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
    def num_instances(self) -> int:
        """Instances the artifact decodes to: ``num_images`` plus the K*M*C compensated ones (format 1.2)."""
        if self.compensators is None:
            return self.num_images
        k, m = int(self.compensators.shape[0]), int(self.compensators.shape[1])
        return self.num_images + k * m * int(self.spec["num_classes"])

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
        if self.compensators is not None:
            out[COMP_PREFIX + "values"] = self.compensators
            if self.compensator_subset is not None:
                out[COMP_PREFIX + "subset"] = self.compensator_subset
        if self.instance_soft_labels is not None:
            out[INSTANCE_SOFT] = self.instance_soft_labels
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def to_document(self, payload_sha256: str | None = None) -> dict[str, Any]:
        """The ``haba`` metadata document (formats/haba-artifact-v1.schema.json)."""
        k, n = self.num_hallucinators, int(self.bases.shape[0])
        hal: dict[str, Any] = {"count": k}
        if k:
            w = self.hallucinators["enc_weight"]
            hal.update(
                architecture=ARCHITECTURES[self.hallucinator_padding],
                kernel_size=int(w.shape[-1]),
                in_channels=int(w.shape[2]),
                mid_channels=int(w.shape[1]),
                out_channels=int(self.hallucinators["dec_weight"].shape[2]),
            )
            grow = 2 * padding_size(self.hallucinator_padding, int(w.shape[-1])) - int(w.shape[-1]) + 1
            if tuple(self.hallucinators["scale"].shape[-2:]) == (1, 1) and (
                int(self.spec["height"]) + grow,
                int(self.spec["width"]) + grow,
            ) != (1, 1):
                hal["modulation"] = "channel"  # format 1.1
        bases: dict[str, Any] = {"count": n, "channels": int(self.bases.shape[1]) if self.bases.dim() > 1 else 0}
        if self.bases.dim() == 4 and tuple(self.bases.shape[-2:]) != (
            int(self.spec["height"]),
            int(self.spec["width"]),
        ):
            bases.update(height=int(self.bases.shape[2]), width=int(self.bases.shape[3]))  # format 1.1
        doc = {
            "dataset": self.spec,
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "zca": None if self.zca is None else self.zca.to_metadata(),
            "bases": bases,
            "hallucinators": hal,
            "soft_labels": self.soft_labels is not None,
            "ipc": self.ipc,
            "num_images": self.num_images,
            "objective": {"name": self.objective, "config": self.objective_config},
            "learned_lr": self.learned_lr,
            "seed": self.seed,
            "library": {"name": "haba", "version": self.library_version},
            "created": self.created,
            "payload_sha256": payload_sha256 or self.payload_sha256 or "0" * 64,
            "extra": self.extra,
        }
        if self.compensators is not None:  # format 1.2
            comp = self.compensators
            doc["compensators"] = {
                "method": "infer-ufc",
                "subsets": int(comp.shape[0]) if comp.dim() > 0 else 0,
                "per_subset": int(comp.shape[1]) if comp.dim() > 1 else 0,
                "combine": "add-clip",
                **self.compensator_info,
            }
        if self.instance_soft_labels is not None:
            doc["instance_soft_labels"] = {
                "count": int(self.instance_soft_labels.shape[0]),
                "temperature": self.soft_label_temperature,
                "kind": "logits",
                **self.soft_label_info,
            }
        if self.evaluation_recipe is not None:
            doc["evaluation_recipe"] = self.evaluation_recipe
        if self.compensators is not None or self.instance_soft_labels is not None or self.evaluation_recipe is not None:
            try:
                doc["num_instances"] = num_instances_of(doc)
            except (KeyError, TypeError):
                doc["num_instances"] = -1  # the validation then names the real problem
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
        import torch  # lazy: torch

        if self.zca is not None:
            x = self.zca.invert(x)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = x * std + mean
        if not bool(torch.isfinite(x).all()):  # finite parameters can still overflow float32 when decoded
            raise ArtifactError(None, "decoding gives NaN or infinite pixel values (parameters overflow float32)")
        return x.clamp_(0.0, 1.0)

    def decode(
        self, *, device: Any = "cpu", pixel: bool = True, indices: Tensor | None = None, batch_size: int = 8192
    ) -> tuple[Tensor, Tensor]:
        """Instances and hard labels. All ``num_instances`` (spec section 4, then 12.3.2): the ``num_images``
        images in basis-major order (image ``i*K + k`` is basis ``i`` under hallucinator ``k``), then, with
        compensators, instance ``num_images + (k*M + m)*C + c`` = clip(natural[k, c] + compensator[k, m]);
        or only ``indices`` of that order. ``pixel=False``: model space."""
        import torch  # lazy: torch

        if self.compensators is not None:
            x, y = self._decode_compensated(device)
            if indices is not None:
                j = torch.as_tensor(indices, device=device, dtype=torch.long).reshape(-1)
                if j.numel() and (int(j.min()) < 0 or int(j.max()) >= self.num_instances):
                    raise ConfigError(f"instance indices must be in [0, {self.num_instances})")
                x, y = x[j], y[j]
            return (self.to_pixel(x) if pixel else x), y
        return self._decode_images(device=device, pixel=pixel, indices=indices, batch_size=batch_size)

    def _decode_compensated(self, device: Any) -> tuple[Tensor, Tensor]:
        """All instances of a compensated (INFER) artifact in model space (spec section 12.3.2)."""
        import torch  # lazy: torch

        assert self.compensators is not None and self.compensator_subset is not None
        bases, labels = self.bases.to(device), self.labels.to(device)
        comp, subset = self.compensators.to(device), self.compensator_subset.to(device)
        k_sub, m_per, nc = int(comp.shape[0]), int(comp.shape[1]), int(self.spec["num_classes"])
        mean = torch.tensor(self.mean, dtype=bases.dtype, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=bases.dtype, device=device).view(1, -1, 1, 1)
        lo, hi = (0 - mean) / std, (1 - mean) / std
        slot = torch.full((k_sub * nc,), -1, dtype=torch.long, device=device)
        paired = torch.nonzero(subset >= 0).reshape(-1)
        slot[subset[paired] * nc + labels[paired]] = paired
        natural = bases[slot].reshape(k_sub, 1, nc, *bases.shape[1:])  # [K, 1, C, c, H, W]
        extra = torch.maximum(torch.minimum(natural + comp[:, :, None], hi), lo)  # [K, M, C, c, H, W]
        x = torch.cat([bases, extra.reshape(-1, *bases.shape[1:])])
        y = torch.cat([labels, torch.arange(nc, device=device).repeat(k_sub * m_per)])
        return x, y

    def _decode_images(
        self, *, device: Any, pixel: bool, indices: Tensor | None, batch_size: int
    ) -> tuple[Tensor, Tensor]:
        import torch  # lazy: torch

        from habacli.networks.hallucinator import apply_pairs, decode_all, upsample_bases  # lazy: torch

        kk = self.num_hallucinators
        params = {k: v.to(device) for k, v in self.hallucinators.items()}
        pad = padding_size(self.hallucinator_padding, int(params["enc_weight"].shape[-1])) if kk else 0
        bases, labels = self.bases.to(device), self.labels.to(device)
        bases = upsample_bases(bases, int(self.spec["height"]), int(self.spec["width"]))  # format 1.1, step 0
        with torch.no_grad():
            if indices is None:
                per = max(1, batch_size // max(kk, 1))
                parts = [decode_all(bases[i : i + per], params, pad=pad) for i in range(0, len(bases), per)]
                x = torch.cat(parts) if parts else bases[:0]
                y = labels.repeat_interleave(max(kk, 1))
            else:
                j = torch.as_tensor(indices, device=device, dtype=torch.long).reshape(-1)
                if j.numel() and (int(j.min()) < 0 or int(j.max()) >= self.num_images):
                    raise ConfigError(f"image indices must be in [0, {self.num_images})")
                i = j // max(kk, 1)
                x = apply_pairs(bases[i], params, j % kk, pad=pad) if kk else bases[i]
                y = labels[i]
            return (self.to_pixel(x) if pixel else x), y

    def sample_model_space(self, generator: torch.Generator, *, device: Any = "cpu") -> tuple[Tensor, Tensor]:
        """Every basis once, each under one uniformly random hallucinator (HaBa's evaluation expansion),
        in model space. ``generator`` is a CPU generator."""
        import torch  # lazy: torch

        n, kk = int(self.bases.shape[0]), self.num_hallucinators
        k = torch.randint(max(kk, 1), (n,), generator=generator)
        return self.decode(device=device, pixel=False, indices=torch.arange(n) * max(kk, 1) + k)

    def model_space_sampler(self, generator: torch.Generator, *, device: Any = "cpu"):
        """``epoch -> (x, y)``: a fresh :meth:`sample_model_space` per call, for ``train_and_test``."""
        return lambda epoch=None: self.sample_model_space(generator, device=device)


# ----------------------------------------------------------------------------- save / load
def save_artifact(artifact: HabaArtifact, path: str | os.PathLike) -> Path:
    """Validate and write ``artifact`` atomically as one safetensors file; returns the path."""
    from safetensors.torch import save  # lazy: safetensors

    artifact.check()
    body = save(artifact.tensors())  # safetensors lays the payload out deterministically
    (n,) = struct.unpack("<Q", body[:8])
    entries = json.loads(body[8 : 8 + n])
    entries.pop("__metadata__", None)
    payload = memoryview(body)[8 + n :]
    sha = hashlib.sha256(payload).hexdigest()
    doc = artifact.to_document(sha)
    meta = {"format": FORMAT, "format_version": format_version_of(doc), "haba": canonical_json(doc)}
    text = json.dumps(
        {"__metadata__": meta, **{k: entries[k] for k in sorted(entries)}}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
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
    from safetensors import SafetensorError  # lazy: safetensors
    from safetensors.torch import load  # lazy: safetensors

    from habacli.transforms.zca import CompactZCA  # lazy: torch

    hdr = read_header(path)  # validate the header before reading (possibly huge) payload bytes
    raw, size = _read(path, whole=True)
    try:
        if size != hdr.file_bytes or len(raw) != size:
            raise _Problem("the file changed while it was being read")
        doc = hdr.doc
        if verify and hashlib.sha256(memoryview(raw)[hdr.header_bytes :]).hexdigest() != doc["payload_sha256"]:
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
    comp, isl = doc.get("compensators"), doc.get("instance_soft_labels")
    infer: dict[str, Any] = {}
    if comp is not None:
        infer.update(
            compensators=tensors[COMP_PREFIX + "values"].to(device),
            compensator_subset=tensors[COMP_PREFIX + "subset"].to(device),
            compensator_info={k: v for k, v in comp.items() if k in ("teachers", "config")},
        )
    if isl is not None:
        infer.update(
            instance_soft_labels=tensors[INSTANCE_SOFT].to(device),
            soft_label_temperature=float(isl["temperature"]),
            soft_label_info={k: v for k, v in isl.items() if k in ("source", "teachers")},
        )
    if doc.get("evaluation_recipe") is not None:
        infer["evaluation_recipe"] = dict(doc["evaluation_recipe"])
    return HabaArtifact(
        tensors["bases"].to(device),
        tensors["labels"].to(device),
        soft,
        hal,
        ds,
        tuple(norm["mean"]),
        tuple(norm["std"]),
        zca,
        doc["objective"]["name"],
        doc["objective"]["config"],
        doc["ipc"],
        doc["learned_lr"],
        doc["seed"],
        doc.get("extra", {}),
        doc["created"],
        doc["library"]["version"],
        doc["payload_sha256"],
        **infer,
        hallucinator_padding=hallucinator_padding(doc["hallucinators"]),
    )
