"""``distill_infer``: natural subsets -> UFCs -> static soft labels, as one :class:`InferSet`."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from habacli.data import RealData, load_split
from habacli.errors import ConfigError
from habacli.infer.augment import valid_range
from habacli.infer.budget import InferBudget, Pair, infer_budget
from habacli.infer.labels import (
    DEFAULT_TEMPERATURE,
    expand_instances,
    instance_labels,
    static_soft_labels,
)
from habacli.infer.teachers import load_teachers
from habacli.infer.ufc import UFCConfig, draw_subsets, train_ufcs
from habacli.runtime.progress import ProgressFn

__all__ = ["PAPER_ITERATIONS", "QUICK_ITERATIONS", "InferSet", "distill_infer"]

PAPER_ITERATIONS = 1000
QUICK_ITERATIONS = 100


@dataclass
class InferSet:
    """An INFER set in model space.

    ``natural`` ``[K, C, c, H, W]``; ``ufc`` ``[K, M, c, H, W]`` (None: the no-UFC ablation);
    ``soft_labels`` ``[N_inst, C]`` raw ensemble logits, one per instance in instance order (natural first,
    then (k, m, c)); ``temperature`` the T they are used at; ``mean``/``std`` the normalisation."""

    natural: Tensor
    ufc: Tensor | None
    soft_labels: Tensor | None
    temperature: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str = ""
    ipc: int = 0
    teachers: list[str] = field(default_factory=list)
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def subsets(self) -> int:
        return int(self.natural.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.natural.shape[1])

    @property
    def num_teachers(self) -> int:
        return 0 if self.ufc is None else int(self.ufc.shape[1])

    @property
    def num_instances(self) -> int:
        return self.subsets * self.num_classes * (self.num_teachers + 1)

    @property
    def budget(self) -> InferBudget:
        m = max(1, self.num_teachers)
        return InferBudget(self.ipc or self.subsets, self.num_classes, m, self.subsets)

    @property
    def pairing(self) -> list[Pair]:
        """Instance -> (k, c, m or None), in instance order."""
        if self.ufc is None:
            return [Pair(i, i // self.num_classes, i % self.num_classes, None) for i in range(self.num_instances)]
        return self.budget.pairs()

    def validate(self) -> None:
        """Shapes and values; one-line :class:`ConfigError` on a mismatch."""
        n = self.natural
        if n.dim() != 5 or n.shape[0] < 1 or n.shape[1] < 1:
            raise ConfigError(f"natural images must be [K, C, c, H, W] with K, C >= 1, got shape {list(n.shape)}")
        k, c_cls, c, h, w = n.shape
        if len(self.mean) != c or len(self.std) != c or any(s <= 0 for s in self.std):
            raise ConfigError(f"normalization needs {c} mean/std values with std > 0, got {self.mean}/{self.std}")
        if self.ufc is not None:
            u = self.ufc
            if u.dim() != 5 or u.shape[0] != k or u.shape[1] < 1 or tuple(u.shape[2:]) != (c, h, w):
                raise ConfigError(f"compensators must be [K={k}, M, {c}, {h}, {w}], got shape {list(u.shape)}")
        if self.soft_labels is not None:
            s = self.soft_labels
            if s.dim() != 2 or s.shape[1] != c_cls:
                raise ConfigError(f"soft labels must be {c_cls} wide (one logit per class), got shape {list(s.shape)}")
            if s.shape[0] != self.num_instances:
                raise ConfigError(
                    f"soft labels must have one row per instance ({self.num_instances}), got {s.shape[0]}"
                )
        if not self.temperature > 0:
            raise ConfigError(f"soft-label temperature must be > 0, got {self.temperature}")
        for name, t in (("natural images", n), ("compensators", self.ufc), ("soft labels", self.soft_labels)):
            if t is not None and not bool(torch.isfinite(t).all()):
                raise ConfigError(f"{name} hold NaN or infinite values")

    def valid_range(self) -> tuple[Tensor, Tensor]:
        return valid_range(self.mean, self.std, self.natural.device)

    def instances(self) -> tuple[Tensor, Tensor]:
        """Model-space instances ``[N_inst, c, H, W]`` and hard labels, in instance order."""
        lo, hi = self.valid_range()
        x = expand_instances(self.natural, self.ufc, lo, hi)
        return x, instance_labels(self.subsets, self.num_classes, self.num_teachers, x.device)

    def without_ufc(self) -> InferSet:
        """The ablation: the same natural images and their soft labels, no compensators."""
        n_nat = self.subsets * self.num_classes
        soft = None if self.soft_labels is None else self.soft_labels[:n_nat].clone()
        return InferSet(
            self.natural,
            None,
            soft,
            self.temperature,
            self.mean,
            self.std,
            self.dataset,
            self.ipc,
            list(self.teachers),
            self.seed,
            {**self.info, "ablation": "no_ufc"},
        )

    def storage(self) -> dict[str, float | int]:
        """Stored values: natural images, compensators, soft labels, total, baseline (C*IPC*c*H*W), ratio."""
        _, c_cls, c, h, w = self.natural.shape
        px = c * h * w
        nat = self.natural.numel()
        comp = 0 if self.ufc is None else self.ufc.numel()
        soft = 0 if self.soft_labels is None else self.soft_labels.numel()
        base = c_cls * (self.ipc or self.subsets) * px
        return {
            "natural": nat,
            "compensators": comp,
            "soft_labels": soft,
            "total": nat + comp + soft,
            "baseline": base,
            "ratio": (nat + comp + soft) / base,
        }


def distill_infer(
    dataset: str,
    ipc: int,
    *,
    teachers_dir: str | os.PathLike,
    teachers: Sequence[str] | str | None = None,
    iterations: int = PAPER_ITERATIONS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    config: UFCConfig | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    done: Mapping[tuple[int, int], Tensor] | None = None,
    on_ufc: Callable[[int, int, Tensor, dict], None] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> InferSet:
    """Distil ``dataset`` at ``ipc`` images per class with INFER, using the teachers stored under
    ``teachers_dir`` (``teachers``: arch names or a family; None: every teacher found for the dataset).

    K = int(IPC / (M/C + 1)) natural subsets are drawn from the training split with a generator seeded
    with ``seed``; M UFCs per subset are trained (``iterations`` each; 1000 in the paper; ``config`` sets the other UFC settings, its
    ``iterations`` is replaced by the argument); the soft labels
    are the ensemble's averaged logits on every instance. ``done``/``on_ufc`` resume and checkpoint per UFC.
    """
    device = torch.device(device)
    split = load_split(dataset, "train", data_dir=data_dir)
    spec = split.spec
    shape = (spec.channels, spec.num_classes, spec.height, spec.width)
    models, metas = load_teachers(teachers_dir, dataset, archs=teachers, shape=shape, device=device)
    budget = infer_budget(ipc, spec.num_classes, len(models))
    cfg = dataclasses.replace(config if config is not None else UFCConfig(), iterations=int(iterations))
    real = RealData.build(split, device=device)
    g = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    natural = draw_subsets(real, budget.subsets, g)
    lo, hi = valid_range(real.normalize_mean, real.normalize_std, device)
    ufc, infos = train_ufcs(
        models, natural, config=cfg, lo=lo, hi=hi, generator=g, done=done, on_ufc=on_ufc, progress=progress
    )
    t1 = time.perf_counter()
    soft = static_soft_labels(models, natural, ufc, lo, hi)
    info = {
        "ufc_config": cfg.to_dict(),
        "ufc_seconds": round(t1 - t0, 3),
        "label_seconds": round(time.perf_counter() - t1, 3),
        "teacher_accuracy": {m["arch"]: m["test_accuracy"] for m in metas},
        "ufc": {f"{k},{m}": v for (k, m), v in infos.items()},
    }
    return InferSet(
        natural,
        ufc,
        soft,
        float(temperature),
        tuple(real.normalize_mean),
        tuple(real.normalize_std),
        dataset,
        ipc,
        [m["arch"] for m in metas],
        seed,
        info,
    )
