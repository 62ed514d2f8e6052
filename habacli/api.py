"""The library behind the CLI. Every command is one call here; nothing here prints or exits.

Functions are imported lazily from the module that owns them, so ``import habacli.api`` is cheap:

- :func:`info` (``habacli.artifact.header``): what an artifact holds and what it costs;
- :func:`datasets` (``habacli.data``): the dataset registry and local availability;
- :func:`distill` (``habacli.distill.run``): run HaBa (or a plain baseline) and write an artifact;
- :func:`experts` (``habacli.experts``): train MTT expert trajectories;
- :func:`expand` (``habacli.artifact.expand``): decode an artifact into images;
- :func:`evaluate` (``habacli.evaluate.run``): the standard train-from-scratch protocol;
- :func:`push` / :func:`pull` (``habacli.hub.transfer``): share artifacts on the Hugging Face Hub.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_TABLE: dict[str, tuple[str, str]] = {
    "info": ("habacli.artifact.header", "info"),
    "datasets": ("habacli.data", "dataset_status"),
    "distill": ("habacli.distill.run", "distill"),
    "experts": ("habacli.experts", "train_experts"),
    "expand": ("habacli.artifact.expand", "expand"),
    "evaluate": ("habacli.evaluate.run", "evaluate"),
    "evaluate_random": ("habacli.evaluate.run", "evaluate_random"),
    "push": ("habacli.hub.transfer", "push"),
    "pull": ("habacli.hub.transfer", "pull"),
    "resolve_artifact": ("habacli.hub.refs", "resolve_artifact"),
}

__all__ = sorted(_TABLE)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from habacli.data import dataset_status as datasets  # noqa: F401
    from habacli.distill.run import distill  # noqa: F401
    from habacli.evaluate.run import evaluate, evaluate_random  # noqa: F401
    from habacli.artifact.expand import expand  # noqa: F401
    from habacli.experts import train_experts as experts  # noqa: F401
    from habacli.hub.transfer import pull, push  # noqa: F401
    from habacli.artifact.header import info  # noqa: F401
    from habacli.hub.refs import resolve_artifact  # noqa: F401


def __getattr__(name: str):
    if name in _TABLE:
        module, attr = _TABLE[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'habacli.api' has no attribute {name!r}")
