"""DSA: Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021), vectorised over the batch.

Six op families, each differentiable w.r.t. the pixels (ranges as in DC/DSA/DM/MTT's ``ParamDiffAug``):

- ``color``: brightness ``x + (u - 0.5) * 1.0``, then saturation ``(x - mean_c) * (2u) + mean_c``, then
  contrast ``(x - mean_chw) * (u + 0.5) + mean_chw``;
- ``crop``: translation by an integer in ``[-round(0.125 H), +round(0.125 H)]`` per axis with zero fill
  (1-px zero pad + clamped gather, like the reference);
- ``cutout``: one zero square of side ``round(0.5 H) x round(0.5 W)``;
- ``flip``: horizontal flip with probability 0.5;
- ``scale``: ``sx, sy ~ U(1/1.2, 1.2)`` via ``affine_grid``/``grid_sample`` (``align_corners=True``);
- ``rotate``: angle ``~ U(-15, 15)`` degrees, same sampler.

Mode 'S' (the reference default) picks ONE family per call. Every random number is drawn from the given
generator (a CPU generator gives the same values whatever device ``x`` lives on) and then moved to
``x``'s device. ``dsa(x, g)`` draws independent parameters per sample; ``dsa.siamese([a, b], g)`` draws one
family and one parameter set and applies it to every sample of every tensor (DC/DSA/DM's siamese mode,
without the reference's reseeding of the global RNG).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from habacli._registry import Registry
from habacli.errors import ConfigError

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"

Draws = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DSARanges:
    """The parameter ranges of ``ParamDiffAug`` (DC/DSA/DM/MTT/HaBa defaults)."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob_flip <= 1.0:
            raise ConfigError(f"DSA prob_flip must be in [0, 1], got {self.prob_flip}")
        if self.ratio_scale < 1.0:
            raise ConfigError(f"DSA ratio_scale must be >= 1, got {self.ratio_scale}")
        if not 0.0 <= self.ratio_crop_pad < 1.0 or not 0.0 <= self.ratio_cutout <= 1.0:
            raise ConfigError("DSA ratio_crop_pad must be in [0, 1) and ratio_cutout in [0, 1]")
        if min(self.ratio_rotate, self.brightness, self.saturation, self.contrast) < 0:
            raise ConfigError("DSA ratio_rotate, brightness, saturation and contrast must be >= 0")


@dataclass(frozen=True)
class _Op:
    """One op family: ``sample(n, H, W, ranges, generator) -> draws`` and ``apply(x, draws, ranges)``.

    Draws have a leading dimension of ``n`` (per sample) or 1 (siamese: broadcast over the batch).
    """

    sample: Callable[[int, int, int, DSARanges, torch.Generator | None], Draws]
    apply: Callable[[torch.Tensor, Draws, DSARanges], torch.Tensor]


OPS: Registry[_Op] = Registry("DSA op")


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else "cpu"
    return torch.rand(n, generator=generator, device=device)


def _randint(low: int, high: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Integers in ``[low, high)``."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(low, high, (n,), generator=generator, device=device)


def _on(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample draw ``[n]`` as ``[n, 1, 1, 1]`` on ``x``'s device and dtype."""
    return t.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


# --- color: brightness -> saturation -> contrast ------------------------------------------------
def _color_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    return {"brightness": _rand(n, g), "saturation": _rand(n, g), "contrast": _rand(n, g)}


def _color_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    """Brightness, then saturation, then contrast, folded into one affine map of ``x`` and its channel mean.

    With shift ``b``, saturation factor ``s`` and contrast factor ``k``, the reference's sequence
    ``x1 = x + b; x2 = (x1 - mean_c x1) s + mean_c x1; x3 = (x2 - mean_chw x2) k + mean_chw x2`` equals
    ``k s x + k (1 - s) mean_c x + (1 - k) mean_chw x + b`` exactly (mean_c of ``x - mean_c x`` is 0), which
    needs one reduction instead of two and keeps far fewer tensors for the backward pass.
    """
    b = (_on(d["brightness"], x) - 0.5) * r.brightness
    s = _on(d["saturation"], x) * r.saturation
    k = _on(d["contrast"], x) + r.contrast
    mean_c = x.mean(dim=1, keepdim=True)  # [N, 1, H, W]
    mean_chw = mean_c.mean(dim=(2, 3), keepdim=True)  # [N, 1, 1, 1]
    return x * (k * s) + mean_c * (k * (1 - s)) + (mean_chw * (1 - k) + b)


# --- crop: integer translation with zero fill ----------------------------------------------------
def _shift(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def _crop_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    sh, sw = _shift(h, r.ratio_crop_pad), _shift(w, r.ratio_crop_pad)
    return {"tx": _randint(-sh, sh + 1, n, g), "ty": _randint(-sw, sw + 1, n, g)}


def _crop_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    n, c, h, w = x.shape
    tx, ty = d["tx"].to(x.device), d["ty"].to(x.device)
    rows = (torch.arange(h, device=x.device) + tx[:, None] + 1).clamp(0, h + 1)  # [m, H]
    cols = (torch.arange(w, device=x.device) + ty[:, None] + 1).clamp(0, w + 1)  # [m, W]
    index = (rows[:, :, None] * (w + 2) + cols[:, None, :]).view(-1, 1, h * w).expand(n, c, h * w)
    padded = F.pad(x, (1, 1, 1, 1)).reshape(n, c, (h + 2) * (w + 2))
    return padded.gather(2, index).view(n, c, h, w)


# --- cutout: one zero square ---------------------------------------------------------------------
def _cutout_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    ch, cw = _shift(h, r.ratio_cutout), _shift(w, r.ratio_cutout)
    return {"ox": _randint(0, h + (1 - ch % 2), n, g), "oy": _randint(0, w + (1 - cw % 2), n, g)}


def _cutout_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    _, _, h, w = x.shape
    ch, cw = _shift(h, r.ratio_cutout), _shift(w, r.ratio_cutout)
    lo_x = (d["ox"].to(x.device) - ch // 2)[:, None]
    lo_y = (d["oy"].to(x.device) - cw // 2)[:, None]
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_x = (rows >= lo_x) & (rows < lo_x + ch)  # [m, H]
    in_y = (cols >= lo_y) & (cols < lo_y + cw)  # [m, W]
    keep = ~(in_x[:, :, None] & in_y[:, None, :])
    return x * keep[:, None].to(x.dtype)


# --- flip ------------------------------------------------------------------------------------------
def _flip_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    return {"u": _rand(n, g)}


def _flip_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    flip = (d["u"] < r.prob_flip).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


# --- scale and rotate: one batched affine_grid + grid_sample -------------------------------------
def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.to(device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _scale_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    lo = 1.0 / r.ratio_scale
    return {"sx": _rand(n, g) * (r.ratio_scale - lo) + lo, "sy": _rand(n, g) * (r.ratio_scale - lo) + lo}


def _scale_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    zero = torch.zeros_like(d["sx"])
    theta = torch.stack([d["sx"], zero, zero, zero, d["sy"], zero], dim=1).view(-1, 2, 3)
    return _affine(x, theta)


def _rotate_sample(n: int, h: int, w: int, r: DSARanges, g: torch.Generator | None) -> Draws:
    return {"angle": (_rand(n, g) - 0.5) * 2 * r.ratio_rotate / 180 * math.pi}


def _rotate_apply(x: torch.Tensor, d: Draws, r: DSARanges) -> torch.Tensor:
    a = d["angle"]
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(-1, 2, 3)
    return _affine(x, theta)


OPS.add("color", _Op(_color_sample, _color_apply))
OPS.add("crop", _Op(_crop_sample, _crop_apply))
OPS.add("cutout", _Op(_cutout_sample, _cutout_apply))
OPS.add("flip", _Op(_flip_sample, _flip_apply))
OPS.add("scale", _Op(_scale_sample, _scale_apply))
OPS.add("rotate", _Op(_rotate_sample, _rotate_apply))


class DSA:
    """Differentiable siamese augmentation with a fixed strategy (``"none"`` = identity).

    ``mode="S"`` (default, as the reference) applies one randomly chosen family per call;
    ``mode="M"`` applies every family of the strategy in sequence.
    """

    def __init__(self, strategy: str = DEFAULT_STRATEGY, *, mode: str = "S", **ranges: float):
        if mode not in ("S", "M"):
            raise ConfigError(f"DSA mode must be 'S' or 'M', got {mode!r}")
        unknown = set(ranges) - set(DSARanges.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown DSA parameter(s) {', '.join(sorted(unknown))} "
                f"(choose from: {', '.join(DSARanges.__dataclass_fields__)})"
            )
        strategy = (strategy or "none").strip().lower()
        families = () if strategy == "none" else tuple(strategy.split("_"))
        for name in families:
            OPS.get(name)  # raises UnknownNameError with suggestions
        self.strategy = "_".join(families) or "none"
        self.families: tuple[str, ...] = families
        self.mode = mode
        self.ranges = DSARanges(**ranges)

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r}, mode={self.mode!r})"

    def config(self) -> dict[str, Any]:
        """A JSON-able description (strategy, mode, ranges) for artifacts and logs."""
        return {"strategy": self.strategy, "mode": self.mode, **asdict(self.ranges)}

    def _chosen(self, generator: torch.Generator | None) -> tuple[str, ...]:
        if self.mode == "M" or len(self.families) <= 1:
            return self.families
        return (self.families[int(_randint(0, len(self.families), 1, generator).item())],)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x [N, C, H, W]`` with independent random parameters per sample."""
        if x.dim() != 4:
            raise ConfigError(f"DSA expects a [N, C, H, W] batch, got shape {tuple(x.shape)}")
        for name in self._chosen(generator):
            op = OPS.get(name)
            x = op.apply(x, op.sample(x.shape[0], x.shape[2], x.shape[3], self.ranges, generator), self.ranges)
        return x

    def siamese(self, xs: Sequence[torch.Tensor], generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Apply ONE family and ONE parameter set to every sample of every tensor in ``xs``."""
        xs = list(xs)
        if not xs:
            return []
        shapes = {tuple(x.shape[2:]) for x in xs}
        if any(x.dim() != 4 for x in xs) or len(shapes) != 1:
            got = [tuple(x.shape) for x in xs]
            raise ConfigError(f"DSA siamese expects [N, C, H, W] batches of one image size, got {got}")
        h, w = shapes.pop()
        for name in self._chosen(generator):
            op = OPS.get(name)
            draws = op.sample(1, h, w, self.ranges, generator)
            xs = [op.apply(x, draws, self.ranges) for x in xs]
        return xs


def dsa_for(spec: Any, strategy: str = DEFAULT_STRATEGY, **ranges: float) -> DSA:
    """The DSA for a dataset: ``flip`` is dropped when ``spec.flip`` is False (digits, as in the DSA README)."""
    if not getattr(spec, "flip", True):
        families = [f for f in (strategy or "none").lower().split("_") if f != "flip"]
        strategy = "_".join(families) or "none"
    return DSA(strategy, **ranges)
