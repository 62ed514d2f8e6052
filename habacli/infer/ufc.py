"""Universal feature compensators (UFCs), optimised as INFER's official CIFAR code does.

For natural subset ``k`` (one real image per class, ``[C, c, H, W]``, model space) and teacher ``m``, a
UFC ``u`` (``[1, c, H, W]``, initialised to 0) is optimised with Adam (lr 0.25, betas (0.5, 0.9)) under
a cosine schedule (no warm-up) to minimise

    CE(f_m(roll(clip(x + u))), y) + r_bn * sum_l w_l * (||var_l - running_var_l||_2 + ||mean_l - running_mean_l||_2)

over all C images of the subset in one batch, ``y`` each image's own class. ``roll`` shifts the batch by
(dy, dx) ~ U{0..jitter}^2 (``torch.roll`` on H and W); the BatchNorm terms use the batch statistics of the
input of every ``BatchNorm2d`` of the (frozen, eval-mode) teacher, weighted 10 for the first layer and 1
for the others. ``clip`` keeps the model-space image inside the pixel range [0, 1]; the official loop does
not clip the optimised input (only the saved image), haba clips inside the loop too (``clip_in_loop``) so
that the teacher is trained against the instances that are stored. Every random draw comes from a
per-UFC generator derived from the run's generator, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Self

import torch
from torch import Tensor, nn

from habacli.data import RealData
from habacli.errors import ConfigError
from habacli.runtime.progress import Progress, ProgressFn

__all__ = ["BNStatistics", "UFCConfig", "draw_subsets", "train_ufc", "train_ufcs", "ufc_objective", "ufc_seeds"]


@dataclass(frozen=True)
class UFCConfig:
    iterations: int = 1000
    lr: float = 0.25
    betas: tuple[float, float] = (0.5, 0.9)
    r_bn: float = 1.0
    first_bn_multiplier: float = 10.0
    jitter: int = 4
    clip_in_loop: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.lr <= 0 or self.r_bn < 0 or self.jitter < 0 or self.first_bn_multiplier < 0:
            raise ConfigError(
                f"invalid UFC settings: iterations={self.iterations}, lr={self.lr}, r_bn={self.r_bn}, "
                f"jitter={self.jitter}, first_bn_multiplier={self.first_bn_multiplier}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


class BNStatistics:
    """Forward hooks on every BatchNorm2d of ``model``: after a forward pass, :meth:`loss` is
    ``sum_l w_l (||var_l - running_var_l||_2 + ||mean_l - running_mean_l||_2)``."""

    def __init__(self, model: nn.Module, first_multiplier: float = 10.0):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ConfigError("the teacher has no BatchNorm2d layer")
        self.first_multiplier = first_multiplier
        self.terms: list[Tensor | None] = [None] * len(self.layers)
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]

    def _hook(self, i: int) -> Callable:
        def hook(module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0]
            mean = x.mean(dim=(0, 2, 3))
            var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
            assert module.running_var is not None and module.running_mean is not None  # teachers track stats
            self.terms[i] = torch.norm(module.running_var - var, 2) + torch.norm(module.running_mean - mean, 2)

        return hook

    def loss(self) -> Tensor:
        terms = [t for t in self.terms if t is not None]
        if len(terms) != len(self.terms):
            raise RuntimeError("BNStatistics.loss() before a forward pass")
        weights = [self.first_multiplier] + [1.0] * (len(terms) - 1)
        return torch.stack([t * w for t, w in zip(terms, weights)]).sum()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def draw_subsets(real: RealData, subsets: int, generator: torch.Generator) -> Tensor:
    """K natural subsets of one real image per class, drawn without replacement (within each class,
    across subsets) -> ``[K, C, c, H, W]`` model space. ``real`` is a :class:`habacli.data.RealData`."""
    num_classes = real.num_classes
    per_class = []
    for c in range(num_classes):
        pool = real.class_indices(c)
        if pool.shape[0] < subsets:
            raise ConfigError(f"class {c} has {pool.shape[0]} images, INFER needs {subsets} (one per subset)")
        pick = torch.randperm(pool.shape[0], generator=generator, device=generator.device)[:subsets]
        per_class.append(real.images_model(pool[pick.to(pool.device)]))  # [K, c, H, W]
    return torch.stack(per_class, dim=1).contiguous()  # [K, C, c, H, W]


def ufc_seeds(generator: torch.Generator, subsets: int, teachers: int) -> list[list[int]]:
    """One seed per (k, m), drawn once from the run's generator (a resumed run draws the same ones)."""
    s = torch.randint(0, 2**62, (subsets, teachers), generator=generator, device=generator.device)
    return s.tolist()


def _clip(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return torch.maximum(torch.minimum(x, hi), lo)


def ufc_objective(
    teacher: nn.Module, stats: BNStatistics, x: Tensor, y: Tensor, *, r_bn: float, shift: tuple[int, int] = (0, 0)
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, ce, bn)`` of the teacher on ``x`` rolled by ``shift``."""
    if shift != (0, 0):
        x = torch.roll(x, shifts=shift, dims=(2, 3))
    ce = nn.functional.cross_entropy(teacher(x), y)
    bn = stats.loss()
    return ce + r_bn * bn, ce, bn


def train_ufc(
    teacher: nn.Module, natural: Tensor, *, config: UFCConfig, lo: Tensor, hi: Tensor, seed: int
) -> tuple[Tensor, dict[str, float]]:
    """Optimise one UFC for the subset ``natural`` ``[C, c, H, W]`` against ``teacher`` (eval mode,
    frozen). Returns ``u`` ``[1, c, H, W]`` and the un-jittered objective before and after."""
    if natural.dim() != 4:
        raise ConfigError(f"a natural subset must be [C, c, H, W], got shape {list(natural.shape)}")
    dev = natural.device
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    y = torch.arange(natural.shape[0], device=dev)
    g = torch.Generator().manual_seed(int(seed))
    u = torch.zeros((1, *natural.shape[1:]), device=dev, requires_grad=True)
    opt = torch.optim.Adam([u], lr=config.lr, betas=config.betas, eps=1e-8)
    steps = config.iterations
    with BNStatistics(teacher, config.first_bn_multiplier) as stats:
        with torch.no_grad():
            before = [float(v) for v in ufc_objective(teacher, stats, _clip(natural, lo, hi), y, r_bn=config.r_bn)]
        if steps:
            shifts = torch.randint(0, config.jitter + 1, (steps, 2), generator=g).tolist()
        for it in range(steps):
            for group in opt.param_groups:
                group["lr"] = 0.5 * (1.0 + math.cos(math.pi * it / steps)) * config.lr
            x = natural + u
            if config.clip_in_loop:
                x = _clip(x, lo, hi)
            loss, _, _ = ufc_objective(teacher, stats, x, y, r_bn=config.r_bn, shift=tuple(shifts[it]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = [float(v) for v in ufc_objective(teacher, stats, _clip(natural + u, lo, hi), y, r_bn=config.r_bn)]
    info = {
        "loss_before": before[0],
        "ce_before": before[1],
        "bn_before": before[2],
        "loss_after": after[0],
        "ce_after": after[1],
        "bn_after": after[2],
    }
    return u.detach(), info


def train_ufcs(
    teachers: Sequence[nn.Module],
    natural: Tensor,
    *,
    config: UFCConfig,
    lo: Tensor,
    hi: Tensor,
    generator: torch.Generator,
    done: Mapping[tuple[int, int], Tensor] | None = None,
    on_ufc: Callable[[int, int, Tensor, dict[str, float]], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Tensor, dict[tuple[int, int], dict]]:
    """All K*M UFCs for ``natural`` ``[K, C, c, H, W]`` -> ``[K, M, c, H, W]`` and per-UFC info.

    ``done`` maps finished ``(k, m)`` to their UFC (resume); ``on_ufc(k, m, u, info)`` is called after each
    newly trained UFC (checkpoint there); ``progress`` gets one :class:`Progress` event (``ufc``, description
    ``UFCs``) after each UFC."""
    if natural.dim() != 5:
        raise ConfigError(f"natural subsets must be [K, C, c, H, W], got shape {list(natural.shape)}")
    k_sub, m_t = natural.shape[0], len(teachers)
    seeds = ufc_seeds(generator, k_sub, m_t)
    out = torch.zeros((k_sub, m_t, *natural.shape[2:]), device=natural.device)
    infos: dict[tuple[int, int], dict] = {}
    done = dict(done or {})
    total, count = k_sub * m_t, 0
    for k in range(k_sub):
        for m in range(m_t):
            if (k, m) in done:
                u = done[(k, m)].to(natural.device).reshape(1, *natural.shape[2:])
                infos[(k, m)] = {"resumed": True}
            else:
                u, info = train_ufc(teachers[m], natural[k], config=config, lo=lo, hi=hi, seed=seeds[k][m])
                infos[(k, m)] = info
                if on_ufc is not None:
                    on_ufc(k, m, u, info)
            out[k, m] = u[0]
            count += 1
            if progress is not None:
                stats = {"loss": infos[(k, m)]["loss_after"]} if "loss_after" in infos[(k, m)] else {}
                progress(
                    Progress(
                        "ufc",
                        "UFCs",
                        count,
                        total,
                        stats=stats,
                        message=f"subset {k + 1}/{k_sub} teacher {m + 1}/{m_t}",
                    )
                )
    return out, infos
