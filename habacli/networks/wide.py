"""R ConvNets of one architecture as one wide network: run ``r`` owns the ``r``-th block of channels.

Evaluation trains R independent networks (same architecture, different seeds) on sets of the same
size. Side by side, every layer of a ConvNet maps onto one wider layer that keeps the runs apart:

- a conv of ``C_in -> C_out`` becomes one grouped conv ``R*C_in -> R*C_out`` with ``groups=R`` (run
  ``r``'s filters see only run ``r``'s input channels);
- instance norm (``GroupNorm(C, C)``) becomes ``InstanceNorm(R*C)`` and ``GroupNorm(G, C)`` becomes
  ``GroupNorm(R*G, R*C)``: both normalise within a run's own channels, per image;
- activations and 2x2 pools act per channel, unchanged;
- the classifier becomes R stacked ``[K, F]`` matrices applied with one batched matmul.

So one step of the wide network on ``x [B, R*C_in, H, W]`` (run ``r``'s batch in channel block ``r``)
is R steps of the R networks, and the sum of the R per-run losses has, for each run's parameters,
that run's gradient. :func:`widen` returns ``None`` for any other structure (BatchNorm, LayerNorm,
ResNet, VGG, AlexNet, grouped or strided convs): callers then train the runs one after another.
This module is the one place that decides which networks train batched.

Chosen over ``torch.func.stack_module_state`` + ``vmap(functional_call)`` because vmap cannot run
haba's own autograd Functions (the instance norm with a closed-form double backward, the two-pass
2x2 pool) and, with the stock ops in their place, was slower on the CPU (docs/benchmarks.md,
"Batched evaluation").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from habacli.networks.convnet import ConvNet
from habacli.networks.instancenorm import InstanceNorm
from habacli.networks.layers import AvgPool2x2, PrePaddedConv2d

_STATELESS = (nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.Identity, AvgPool2x2, nn.MaxPool2d, nn.AvgPool2d)


def _cat(mods: Sequence[nn.Module], name: str) -> torch.Tensor:
    """Parameter ``name`` of every module, run after run along dim 0."""
    tensors: list[torch.Tensor] = [getattr(m, name).detach() for m in mods]
    return torch.cat(tensors, dim=0)


def _wide_conv(convs: Sequence[nn.Conv2d]) -> nn.Conv2d | None:
    c0 = convs[0]
    if c0.groups != 1 or c0.stride != (1, 1) or c0.dilation != (1, 1) or c0.padding_mode != "zeros":
        return None
    r, k = len(convs), c0.kernel_size[0]
    if isinstance(c0.padding, str) or c0.kernel_size != (k, k) or c0.padding[0] != c0.padding[1]:
        return None
    pad = int(c0.padding[0])
    bias = c0.bias is not None
    wide: nn.Conv2d
    with torch.random.fork_rng(devices=[]):  # the global RNG is left as it was (weights copied in below)
        if isinstance(c0, PrePaddedConv2d):
            padding = pad + c0.extra_padding
            wide = PrePaddedConv2d(r * c0.in_channels, r * c0.out_channels, k, padding, groups=r, bias=bias)
        elif type(c0) is nn.Conv2d:
            wide = nn.Conv2d(r * c0.in_channels, r * c0.out_channels, k, padding=pad, groups=r, bias=bias)
        else:
            return None
    with torch.no_grad():
        wide.weight.copy_(_cat(convs, "weight"))
        if wide.bias is not None:
            wide.bias.copy_(_cat(convs, "bias"))
    return wide


def _wide_layer(mods: list[nn.Module]) -> nn.Module | None:
    m0, r = mods[0], len(mods)
    if isinstance(m0, nn.Conv2d):
        return _wide_conv([m for m in mods if isinstance(m, nn.Conv2d)])
    if type(m0) in (InstanceNorm, nn.GroupNorm) and isinstance(m0, nn.GroupNorm):
        norm = m0
        if not norm.affine:
            return None
        wide: nn.GroupNorm
        if isinstance(norm, InstanceNorm):
            wide = InstanceNorm(r * norm.num_channels, eps=norm.eps)
        else:
            wide = nn.GroupNorm(r * norm.num_groups, r * norm.num_channels, eps=norm.eps, affine=True)
        with torch.no_grad():
            wide.weight.copy_(_cat(mods, "weight"))
            wide.bias.copy_(_cat(mods, "bias"))
        return wide
    if type(m0) in _STATELESS:
        return m0
    return None


class WideConvNet(nn.Module):
    """R ConvNets side by side (see the module docstring); ``forward(x [B, R*C, H, W]) -> [R, B, K]``."""

    def __init__(self, features: nn.Sequential, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.runs = int(weight.shape[0])
        self.features = features
        self.weight = nn.Parameter(weight)  # [R, K, F]
        self.bias = nn.Parameter(bias)  # [R, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).reshape(x.shape[0], self.runs, -1).transpose(0, 1)  # [R, B, F]
        return torch.baddbmm(self.bias.unsqueeze(1), f, self.weight.transpose(1, 2))


def widen(nets: Sequence[nn.Module]) -> WideConvNet | None:
    """The wide network of ``nets`` (same architecture, their own parameters), or ``None`` when the
    architecture has no wide form here (then train them one after another)."""
    convnets = [n for n in nets if type(n) is ConvNet]
    if not nets or len(convnets) != len(nets):
        return None
    blocks = [list(n.features) for n in convnets]
    if any(len(b) != len(blocks[0]) for b in blocks):
        return None
    layers = []
    for mods in zip(*blocks, strict=True):
        if any(type(m) is not type(mods[0]) for m in mods):
            return None
        wide = _wide_layer(list(mods))
        if wide is None:
            return None
        layers.append(wide)
    heads = [n.classifier for n in convnets]
    if any(h.bias is None for h in heads):
        return None
    weight = torch.stack([h.weight.detach() for h in heads]).clone()
    bias = torch.stack([h.bias.detach() for h in heads]).clone()
    return WideConvNet(nn.Sequential(*layers), weight, bias)
