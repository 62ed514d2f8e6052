"""This machine's compute ceiling, measured in-process, and analytic FLOP counts for networks.

Every benchmark script reports its throughput next to the fp32 matmul rate measured in the same run
(the machine is shared and noisy, so absolute numbers taken at different times don't compare).

    from _peak import measure_matmul_gflops, measure_conv_gflops, module_flops, convnet_flops

FLOP convention: a multiply-add is 2 FLOPs. Only convolutions and linear layers are counted (norms,
activations and pools are memory-bound and small in FLOPs). A training step is counted as 3x the
forward: the backward computes the input gradient and the weight gradient, each about one forward.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn, *, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_matmul_gflops(
    n: int = 2048, dtype: torch.dtype = torch.float32, *, device: str | torch.device = "cpu", repeats: int = 5
) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n x n @ n x n`` matmul (2 n^3 FLOPs)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = _best_seconds(lambda: torch.mm(a, b), repeats=repeats, warmup=1, device=device)
    return 2 * n**3 / sec / 1e9


def measure_conv_gflops(
    batch: int = 256,
    channels: int = 128,
    size: int = 16,
    dtype: torch.dtype = torch.float32,
    *,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    repeats: int = 5,
) -> float:
    """Best-of-``repeats`` GFLOP/s of a 3x3, padding-1 conv ``channels -> channels`` (ConvNet's middle layer)."""
    device = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, size, size, device=device, dtype=dtype).contiguous(memory_format=fmt)
    w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype).contiguous(memory_format=fmt)
    sec = _best_seconds(lambda: F.conv2d(x, w, padding=1), repeats=repeats, warmup=1, device=device)
    return conv2d_flops(channels, channels, 3, size, size) * batch / sec / 1e9


def conv2d_flops(c_in: int, c_out: int, kernel: int, h_out: int, w_out: int, groups: int = 1) -> int:
    """Forward FLOPs of one conv on one image: 2 * MACs."""
    return 2 * (c_in // groups) * kernel * kernel * c_out * h_out * w_out


def module_flops(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs per image of ``net`` (Conv2d and Linear layers), found by one traced forward."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += 2 * (m.in_channels // m.groups) * kh * kw * m.out_channels * out.shape[2] * out.shape[3]

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += 2 * m.in_features * m.out_features

    handles = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            param = next(net.parameters())
            net(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
        net.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def convnet_flops(
    channels: int = 3, height: int = 32, width: int = 32, num_classes: int = 10, *, net_width: int = 128, depth: int = 3
) -> dict[str, int]:
    """Analytic FLOPs per image of ConvNet-``depth`` (instancenorm, avg-pool): forward and training step.

    Mirrors the reference layout: 3x3 convs, padding 3 on a 1-channel first conv, 2x2 pools.
    """
    fwd, c, h, w = 0, channels, height, width
    for d in range(depth):
        pad = 3 if channels == 1 and d == 0 else 1
        h, w = h + 2 * pad - 2, w + 2 * pad - 2
        fwd += conv2d_flops(c, net_width, 3, h, w)
        c = net_width
        if h >= 2 and w >= 2:
            h, w = h // 2, w // 2
    fwd += 2 * c * h * w * num_classes
    return {"forward": fwd, "train_step": 3 * fwd}
