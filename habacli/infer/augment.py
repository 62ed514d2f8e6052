"""Batch augmentations for INFER's teacher and student training, all randomness from a torch.Generator.

``random_crop_flip`` is torchvision's ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip()``
applied per sample to a model-space batch. torchvision pads the *pixel* image with 0 (black) before
normalising, so the pad value here is black in model space, ``-mean/std`` per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def model_black(mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> Tensor:
    """Pixel value 0 in model space, ``[1, c, 1, 1]``."""
    m = torch.tensor(mean, dtype=torch.float32, device=device)
    s = torch.tensor(std, dtype=torch.float32, device=device)
    return (-m / s).view(1, -1, 1, 1)


def valid_range(
    mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Model-space images of pixel range [0, 1]: ``(lo, hi)``, each ``[1, c, 1, 1]``."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (0.0 - m) / s, (1.0 - m) / s


def random_crop_flip(x: Tensor, *, pad: int, flip: bool, fill: Tensor, generator: torch.Generator) -> Tensor:
    """Per-sample random crop of ``x`` [N, c, H, W] out of its ``pad``-padded version (padding ``fill``,
    ``[1, c, 1, 1]``) and, when ``flip``, a horizontal flip with probability 1/2."""
    n, c, h, w = x.shape
    dev = x.device
    gdev = generator.device
    if pad > 0:
        padded = fill.to(dev, x.dtype).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad : pad + h, pad : pad + w] = x
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(dev)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(dev)
        rows = oy[:, None] + torch.arange(h, device=dev)[None, :]  # [n, h]
        cols = ox[:, None] + torch.arange(w, device=dev)[None, :]  # [n, w]
        if flip:
            do = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(dev)
            cols = torch.where(do[:, None], cols.flip(1), cols)
        idx_n = torch.arange(n, device=dev)[:, None, None, None]
        idx_c = torch.arange(c, device=dev)[None, :, None, None]
        return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        do = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(dev)
        return torch.where(do[:, None, None, None], x.flip(3), x)
    return x
