"""INFER's budget: how many natural subsets K fit an IPC budget, how instances pair with subsets and
compensators, and how many values are stored.

The official code sets ``K = int(IPC / (M/C + 1))`` (C classes, M teachers): K natural subsets of one
real image per class (K*C natural images) plus M universal feature compensators (UFCs) per subset, so
K*C + K*M <= IPC*C image-equivalents are stored. haba computes K with the exact integer form
``(IPC * C) // (C + M)``, which equals the official float formula wherever that formula is not off by a
rounding error (``tests/test_infer_budget.py`` compares them).

Instances are numbered natural first, then compensated, the order the artifact (format v1.1) uses:

* ``j < K*C``: the natural image ``natural[k, c]`` alone, ``k = j // C``, ``c = j % C``;
* ``j = K*C + (k*M + m)*C + c``: ``clip(natural[k, c] + ufc[k, m])``.
"""

from __future__ import annotations

from dataclasses import dataclass

from habacli.errors import ConfigError

__all__ = ["InferBudget", "InferBudgetError", "Pair", "infer_budget", "subsets_for"]


class InferBudgetError(ConfigError):
    """The IPC budget is too small for a single INFER subset (K = 0)."""


@dataclass(frozen=True)
class Pair:
    """What instance ``index`` is: natural subset ``k``, class ``c`` and teacher/UFC ``m`` (None: the
    natural image alone)."""

    index: int
    k: int
    c: int
    m: int | None

    @property
    def natural(self) -> bool:
        return self.m is None


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"INFER {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"INFER {name} must be >= {minimum}, got {value}")
    return value


def subsets_for(ipc: int, num_classes: int, num_teachers: int) -> int:
    """K = int(IPC / (M/C + 1)), computed exactly as ``(IPC*C) // (C+M)``; raises
    :class:`InferBudgetError` when K = 0."""
    _check_int("ipc", ipc, 1)
    _check_int("number of classes", num_classes, 1)
    _check_int("number of teachers", num_teachers, 1)
    k = (ipc * num_classes) // (num_classes + num_teachers)
    if k == 0:
        need = -(-(num_classes + num_teachers) // num_classes)  # smallest IPC with K >= 1
        raise InferBudgetError(
            f"INFER needs IPC >= M/C + 1 = {num_teachers}/{num_classes} + 1: IPC {ipc} with C={num_classes} classes "
            f"and M={num_teachers} teachers gives K = int({ipc} / ({num_teachers}/{num_classes} + 1)) = 0 natural "
            f"subsets (use IPC >= {need})"
        )
    return k


@dataclass(frozen=True)
class InferBudget:
    """The INFER layout for ``ipc`` images per class, ``num_classes`` classes and ``num_teachers`` teachers."""

    ipc: int
    num_classes: int
    num_teachers: int
    subsets: int  # K

    @property
    def natural_images(self) -> int:
        """K*C stored natural images."""
        return self.subsets * self.num_classes

    @property
    def compensators(self) -> int:
        """K*M stored UFCs."""
        return self.subsets * self.num_teachers

    @property
    def stored_images(self) -> int:
        """Image-equivalents stored: K*C + K*M (<= IPC*C)."""
        return self.natural_images + self.compensators

    @property
    def instances(self) -> int:
        """Training instances after expansion: K*C*(M+1)."""
        return self.natural_images * (self.num_teachers + 1)

    @property
    def instances_per_class(self) -> int:
        return self.subsets * (self.num_teachers + 1)

    def pair(self, index: int) -> Pair:
        """Instance ``index`` -> :class:`Pair` (natural first, then (k, m, c) order)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.instances:
            raise ConfigError(f"INFER instance index {index!r} out of range 0..{self.instances - 1}")
        c_cls, m_t = self.num_classes, self.num_teachers
        if index < self.natural_images:
            return Pair(index, index // c_cls, index % c_cls, None)
        j = index - self.natural_images
        return Pair(index, j // (m_t * c_cls), j % c_cls, (j // c_cls) % m_t)

    def index(self, k: int, c: int, m: int | None = None) -> int:
        """Inverse of :meth:`pair`."""
        if not (0 <= k < self.subsets and 0 <= c < self.num_classes) or (
            m is not None and not 0 <= m < self.num_teachers
        ):
            raise ConfigError(
                f"INFER pair (k={k}, c={c}, m={m}) out of range (K={self.subsets}, "
                f"C={self.num_classes}, M={self.num_teachers})"
            )
        if m is None:
            return k * self.num_classes + c
        return self.natural_images + (k * self.num_teachers + m) * self.num_classes + c

    def pairs(self) -> list[Pair]:
        """Every instance's pairing, in instance order."""
        return [self.pair(i) for i in range(self.instances)]

    def storage(self, channels: int, height: int, width: int, *, soft_labels: bool = True) -> dict[str, float | int]:
        """Stored values (not bytes): natural images, compensators, soft labels (one C-vector per instance),
        their total, the baseline C*IPC*c*H*W and the ratio total/baseline."""
        pixels = channels * height * width
        natural = self.natural_images * pixels
        comp = self.compensators * pixels
        soft = self.instances * self.num_classes if soft_labels else 0
        total = natural + comp + soft
        baseline = self.num_classes * self.ipc * pixels
        return {
            "natural": natural,
            "compensators": comp,
            "soft_labels": soft,
            "total": total,
            "baseline": baseline,
            "ratio": total / baseline,
        }


def infer_budget(ipc: int, num_classes: int, num_teachers: int) -> InferBudget:
    """The :class:`InferBudget` for a run; raises :class:`InferBudgetError` when K = 0."""
    return InferBudget(ipc, num_classes, num_teachers, subsets_for(ipc, num_classes, num_teachers))
