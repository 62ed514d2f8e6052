"""Building blocks shared by the DD network family: norm layers, activations, shape arithmetic.

Norm names follow the DC/MTT/HaBa code: ``instancenorm`` is ``GroupNorm(C, C, affine=True)`` (as
:class:`~habacli.networks.instancenorm.InstanceNorm`, whose double backward is closed-form),
``batchnorm`` is ``BatchNorm2d``, ``layernorm`` is ``LayerNorm([C, H, W])`` (per-element affine),
``groupnorm`` is ``GroupNorm(4, C)`` and ``none`` is no layer at all.
"""

from __future__ import annotations

import torch
from torch import nn

from habacli.errors import ConfigError
from habacli.networks.instancenorm import InstanceNorm

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
POOLINGS = ("avgpooling", "maxpooling", "none")


def norm_layer(kind: str, channels: int, height: int, width: int) -> nn.Module:
    """The norm layer ``kind`` for a ``[channels, height, width]`` feature map (Identity for none)."""
    if kind == "instancenorm":
        return InstanceNorm(channels)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, height, width], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r} (choose from: {', '.join(NORMS)})")


def activation(kind: str) -> nn.Module:
    """ReLU, sigmoid or leaky ReLU (slope 0.01), as in the reference ConvNet."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.01)
    raise ConfigError(f"unknown activation {kind!r} (choose from: {', '.join(ACTIVATIONS)})")


class PrePaddedConv2d(nn.Conv2d):
    """A conv whose padding beyond ``kernel // 2`` is applied as an explicit zero pad of the input.

    Same output and parameters as ``nn.Conv2d(..., padding=kernel // 2 + extra)``, but oneDNN takes its
    fast path: on the CPU a 3x3 conv with padding 3 (the reference's 1-channel first layer) trains about
    3x slower than zero-padding the input by 2 and convolving with padding 1.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int, **kwargs):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2, **kwargs)
        self.extra_padding = padding - kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.extra_padding
        return super().forward(nn.functional.pad(x, (e, e, e, e)))


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2x2/stride-2 average of an even-sized NCHW-contiguous map: row pairs, then column pairs."""
    n, c, h, w = x.shape
    rows = x.view(n, c, h // 2, 2, w)
    rows = (rows[:, :, :, 0] + rows[:, :, :, 1]).view(n, c, h // 2, w // 2, 2)
    return torch.add(rows[..., 0], rows[..., 1]).mul_(0.25)


def _unpool(grad: torch.Tensor) -> torch.Tensor:
    """The pool's adjoint: every pixel of each 2x2 window gets a quarter of its gradient (four strided
    writes of the scaled map, ~1.5-2x faster than broadcast-and-reshape copies)."""
    n, c, h, w = grad.shape
    quarter = grad * 0.25
    out = torch.empty((n, c, 2 * h, 2 * w), dtype=quarter.dtype, device=grad.device)
    windows = out.view(n, c, h, 2, w, 2)
    for i in (0, 1):
        for j in (0, 1):
            windows[:, :, :, i, :, j] = quarter
    return out


class _Pool2x2(torch.autograd.Function):
    """2x2/stride-2 average pool of an even-sized NCHW-contiguous map, as two passes of adds.

    The forward first adds row pairs (whole contiguous rows, so the adds vectorise), then column
    pairs of that half-height map; the backward is its adjoint, :class:`_Unpool2x2`, whose own
    backward is this pool again. Both are linear, so every order of derivative (DC's gradient
    matching, MTT's unroll) is one of these two kernels: 3-5x faster forward and 1.5-2.5x faster
    backward than a single strided pass over the 2x2 window, and the double backward is a pool
    instead of autograd's sums over broadcast dimensions.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _pool(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Unpool2x2.apply(grad)


class _Unpool2x2(torch.autograd.Function):
    """The adjoint of :class:`_Pool2x2` (its backward), differentiable through the pool."""

    @staticmethod
    def forward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _unpool(grad)

    @staticmethod
    def backward(ctx, gg: torch.Tensor) -> torch.Tensor:
        return _Pool2x2.apply(gg.contiguous())


class AvgPool2x2(nn.AvgPool2d):
    """``nn.AvgPool2d(2, 2)``, with a faster CPU path for NCHW maps.

    On the CPU, ATen's NCHW ``avg_pool2d`` is slow: for a 100x128x32x32 map its forward and
    forward+backward take ~12 and ~26 ms against ~3 and ~9 ms for :class:`_Pool2x2`
    (benchmarks/bench_layers.py). Other layouts, devices and odd sizes use the stock kernel. Same
    parameters (none) and state dict.
    """

    def __init__(self) -> None:
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[-1] % 2 == 0
            and x.shape[-2] % 2 == 0
            and x.is_contiguous()
        ):
            return _Pool2x2.apply(x)
        return super().forward(x)


def conv2d(c_in: int, c_out: int, kernel: int, padding: int, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d`` with zero ``padding``; paddings beyond ``kernel // 2`` use :class:`PrePaddedConv2d`."""
    if padding > kernel // 2:
        return PrePaddedConv2d(c_in, c_out, kernel, padding, **kwargs)
    return nn.Conv2d(c_in, c_out, kernel, padding=padding, **kwargs)


def conv_out(size: int, kernel: int, padding: int, stride: int = 1) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def can_pool(height: int, width: int) -> bool:
    """Whether a 2x2/stride-2 pool keeps a non-empty map. Pools that would empty a 1-px axis are
    dropped (the reference networks crash there instead)."""
    return height >= 2 and width >= 2


def check_input(name: str, channels: int, num_classes: int, height: int, width: int) -> None:
    """Reject impossible shapes with a :class:`ConfigError` naming the network."""
    if channels < 1 or num_classes < 1 or height < 1 or width < 1:
        raise ConfigError(
            f"{name}: invalid shape channels={channels} num_classes={num_classes} "
            f"height={height} width={width} (all must be >= 1)"
        )


class DDNet(nn.Module):
    """Base of every network here: ``forward(x) = classifier(embed(x))``.

    Subclasses set ``self.classifier`` and implement :meth:`embed` (features before the classifier,
    flattened to ``[N, feature_dim]``; DM matches means of these).
    """

    feature_dim: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
