"""Distillation objectives behind one registry: ``dc``, ``dsa``, ``dm``, ``mtt``.

Each objective module registers its class on import; :func:`get_objective` imports them lazily.
"""

from __future__ import annotations

import importlib

from habacli._registry import Registry
from habacli.objectives.base import Engine, Objective, ParamGroup, SyntheticView

OBJECTIVES: Registry[type[Objective]] = Registry("objective")

#: torch-free name table (``haba --help`` and validation must not import the objectives)
OBJECTIVE_MODULES: dict[str, str] = {
    "dc": "habacli.objectives.dc",
    "dsa": "habacli.objectives.dsa",
    "dm": "habacli.objectives.dm",
    "mtt": "habacli.objectives.mtt",
}


def _load_all() -> None:
    for name, module in OBJECTIVE_MODULES.items():
        if name not in OBJECTIVES:
            importlib.import_module(module)


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name`` (suggests close names when unknown)."""
    _load_all()
    return OBJECTIVES.get(name)


def list_objectives() -> list[str]:
    """Names of every registered objective."""
    return sorted(OBJECTIVE_MODULES)


__all__ = ["OBJECTIVES", "Engine", "Objective", "ParamGroup", "SyntheticView", "get_objective", "list_objectives"]
