"""haba: dataset distillation by factorization (HaBa), as a CLI and a library.

The public API lives in :mod:`habacli.api`; names are re-exported lazily here so
that ``import habacli`` (and ``haba --help``) stays fast and does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "distill": "habacli.api",
    "experts": "habacli.api",
    "expand": "habacli.api",
    "evaluate": "habacli.api",
    "info": "habacli.api",
    "push": "habacli.api",
    "pull": "habacli.api",
    "load_artifact": "habacli.artifact",
    "save_artifact": "habacli.artifact",
    "read_metadata": "habacli.artifact",
    "HabaArtifact": "habacli.artifact",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):  # PEP 562 lazy re-exports
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'habacli' has no attribute {name!r}")
