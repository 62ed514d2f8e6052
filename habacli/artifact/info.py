"""``haba info``: what an artifact holds and what it costs, from its header (torch-free)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from habacli.artifact.codec import load_artifact
from habacli.artifact.header import COMP_PREFIX, HAL_PREFIX, INSTANCE_SOFT, ZCA_PREFIX, Header, local_path, read_header

# ----------------------------------------------------------------------------- haba info
#: Byte-size parts shown by ``haba info`` (the header counts the 8-byte length too).
PARTS = ("bases", "hallucinators", "compensators", "zca", "labels", "header", "other")


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
    if name in ("labels", "soft_labels", INSTANCE_SOFT):
        return "labels"
    if name.startswith(COMP_PREFIX):
        return "compensators"
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


def info(
    path: str | os.PathLike, *, verify: bool = False, header: Header | None = None, source: str | None = None
) -> ArtifactInfo:
    """Describe the artifact at ``path`` from its header (or from ``header`` already read, e.g. over HTTP);
    ``verify`` also loads the payload and checks it (checksum, labels, finite values), which imports torch."""
    if header is None:
        path = local_path(path)
        header = read_header(path)
        if verify:
            load_artifact(path, verify=True)
    meta = {"format": header.meta["format"], "format_version": header.meta["format_version"], "haba": header.doc}
    return ArtifactInfo(source or os.fspath(path), header.file_bytes, size_by_part(header), meta, verify)
