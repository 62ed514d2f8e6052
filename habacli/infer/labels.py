"""Static soft labels: the teacher ensemble's averaged logits on every un-augmented instance.

Instances are ordered natural first, then compensated in (k, m, c) order (see :mod:`habacli.infer.budget`).
A compensated instance is ``clip(natural[k, c] + ufc[k, m])`` in model space, clipped to the pixel range
[0, 1]. The labels are raw logits (temperature 1 inside the teachers); the temperature they are meant to
be used at (INFER: T = 30) is recorded next to them, and the student target is ``softmax(logits / T)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from habacli.errors import ConfigError

__all__ = ["DEFAULT_TEMPERATURE", "ensemble_logits", "expand_instances", "instance_labels", "static_soft_labels"]

DEFAULT_TEMPERATURE = 30.0


def _check(natural: Tensor, ufc: Tensor | None) -> None:
    if natural.dim() != 5:
        raise ConfigError(f"natural images must be [K, C, c, H, W], got shape {list(natural.shape)}")
    if ufc is not None:
        k, _, c, h, w = natural.shape
        if ufc.dim() != 5 or ufc.shape[0] != k or tuple(ufc.shape[2:]) != (c, h, w) or ufc.shape[1] < 1:
            raise ConfigError(
                f"compensators must be [K={k}, M, {c}, {h}, {w}] to fit the natural images, got shape {list(ufc.shape)}"
            )


def expand_instances(natural: Tensor, ufc: Tensor | None, lo: Tensor, hi: Tensor) -> Tensor:
    """Every instance in model space: the K*C natural images, then clip(natural[k, c] + ufc[k, m]) in
    (k, m, c) order -> ``[K*C*(M+1), c, H, W]`` (``[K*C, ...]`` when ``ufc`` is None)."""
    _check(natural, ufc)
    k, n_cls = natural.shape[:2]
    parts = [natural.reshape(k * n_cls, *natural.shape[2:])]
    if ufc is not None:
        comp = natural[:, None] + ufc[:, :, None]  # [K, M, C, c, H, W]
        comp = torch.maximum(torch.minimum(comp, hi.to(comp.device)), lo.to(comp.device))
        parts.append(comp.reshape(-1, *natural.shape[2:]))
    return torch.cat(parts)


def instance_labels(subsets: int, num_classes: int, num_teachers: int, device: torch.device | str = "cpu") -> Tensor:
    """Hard labels of the instances of :func:`expand_instances`."""
    c = torch.arange(num_classes, device=device)
    return c.repeat(subsets * (num_teachers + 1))


@torch.no_grad()
def ensemble_logits(teachers: Sequence[nn.Module], x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Averaged logits of the teachers (eval mode) on ``x`` -> ``[N, num_classes]``."""
    if not teachers:
        raise ConfigError("the soft-label ensemble needs at least one teacher")
    total: Tensor | None = None
    for t in teachers:
        was = t.training
        t.eval()
        out = torch.cat([t(x[i : i + batch_size]).float() for i in range(0, x.shape[0], batch_size)])
        t.train(was)
        total = out if total is None else total + out
    assert total is not None
    return total / len(teachers)


def static_soft_labels(
    teachers: Sequence[nn.Module], natural: Tensor, ufc: Tensor | None, lo: Tensor, hi: Tensor
) -> Tensor:
    """The ensemble's averaged logits on every instance (no augmentation), in instance order."""
    return ensemble_logits(teachers, expand_instances(natural, ufc, lo, hi))
