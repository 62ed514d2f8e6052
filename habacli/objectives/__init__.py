"""Distillation objectives behind one registry: ``dc``, ``dsa``, ``dm``, ``mtt``.

Each objective module registers its class on import; :func:`get_objective` imports them lazily.
"""

from __future__ import annotations

import importlib

from habacli._registry import Registry
from habacli.errors import UnknownNameError
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
    """The objective class registered as ``name``, importing only its own module (unknown names raise
    :class:`~habacli.errors.UnknownNameError` with suggestions, without importing any objective)."""
    key = str(name).lower()
    if key not in OBJECTIVE_MODULES:
        raise UnknownNameError("objective", str(name), OBJECTIVE_MODULES)
    if key not in OBJECTIVES:
        importlib.import_module(OBJECTIVE_MODULES[key])
    return OBJECTIVES.get(key)


def list_objectives() -> list[str]:
    """Names of every registered objective."""
    return sorted(OBJECTIVE_MODULES)


__all__ = ["OBJECTIVES", "Engine", "Objective", "ParamGroup", "SyntheticView", "get_objective", "list_objectives"]
