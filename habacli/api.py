"""The library behind the CLI. Every command is one call here; nothing here prints or exits.

This is where artifact references become local paths: :func:`info`, :func:`expand` and :func:`evaluate`
accept a path or an ``hf://datasets/ORG/NAME[@REV][/FILE]`` reference, resolve it through
:mod:`habacli.hub`, and hand a local path to the layer that does the work. Heavy functions are imported
on first use, so ``import habacli.api`` stays torch-free:

- :func:`info` (:mod:`habacli.artifact.info`): what an artifact holds and what it costs;
- :func:`datasets` (:mod:`habacli.data`): the dataset registry and local availability;
- :func:`distill` (:mod:`habacli.distill`): run HaBa (or a plain baseline) and write an artifact;
- :func:`experts` (:mod:`habacli.experts`): train MTT expert trajectories;
- :func:`expand` (:mod:`habacli.artifact.expand`): decode an artifact into images;
- :func:`evaluate` (:mod:`habacli.evaluate.run`): the standard train-from-scratch protocol;
- :func:`push` / :func:`pull` (:mod:`habacli.hub.transfer`): share artifacts on the Hugging Face Hub.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from habacli.artifact.expand import expand as expand_local
from habacli.artifact.info import ArtifactInfo
from habacli.artifact.info import info as _info
from habacli.hub.refs import is_hub_ref
from habacli.hub.transfer import pull, push, remote_header, resolve_artifact

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from habacli.artifact.expand import ExpandResult
    from habacli.data import dataset_status as datasets
    from habacli.distill import distill
    from habacli.evaluate.run import EvalResult
    from habacli.experts import train_experts as experts
    from habacli.infer.run import distill as distill_infer
    from habacli.infer.run import teachers

_LAZY: dict[str, tuple[str, str]] = {
    "datasets": ("habacli.data", "dataset_status"),
    "distill": ("habacli.distill", "distill"),
    "experts": ("habacli.experts", "train_experts"),
    "teachers": ("habacli.infer.run", "teachers"),
    "distill_infer": ("habacli.infer.run", "distill"),
}

__all__ = [
    "datasets",
    "distill",
    "distill_infer",
    "evaluate",
    "evaluate_random",
    "expand",
    "experts",
    "info",
    "pull",
    "push",
    "resolve_artifact",
    "teachers",
]


def info(artifact: str | os.PathLike, *, verify: bool = False) -> ArtifactInfo:
    """Describe ``artifact`` (a path or ``hf://`` reference) from its header; a Hub artifact's header is read
    over HTTP without downloading it. ``verify`` also loads the payload and checks it (imports torch)."""
    header = remote_header(str(artifact)) if is_hub_ref(artifact) and not verify else None
    path = resolve_artifact(artifact) if header is None else artifact
    return _info(path, verify=verify, header=header, source=os.fspath(artifact))


def expand(artifact: Any, out: str | os.PathLike, **options: Any) -> ExpandResult:
    """Decode ``artifact`` (a path, ``hf://`` reference or loaded artifact) into images under ``out``;
    ``options`` are those of :func:`habacli.artifact.expand.expand`."""
    return expand_local(_resolved(artifact), out, **options)


def evaluate(artifact: Any, **options: Any) -> EvalResult:
    """Train networks from scratch on ``artifact`` (a path, ``hf://`` reference or loaded artifact) and test
    them; ``options`` are those of :func:`habacli.evaluate.run.evaluate`."""
    from habacli.evaluate.run import evaluate as evaluate_local  # lazy: torch

    return evaluate_local(_resolved(artifact), **options)


def evaluate_random(dataset: str, ipc: int, *, zca: bool | None = None, **options: Any) -> EvalResult:
    """The random-real-images baseline (:func:`habacli.evaluate.run.evaluate_random`) in the space the
    dataset's distilled sets live in: ``zca=None`` takes the ``paper`` preset's choice for MTT at this
    dataset and IPC (ZCA for CIFAR-10 at IPC 1 and 10, as the official MTT and HaBa scripts), so a
    table's random row is comparable with its MTT rows; with ``teachers`` (INFER's soft labels) the default is
    no ZCA, INFER's space."""
    from habacli.distill.config import preset_zca  # lazy: keeps `import habacli.api` light
    from habacli.evaluate.run import evaluate_random as evaluate_random_local  # lazy: torch

    default = False if options.get("teachers") is not None else preset_zca(dataset, ipc)
    use_zca = default if zca is None else bool(zca)
    return evaluate_random_local(dataset, ipc, zca=use_zca, **options)


def _resolved(artifact: Any) -> Any:
    """A loaded artifact as is; a path or reference as a local path."""
    return artifact if hasattr(artifact, "decode") and hasattr(artifact, "bases") else resolve_artifact(artifact)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)  # lazy: torch
    raise AttributeError(f"module 'habacli.api' has no attribute {name!r}")
