"""Artifact references: a local path, or ``hf://datasets/ORG/NAME[@REV][/FILE]`` on the Hub.

Every command that takes an artifact calls :func:`resolve_artifact` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from habacli.errors import ArtifactNotFoundError

HF_PREFIX = "hf://"


def is_hub_ref(ref: str | os.PathLike) -> bool:
    """True for ``hf://...`` references."""
    return isinstance(ref, str) and ref.startswith(HF_PREFIX)


def resolve_artifact(ref: str | os.PathLike) -> Path:
    """Return a local path for ``ref``, downloading Hub references through the HF cache."""
    if is_hub_ref(ref):
        from habacli.hub import download_artifact

        return download_artifact(str(ref))
    path = Path(ref)
    if not path.exists():
        raise ArtifactNotFoundError(path, "no such file")
    return path
