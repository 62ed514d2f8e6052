"""Instance norm (``GroupNorm(C, C)``) with a closed-form double backward.

The DD networks normalise every channel of every image on its own (the reference's ``instancenorm``).
PyTorch's GroupNorm has fast fused kernels for the forward and the backward, but its *double*
backward, which MTT's unrolled student steps and DC's gradient matching differentiate through, is a
composite of many full-size element-wise ops: about 38 % of an unrolled MTT iteration on the CPU.

:class:`InstanceNorm` computes the same function with the same kernels forward and backward, and
differentiates the backward with the closed form below (per image and channel, over its M pixels;
``mean`` is over the pixels, ``x^ = (x - mu) r`` with ``r = 1/sqrt(var + eps)``). The backward is

    dx = g r (dy - mean(dy) - x^ mean(dy x^)),   dgamma = sum dy x^,   dbeta = sum dy.

Writing ``P(v) = r (v - mean(v) - x^ mean(v x^))`` for the pullback of the normalisation and
``u = dx / (g r)``, its derivative for upstream gradients (Gx, Gg, Gb) on (dx, dgamma, dbeta) is

    d/d dy    = Gb + Gg x^ + g P(Gx)
    d/d gamma = sum r Gx u
    d/d x     = P(Gg dy - g r (mean(dy x^) Gx + mean(Gx x^) dy)) - g r^2 x^ mean(Gx u)

(derivation in docs/architecture.md; checked against autograd by ``gradgradcheck`` in float64 in
tests/test_networks.py). Third derivatives are not provided.

Channels-last (NHWC) maps on the CPU take their own forward and backward. ATen's NHWC GroupNorm
kernel parallelises over (image, group) when a map has fewer than 1024 pixels; with one channel per
group every access is then strided, and a 16x16 bf16 map normalises ~15-50x slower than in NCHW (its
NHWC backward is slow at every size). From 1024 pixels on, its forward takes E[x^2] - E[x]^2 in
float32 without a shift: a 32x32 map with mean 1000 and unit spread comes out wrong by ~1000 (torch
2.14, tested). Here an NHWC map is an [N, HW, C] view and every statistic is a sum over its middle
axis around a shift, which vectorises along C. The no-grad test pass uses it to keep bf16
convolutions in NHWC, the layout oneDNN's AMX kernels read (docs/benchmarks.md, "Layers").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def _stats(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x^`` (one pass over ``x``) and ``r`` broadcastable against ``x`` ([N, C, 1, 1])."""
    n, c = x.shape[:2]
    shape = (n, c) + (1,) * (x.dim() - 2)
    r = rstd.view(shape)
    return torch.addcmul(-mean.view(shape) * r, x, r), r


def _pixel_mean(v: torch.Tensor) -> torch.Tensor:
    return v.mean(dim=tuple(range(2, v.dim())), keepdim=True)


def _pixel_dot_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean(a * b)`` over the pixels of each (image, channel)."""
    return (a * b).mean(dim=tuple(range(2, a.dim())), keepdim=True)


def _channel_sum(v: torch.Tensor) -> torch.Tensor:
    return v.sum(dim=(0,) + tuple(range(2, v.dim())))


def is_nhwc(x: torch.Tensor) -> bool:
    """Whether ``x`` is a 4-d channels-last map on the CPU (and not also NCHW-contiguous, as 1x1 maps
    are). CUDA maps keep the stock kernels, which were never timed against these here."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """The [N, HW, C] view of a channels-last map (no copy)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _acc(x: torch.Tensor) -> torch.dtype:
    """The statistics' dtype: float64 for float64 maps, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _nhwc_moments(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (image, channel) mean and 1/sqrt(var + eps) of a channels-last map, [N, C], float32 (float64
    for float64 maps).

    One pass of sums around a per-(image, channel) shift (the first pixel), so E[d^2] - E[d]^2 does
    not cancel when the mean is large against the spread.
    """
    v = _pixels(x)
    m = v.shape[1]
    shift = v[:, :1].to(_acc(x))
    d = v - shift
    mu = d.sum(1) / m
    var = (d.mul_(d).sum(1) / m).sub_(mu * mu).clamp_min_(0)
    return mu.add_(shift.squeeze(1)), var.add_(eps).rsqrt_()


def _nhwc_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` per (image, channel) ([N, C] float32) into a new map of ``x``'s dtype and
    layout, computed in float32 and rounded once."""
    out = torch.empty_like(x)
    torch.addcmul(shift.unsqueeze(1), _pixels(x), scale.unsqueeze(1), out=_pixels(out))
    return out


def nhwc_instance_norm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance norm of a channels-last map: ``(y, mean, rstd)`` like ``torch.native_group_norm``."""
    mean, rstd = _nhwc_moments(x, eps)
    scale = gamma.to(rstd.dtype) * rstd
    return _nhwc_affine(x, scale, beta.to(rstd.dtype) - mean * scale), mean, rstd


def _nhwc_backward(
    dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``native_group_norm_backward`` for channels-last maps: dx = g r (dy - mean(dy) - x^ mean(dy x^))."""
    v, g = _pixels(x), _pixels(dy)
    m = v.shape[1]
    xhat = torch.addcmul((-mean * rstd).unsqueeze(1), v, rstd.unsqueeze(1))  # float32 [N, HW, C]
    s_dy = g.sum(1, dtype=rstd.dtype)
    s_dyx = (g * xhat).sum(1)
    a = gamma.to(rstd.dtype) * rstd
    xhat.mul_((-a * s_dyx / m).unsqueeze(1)).add_((-a * s_dy / m).unsqueeze(1))
    dx = torch.empty_like(x)
    torch.addcmul(xhat, g, a.unsqueeze(1), out=_pixels(dx))
    return dx, s_dyx.sum(0).to(gamma.dtype), s_dy.sum(0).to(gamma.dtype)


def _closed_form(
    dy: torch.Tensor,
    x: torch.Tensor,
    gdx: torch.Tensor,
    gamma: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    gdgamma: torch.Tensor,
    gdbeta: torch.Tensor,
    need: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """The double backward (module docstring): gradients on (dy, x, gamma) for upstream gradients
    (gdx, gdgamma, gdbeta), those flagged in ``need``; full-size results in dy's and x's dtypes.

    Every full-size result is a per-(image, channel) affine combination of dy, Gx, x^ and 1, so the
    work is five pixel means (three of products) and five fused multiply-adds. bf16 activations with
    fp32 statistics are upcast once, then everything is fp32.
    """
    dtype_dy, dtype_x = dy.dtype, x.dtype
    if x.dtype != mean.dtype:
        dy, x, gdx = dy.to(mean.dtype), x.to(mean.dtype), gdx.to(mean.dtype)
    xhat, r = _stats(x, mean, rstd)
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    gr = gamma.view(shape) * r
    gg, gb = gdgamma.view(shape), gdbeta.view(shape)
    m_dy, m_dyx = _pixel_mean(dy), _pixel_dot_mean(dy, xhat)
    m_g, m_gx = _pixel_mean(gdx), _pixel_dot_mean(gdx, xhat)
    m_gu = _pixel_dot_mean(gdx, dy) - m_dy * m_g - m_gx * m_dyx  # mean(Gx u)
    grad_dy = grad_x = grad_gamma = None
    if need[0]:  # Gb + Gg x^ + g r (Gx - mean Gx - x^ mean(Gx x^))
        grad_dy = torch.addcmul(gb - gr * m_g, xhat, gg - gr * m_gx).addcmul_(gdx, gr).to(dtype_dy)
    if need[1]:  # v = a1 dy + a2 Gx;  P(v) - g r^2 x^ mean(Gx u)
        a1, a2 = gg - gr * m_gx, -gr * m_dyx
        m_v, m_vx = a1 * m_dy + a2 * m_g, a1 * m_dyx + a2 * m_gx
        grad_x = (
            torch.addcmul(-r * m_v, xhat, -r * (m_vx + gr * m_gu))
            .addcmul_(dy, r * a1)
            .addcmul_(gdx, r * a2)
            .to(dtype_x)
        )
    if need[2]:  # sum over images and pixels of r Gx u
        grad_gamma = _channel_sum(r * m_gu) * x[0, 0].numel()
    return grad_dy, grad_x, grad_gamma


_fused_state = {"enabled": False, "kernel": None}


@contextlib.contextmanager
def fused_double_backward(enabled: bool = True) -> Iterator[None]:
    """Within this context, instance norms that autograd records on the CPU differentiate their
    backward with the closed form compiled by ``torch.compile`` into a few fused loops (4-10x faster
    than the eager ops; benchmarks/bench_layers.py). The choice is made when the forward runs and
    holds for that graph's double backward wherever it runs. Needs what ``--compile`` needs (a C++
    compiler); the first call per shape compiles for a few seconds, then inductor's cache serves it.
    CUDA maps keep the eager closed form (never timed here)."""
    before = _fused_state["enabled"]
    _fused_state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _fused_state["enabled"] = before


def _fused(*args: Any) -> tuple[torch.Tensor | None, ...]:
    """:func:`_closed_form` through its compiled kernel; if inductor cannot build or run it (no
    compiler, an unsupported mode), warn once and stay eager for the rest of the process."""
    if _fused_state["kernel"] is None:
        _fused_state["kernel"] = torch.compile(_closed_form, fullgraph=True)
    if _fused_state["kernel"] is not False:
        try:
            return _fused_state["kernel"](*args)
        except Exception as e:  # noqa: BLE001 - any compile failure leaves the eager closed form, same values
            _fused_state["kernel"] = False
            warnings.warn(
                f"--compile: the fused instance-norm double backward is unavailable ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); using the eager closed form",
                stacklevel=2,
            )
    return _closed_form(*args)


class _InstanceNormBackward(torch.autograd.Function):
    """The backward of instance norm as a function of (dy, x, gamma), with its own closed-form backward."""

    @staticmethod
    def forward(ctx, dy, x, gamma, mean, rstd, fused):
        if is_nhwc(x):
            dx, dgamma, dbeta = _nhwc_backward(dy, x, gamma, mean, rstd)
        else:
            n, c = x.shape[:2]
            hw = x[0, 0].numel()
            dx, dgamma, dbeta = torch.ops.aten.native_group_norm_backward(
                dy, x, mean, rstd, gamma, n, c, hw, c, [True, True, True]
            )
        ctx.save_for_backward(dy, x, gamma, mean, rstd)
        ctx.fused = fused
        return dx, dgamma, dbeta

    @staticmethod
    @once_differentiable
    def backward(ctx, gdx, gdgamma, gdbeta):
        dy, x, gamma, mean, rstd = ctx.saved_tensors
        gdx = torch.zeros_like(x) if gdx is None else gdx
        gdgamma = torch.zeros_like(gamma) if gdgamma is None else gdgamma
        gdbeta = torch.zeros_like(gamma) if gdbeta is None else gdbeta
        need = tuple(bool(b) for b in ctx.needs_input_grad[:3])
        kernel = _fused if ctx.fused else _closed_form
        grad_dy, grad_x, grad_gamma = kernel(dy, x, gdx, gamma, mean, rstd, gdgamma, gdbeta, need)
        return grad_dy, grad_x, grad_gamma, None, None, None


class _InstanceNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        if is_nhwc(x):
            y, mean, rstd = nhwc_instance_norm(x, gamma, beta, eps)
        else:
            n, c = x.shape[:2]
            y, mean, rstd = torch.native_group_norm(x, gamma, beta, n, c, x[0, 0].numel(), c, eps)
        ctx.save_for_backward(x, gamma, mean, rstd)
        ctx.fused = _fused_state["enabled"] and x.device.type == "cpu"
        return y

    @staticmethod
    def backward(ctx, dy):
        x, gamma, mean, rstd = ctx.saved_tensors
        layout = torch.channels_last if is_nhwc(x) else torch.contiguous_format
        dx, dgamma, dbeta = _InstanceNormBackward.apply(
            dy.contiguous(memory_format=layout), x, gamma, mean, rstd, ctx.fused
        )
        return dx, dgamma, dbeta, None


_FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


class InstanceNorm(nn.GroupNorm):
    """``nn.GroupNorm(C, C, affine=True)`` (same parameters, state dict and forward), whose double
    backward is the closed form of this module's docstring instead of PyTorch's composite.

    Used on float32, float64 or bfloat16 input (bf16 is what a convolution gives under ``--amp
    bf16``; the statistics, and so every full-size temporary of the double backward, are float32
    then) that is NCHW-contiguous when autograd records the op, or channels-last with or without
    grad, outside ``torch.compile`` (whose inductor fuses the stock op itself and has no double
    backward); everything else (NCHW without grad, float16, other strides, compiled) takes
    ``F.group_norm``.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, channels, eps=eps, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in _FAST_DTYPES and not torch.compiler.is_compiling():
            if torch.is_grad_enabled() and x.dim() >= 3 and (x.is_contiguous() or is_nhwc(x)):
                return _InstanceNorm.apply(x, self.weight, self.bias, self.eps)
            if is_nhwc(x):
                return nhwc_instance_norm(x, self.weight, self.bias, self.eps)[0]
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
