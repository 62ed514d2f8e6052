"""What an artifact holds and what it costs, from its header alone (no torch unless ``verify``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from habacli.artifact import HAL_PREFIX, ZCA_PREFIX, Header, parse_header, read_header

#: Byte-size parts shown by ``haba info`` (the header counts the 8-byte length too).
PARTS = ("bases", "hallucinators", "zca", "labels", "header", "other")


@dataclass(frozen=True)
class ArtifactInfo:
    """A validated artifact header: the metadata document, its file size split by part, and whether the
    payload was verified (checksum, labels in range, finite values)."""

    source: str
    file_bytes: int
    parts: dict[str, int]
    metadata: dict[str, Any]  # {"format", "format_version", "haba": document}
    verified: bool

    @property
    def doc(self) -> dict[str, Any]:
        """The ``haba`` metadata document."""
        return self.metadata["haba"]


def part_of(name: str) -> str:
    """Which size part a tensor belongs to."""
    if name == "bases":
        return "bases"
    if name in ("labels", "soft_labels"):
        return "labels"
    if name.startswith(HAL_PREFIX):
        return "hallucinators"
    if name.startswith(ZCA_PREFIX):
        return "zca"
    return "other"


def size_by_part(header: Header) -> dict[str, int]:
    """File bytes per part; they sum to the file size."""
    parts = dict.fromkeys(PARTS, 0)
    parts["header"] = header.header_bytes
    for name, (_, _, begin, end) in header.tensors.items():
        parts[part_of(name)] += end - begin
    return parts


def _remote_header(ref: str) -> Header | None:
    """The header of a Hub artifact via HTTP range requests (None when offline: use the cache)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
        return None
    from habacli.hub import read_remote_header

    raw, size = read_remote_header(ref)
    return parse_header(raw, size, name=ref)


def info(artifact: str | os.PathLike, *, verify: bool = False) -> ArtifactInfo:
    """Describe ``artifact`` (a path or ``hf://`` reference) from its header; ``verify`` also loads the
    payload and checks it (checksum, labels, finite values), which imports torch."""
    from habacli.refs import is_hub_ref, resolve_artifact

    header = _remote_header(str(artifact)) if is_hub_ref(artifact) and not verify else None
    if header is None:
        path = resolve_artifact(artifact)
        header = read_header(path)
        if verify:
            from habacli.artifact import load_artifact

            load_artifact(path, verify=True)
    meta = {"format": header.meta["format"], "format_version": header.meta["format_version"], "haba": header.doc}
    return ArtifactInfo(os.fspath(artifact), header.file_bytes, size_by_part(header), meta, verify)
