"""The library behind the CLI. Every command is one call here; nothing here prints or exits.

Functions are imported lazily from the module that owns them, so ``import habacli.api`` is cheap:

- :func:`info` (``habacli.inspect``): what an artifact holds and what it costs;
- :func:`datasets` (``habacli.data``): the dataset registry and local availability;
- :func:`distill` (``habacli.distill``): run HaBa (or a plain baseline) and write an artifact;
- :func:`experts` (``habacli.experts``): train MTT expert trajectories;
- :func:`expand` (``habacli.expand``): decode an artifact into images;
- :func:`evaluate` (``habacli.evaluate``): the standard train-from-scratch protocol;
- :func:`push` / :func:`pull` (``habacli.hub``): share artifacts on the Hugging Face Hub.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_TABLE: dict[str, tuple[str, str]] = {
    "info": ("habacli.inspect", "info"),
    "datasets": ("habacli.data", "dataset_status"),
    "distill": ("habacli.distill", "distill"),
    "experts": ("habacli.experts", "train_experts"),
    "expand": ("habacli.expand", "expand"),
    "evaluate": ("habacli.evaluate", "evaluate"),
    "evaluate_random": ("habacli.evaluate", "evaluate_random"),
    "push": ("habacli.hub", "push"),
    "pull": ("habacli.hub", "pull"),
    "resolve_artifact": ("habacli.refs", "resolve_artifact"),
}

__all__ = sorted(_TABLE)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from habacli.data import dataset_status as datasets  # noqa: F401
    from habacli.distill import distill  # noqa: F401
    from habacli.evaluate import evaluate, evaluate_random  # noqa: F401
    from habacli.expand import expand  # noqa: F401
    from habacli.experts import train_experts as experts  # noqa: F401
    from habacli.hub import pull, push  # noqa: F401
    from habacli.inspect import info  # noqa: F401
    from habacli.refs import resolve_artifact  # noqa: F401


def __getattr__(name: str):
    if name in _TABLE:
        module, attr = _TABLE[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'habacli.api' has no attribute {name!r}")
