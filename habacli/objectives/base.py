"""The objective plug-in protocol: what every distillation objective (DC, DSA, DM, MTT) implements.

HaBa is objective-agnostic: the engine (:mod:`habacli.distill.run`) owns the synthetic set (bases
and hallucinators), the adversary and the optimisers; an objective only turns the current
synthetic set into a distillation loss ``L_DD`` and hands it to :meth:`Engine.synth_step`,
which adds HaBa's contrastive term, steps every synthetic parameter and then steps the
adversary. With ``--no-factorize`` the same objective runs as the plain baseline (K = 0).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import torch

if TYPE_CHECKING:  # pragma: no cover
    from habacli.data import DatasetSpec, RealData
    from habacli.transforms.augment import DSA


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RunSettings:
    """What an objective knows of its run besides the synthetic set; the engine builds it once from the
    run's configuration (objectives never read :class:`~habacli.distill.config.DistillConfig`)."""

    ipc: int  # the baseline's images per class (DC/DSA pick their loops from it)
    model: str  # the run's network (MTT's experts must match it)
    factorize: bool  # False: the plain baseline (K = 0)
    zca: bool  # model space is ZCA-whitened
    seed: int
    data_dir: str | os.PathLike | None = None  # where the real data lives (MTT's --experts auto trains on it)
    amp: str = "off"  # off | bf16 (habacli.runtime.amp.check_amp)
    compile: bool = False
    channels_last: bool = False


@dataclass
class ParamGroup:
    """Extra learnable parameters an objective adds to the synthetic side (e.g. MTT's lr).

    They are stepped by :meth:`Engine.synth_step` together with the bases and hallucinators,
    with their own SGD ``lr`` and ``momentum``; ``clamp_min`` is applied after each step
    (HaBa clips MTT's learnable lr at 1e-3).
    """

    name: str
    params: list[torch.Tensor]
    lr: float
    momentum: float = 0.0
    clamp_min: float | None = None


class SyntheticView(Protocol):
    """What an objective sees of the synthetic set (implemented by the engine)."""

    num_classes: int
    bases_per_class: int
    num_hallucinators: int  # K; 0 for a plain (non-factorised) set
    labels: torch.Tensor  # int64 [num_bases], class-major

    @property
    def num_bases(self) -> int: ...

    def images(self, idx: torch.Tensor | None = None, k: int | None = None) -> torch.Tensor:
        """Differentiable model-space images of bases ``idx`` (all when None) under hallucinator
        ``k`` (ignored when K = 0; must be given when K > 0)."""

    def class_indices(self, c: int) -> torch.Tensor:
        """Indices of the bases of class ``c``."""

    def random_k(self, generator: torch.Generator) -> int:
        """A uniformly random hallucinator index (0 when K = 0)."""

    def expand_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every basis x hallucinator image (no grad, model space) with labels: for inner-loop
        network training (DC/DSA)."""


class Engine(Protocol):
    """The services the engine offers an objective."""

    spec: DatasetSpec
    device: torch.device
    real: RealData  # training split minus the validation split, model space on the device
    synthetic: SyntheticView
    dsa: DSA | None  # None when augmentation is off
    generator: torch.Generator  # the run's only source of randomness (checkpointed)
    settings: RunSettings

    def autocast(self) -> AbstractContextManager[Any]:
        """``with engine.autocast(): ...`` autocasts under ``--amp`` (a no-op otherwise)."""

    def compile(self, fn: F) -> F:
        """``fn`` under ``torch.compile`` with ``--compile``, else ``fn`` itself."""

    def make_network(self, name: str | None = None) -> torch.nn.Module:
        """A freshly initialised network (default: the run's model) on the device, seeded from
        :attr:`generator`."""

    def synth_step(self, loss_dd: torch.Tensor) -> dict[str, float]:
        """One synthesizer update: L = L_DD (+ lambda_cos * L_cos when factorised); backward;
        step bases, hallucinators and every :class:`ParamGroup`; then one adversary step.
        Returns scalar stats (``loss_dd``, ``loss_cos``, ``loss_adv``...)."""


class Objective:
    """Base class of the objectives. Subclasses register with ``@OBJECTIVES.register(name)``."""

    name: ClassVar[str] = ""
    #: objective-specific defaults (overridden by presets, --config and CLI flags)
    defaults: ClassVar[dict[str, Any]] = {}
    #: citation key used in dataset cards
    paper: ClassVar[str] = ""

    def __init__(self, engine: Engine, config: dict[str, Any]):
        self.engine = engine
        self.config = {**self.defaults, **config}

    def extra_parameters(self) -> list[ParamGroup]:
        """Extra synthetic-side learnables (default: none)."""
        return []

    def run_iteration(self, it: int) -> dict[str, float]:
        """One outer iteration; calls ``engine.synth_step(loss)`` one or more times."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (beyond the engine's own state)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""

    def artifact_fields(self) -> dict[str, Any]:
        """Extra artifact fields, e.g. ``{"learned_lr": 0.0123}`` for MTT."""
        return {}

    def run_facts(self) -> dict[str, Any]:
        """What this run decided while it ran, where the config says ``auto`` (the artifact's ``extra.distill``)."""
        return {}


@dataclass
class IterationStats:
    """Running averages for the progress bar and the JSON summary."""

    totals: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.totals[key] = self.totals.get(key, 0.0) + float(value)
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.totals.items()}
