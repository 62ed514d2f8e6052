"""Artifact references: a local path, or ``hf://datasets/ORG/NAME[@REV][/FILE]`` on the Hub.

Parsing lives here (no network, no torch). :func:`habacli.hub.transfer.resolve_artifact` turns a reference
into a local path (downloading Hub references); :mod:`habacli.api` calls it before the lower layers run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from habacli.errors import UsageError

HF_PREFIX = "hf://"
DEFAULT_FILENAME = "haba.safetensors"
"""The artifact's path in a dataset repo written by ``haba push`` (and the default for pulls)."""

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")  # ASCII only: \w would admit any Unicode letter
_REV = re.compile(r"[A-Za-z0-9_./%-]{1,200}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class HubRef:
    """A parsed Hub reference: dataset repo, optional revision, optional file in the repo."""

    repo_id: str
    revision: str | None = None
    filename: str | None = None

    @property
    def file(self) -> str:
        """The file to fetch (``haba.safetensors`` unless the reference names one)."""
        return self.filename or DEFAULT_FILENAME

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        name = f"/{self.filename}" if self.filename else ""
        return f"{HF_PREFIX}datasets/{self.repo_id}{rev}{name}"


def is_hub_ref(ref: str | os.PathLike) -> bool:
    """True for ``hf://...`` references."""
    return isinstance(ref, str) and ref.startswith(HF_PREFIX)


def validate_repo_id(repo_id: str) -> str:
    """Check ``ORG/NAME`` against the Hub's naming rules; return it or raise :class:`UsageError`."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UsageError(f"invalid repo id {repo_id!r}: expected ORG/NAME (e.g. my-org/fashion-mnist-haba)")
    for part in repo_id.split("/"):
        if not _PART.fullmatch(part):
            raise UsageError(
                f"invalid repo id {repo_id!r}: each part must be 1-96 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        if "--" in part or ".." in part or part.endswith((".", "-")) or part.endswith(".git"):
            raise UsageError(f"invalid repo id {repo_id!r}: '--', '..', a trailing '.'/'-' or '.git' are not allowed")
    return repo_id


def _validate_revision(rev: str, text: str) -> str:
    rev = unquote(rev)
    if not rev or not _REV.fullmatch(rev) or ".." in rev or rev.startswith("/") or rev.endswith("/"):
        raise UsageError(f"invalid revision in {text!r}")
    return rev


def parse_hub_ref(ref: str) -> HubRef:
    """Parse ``hf://datasets/ORG/NAME[@REV][/FILE]`` (a ``/`` inside REV is written ``%2F``)."""
    if not is_hub_ref(ref):
        raise UsageError(f"not a Hub reference: {ref!r} (expected hf://datasets/ORG/NAME[@REV][/FILE])")
    rest = ref[len(HF_PREFIX) :]
    kind, _, rest = rest.partition("/")
    if kind != "datasets":
        raise UsageError(
            f"unsupported Hub reference {ref!r}: haba artifacts live in dataset repos, "
            "write hf://datasets/ORG/NAME[@REV][/FILE]"
        )
    parts = rest.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid Hub reference {ref!r}: expected hf://datasets/ORG/NAME[@REV][/FILE]")
    name, _, rev = parts[1].partition("@")
    repo_id = validate_repo_id(f"{parts[0]}/{name}")
    revision = _validate_revision(rev, ref) if "@" in parts[1] else None
    filename = "/".join(parts[2:]) or None
    if filename is not None and (
        filename.startswith("/")
        or ".." in filename.split("/")
        or "" in filename.split("/")
        or _CONTROL.search(filename)
    ):
        raise UsageError(f"invalid file path in Hub reference {ref!r}")
    return HubRef(repo_id, revision, filename)


def parse_repo_spec(text: str) -> HubRef:
    """Parse what ``haba pull`` takes: ``ORG/NAME[@REV]`` or a full ``hf://datasets/...`` reference."""
    if is_hub_ref(text):
        return parse_hub_ref(text)
    repo, sep, rev = text.partition("@")
    repo_id = validate_repo_id(repo)
    return HubRef(repo_id, _validate_revision(rev, text) if sep else None, None)
