"""Student training as INFER evaluates a set (``ufc_validation/val_static.py``).

Per epoch the instances are shuffled into batches of 64 (the last batch may be smaller); every batch gets
RandomCrop(pad 4, black padding) + horizontal flip (no flip for datasets whose spec says ``flip=False``),
then MixUp: ``lambda ~ Beta(0.8, 0.8)`` per batch, an in-batch permutation ``p``, inputs
``lambda*x + (1-lambda)*x[p]`` and targets ``lambda*s + (1-lambda)*s[p]``, the linear interpolation of the
stored logits. Loss: ``KL(log_softmax(z/T) || softmax(target/T))`` with ``batchmean`` reduction and
T = 30, **without** the T^2 factor of classic distillation (the official code has none either); AdamW lr
1e-3, wd 0.01, cosine over the epochs (stepped per epoch), 400 epochs. The number reported is the last
epoch's test accuracy (the official code reports the best test accuracy seen while training).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from habacli.errors import ConfigError
from habacli.infer.augment import model_black, random_crop_flip
from habacli.networks import get_network
from habacli.runtime.progress import Progress, ProgressFn

__all__ = ["InferRecipe", "StudentResult", "mixup_batch", "soft_kl_loss", "train_student"]


@dataclass(frozen=True)
class InferRecipe:
    """The evaluation recipe an INFER artifact asks for (format 1.2 ``evaluation_recipe``)."""

    label_mode: str = "soft"  # "soft": stored soft labels; "hard": cross-entropy on hard labels
    loss: str = "kl"
    temperature: float = 30.0
    temperature_squared: bool = False  # multiply the KL by T^2 (classic KD); INFER: no
    mixup_alpha: float = 0.8
    soft_label_mixing: str = "linear"
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    epochs: int = 400
    batch_size: int = 64
    augmentations: tuple[str, ...] = ("random_crop(pad=4)", "hflip")
    reported: str = "final_epoch"

    def __post_init__(self) -> None:
        if self.label_mode not in ("soft", "hard"):
            raise ConfigError(f"label_mode must be 'soft' or 'hard', got {self.label_mode!r}")
        if self.loss not in ("kl", "ce"):
            raise ConfigError(f"loss must be 'kl' or 'ce', got {self.loss!r}")
        if self.optimizer != "adamw" or self.schedule != "cosine" or self.soft_label_mixing != "linear":
            raise ConfigError("the INFER recipe supports optimizer 'adamw', schedule 'cosine', mixing 'linear' only")
        if (
            self.epochs < 1
            or self.batch_size < 1
            or self.lr <= 0
            or self.weight_decay < 0
            or self.temperature <= 0
            or self.mixup_alpha < 0
        ):
            raise ConfigError(
                f"invalid INFER recipe: epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}, "
                f"weight_decay={self.weight_decay}, temperature={self.temperature}, "
                f"mixup_alpha={self.mixup_alpha}"
            )
        unknown = [a for a in self.augmentations if a not in ("random_crop(pad=4)", "hflip")]
        if unknown:
            raise ConfigError(f"unknown augmentation(s) {', '.join(unknown)} (known: random_crop(pad=4), hflip)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augmentations"] = list(self.augmentations)
        return d


@dataclass
class StudentResult:
    accuracy: float  # final epoch's test accuracy in [0, 1]
    seconds: float
    epochs: int
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch


def soft_kl_loss(student_logits: Tensor, target_logits: Tensor, temperature: float, *, squared: bool = False) -> Tensor:
    """``KL(softmax(target/T) || softmax(student/T))`` as ``KLDivLoss(batchmean)`` computes it (times T^2
    when ``squared``)."""
    log_p = nn.functional.log_softmax(student_logits / temperature, dim=1)
    q = nn.functional.softmax(target_logits / temperature, dim=1)
    loss = nn.functional.kl_div(log_p, q, reduction="batchmean")
    return loss * temperature**2 if squared else loss


def mixup_batch(x: Tensor, target: Tensor, lam: float, perm: Tensor) -> tuple[Tensor, Tensor]:
    """MixUp of inputs and of the (logit or one-hot) targets with the same ``lam`` and permutation."""
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def train_student(
    x: Tensor,
    y: Tensor,
    soft_labels: Tensor | None,
    *,
    test: tuple[Tensor, Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
    recipe: InferRecipe = InferRecipe(),
    network: str = "convnet",
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    description: str = "student",
) -> StudentResult:
    """Train a fresh ``network`` on model-space instances ``x`` (hard labels ``y``, stored ``soft_labels``
    ``[N, C]`` logits) with ``recipe``; return the final epoch's accuracy on ``test``."""
    device = torch.device(device)
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise ConfigError(f"instances must be [N, c, H, W] with N labels, got {list(x.shape)} and {list(y.shape)}")
    xt, yt = test
    num_classes = int(max(int(y.max()), int(yt.max())) + 1)
    if soft_labels is not None:
        num_classes = soft_labels.shape[1] if soft_labels.dim() == 2 else num_classes
        if soft_labels.dim() != 2 or soft_labels.shape[0] != x.shape[0]:
            raise ConfigError(f"soft labels must be [{x.shape[0]}, C], got shape {list(soft_labels.shape)}")
    if recipe.label_mode == "soft" and soft_labels is None:
        raise ConfigError("the soft-label recipe needs soft labels")
    x, y = x.to(device), y.to(device)
    targets = soft_labels.to(device).float() if recipe.label_mode == "soft" and soft_labels is not None else None
    net = get_network(
        network, channels=x.shape[1], num_classes=num_classes, height=x.shape[2], width=x.shape[3], generator=generator
    ).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    fill = model_black(mean, std, device)
    do_crop = "random_crop(pad=4)" in recipe.augmentations
    do_flip = flip and "hflip" in recipe.augmentations
    np_rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator).item()))
    n = x.shape[0]
    losses: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(recipe.epochs):
        for g in opt.param_groups:  # CosineAnnealingLR(T_max=epochs), stepped per epoch
            g["lr"] = 0.5 * recipe.lr * (1 + math.cos(math.pi * epoch / recipe.epochs))
        net.train()
        order = torch.randperm(n, generator=generator).to(device)
        total, batches = 0.0, 0
        for i in range(0, n, recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            xb = random_crop_flip(x[idx], pad=4 if do_crop else 0, flip=do_flip, fill=fill, generator=generator)
            if targets is not None:
                tb = targets[idx]
            else:
                tb = nn.functional.one_hot(y[idx], num_classes).float()
            if recipe.mixup_alpha > 0:
                lam = float(np_rng.beta(recipe.mixup_alpha, recipe.mixup_alpha))
                perm = torch.randperm(idx.numel(), generator=generator).to(device)
                xb, tb = mixup_batch(xb, tb, lam, perm)
            out = net(xb)
            if recipe.label_mode == "soft":
                loss = soft_kl_loss(out, tb, recipe.temperature, squared=recipe.temperature_squared)
            else:
                loss = -(tb * nn.functional.log_softmax(out, dim=1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(1, batches))
        if progress is not None:
            progress(Progress("epoch", description, epoch + 1, recipe.epochs, stats={"loss": losses[-1]}))
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, xt.shape[0], 1000):
            correct += int((net(xt[i : i + 1000].to(device)).argmax(1) == yt[i : i + 1000].to(device)).sum())
    return StudentResult(correct / xt.shape[0], time.perf_counter() - t0, recipe.epochs, losses)
