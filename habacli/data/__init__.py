"""Real data: the dataset registry, loaders, haba's cache, and class-indexed data on the device.

Public names (imported lazily, so ``haba datasets`` and ``haba --help`` never import torch):
:class:`DatasetSpec`, :func:`get_spec`, :func:`list_datasets`, :func:`dataset_status`,
:func:`load_split`, :class:`Split`, :class:`RealData`, :func:`fit_zca`, :func:`cache_dir`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "DatasetSpec": "habacli.data.spec",
    "DATASETS": "habacli.data.spec",
    "list_datasets": "habacli.data.spec",
    "get_spec": "habacli.data.load",
    "load_split": "habacli.data.load",
    "Split": "habacli.data.split",
    "dataset_status": "habacli.data.status",
    "RealData": "habacli.data.real",
    "fit_zca": "habacli.data.whiten",
    "cache_dir": "habacli.data.cache",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from habacli.data.cache import cache_dir  # noqa: F401
    from habacli.data.load import get_spec, load_split  # noqa: F401
    from habacli.data.real import RealData  # noqa: F401
    from habacli.data.spec import DATASETS, DatasetSpec, list_datasets  # noqa: F401
    from habacli.data.split import Split  # noqa: F401
    from habacli.data.status import dataset_status  # noqa: F401
    from habacli.data.whiten import fit_zca  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'habacli.data' has no attribute {name!r}")
