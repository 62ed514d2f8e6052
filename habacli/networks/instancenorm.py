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
"""

from __future__ import annotations

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


class _InstanceNormBackward(torch.autograd.Function):
    """The backward of instance norm as a function of (dy, x, gamma), with its own closed-form backward."""

    @staticmethod
    def forward(ctx, dy, x, gamma, mean, rstd):
        n, c = x.shape[:2]
        hw = x[0, 0].numel()
        dx, dgamma, dbeta = torch.ops.aten.native_group_norm_backward(
            dy, x, mean, rstd, gamma, n, c, hw, c, [True, True, True])
        ctx.save_for_backward(dy, x, gamma, mean, rstd)
        return dx, dgamma, dbeta

    @staticmethod
    @once_differentiable
    def backward(ctx, gdx, gdgamma, gdbeta):
        # Every full-size result is a per-(image, channel) affine combination of dy, Gx, x^ and 1, so
        # the work is five pixel means (three of products) and five fused multiply-adds.
        dy, x, gamma, mean, rstd = ctx.saved_tensors
        if x.dtype != mean.dtype:  # bf16 activations, fp32 statistics: one upcast each, then fp32 throughout
            dy, x = dy.to(mean.dtype), x.to(mean.dtype)
            gdx = None if gdx is None else gdx.to(mean.dtype)
        xhat, r = _stats(x, mean, rstd)
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        gr = gamma.view(shape) * r
        zero = x.new_zeros(())
        gg = zero if gdgamma is None else gdgamma.view(shape)
        gb = zero if gdbeta is None else gdbeta.view(shape)
        if gdx is None:
            gdx = torch.zeros_like(x)
        m_dy, m_dyx = _pixel_mean(dy), _pixel_dot_mean(dy, xhat)
        m_g, m_gx = _pixel_mean(gdx), _pixel_dot_mean(gdx, xhat)
        m_gu = _pixel_dot_mean(gdx, dy) - m_dy * m_g - m_gx * m_dyx  # mean(Gx u)
        grad_dy = grad_x = grad_gamma = None
        if ctx.needs_input_grad[0]:  # Gb + Gg x^ + g r (Gx - mean Gx - x^ mean(Gx x^))
            grad_dy = torch.addcmul(gb - gr * m_g, xhat, gg - gr * m_gx).addcmul_(gdx, gr)
        if ctx.needs_input_grad[2]:  # sum over images and pixels of r Gx u
            grad_gamma = _channel_sum(r * m_gu) * x[0, 0].numel()
        if ctx.needs_input_grad[1]:  # v = a1 dy + a2 Gx;  P(v) - g r^2 x^ mean(Gx u)
            a1, a2 = gg - gr * m_gx, -gr * m_dyx
            m_v, m_vx = a1 * m_dy + a2 * m_g, a1 * m_dyx + a2 * m_gx
            grad_x = torch.addcmul(-r * m_v, xhat, -r * (m_vx + gr * m_gu)).addcmul_(dy, r * a1).addcmul_(gdx, r * a2)
        return grad_dy, grad_x, grad_gamma, None, None


class _InstanceNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        n, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, gamma, beta, n, c, x[0, 0].numel(), c, eps)
        ctx.save_for_backward(x, gamma, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, gamma, mean, rstd = ctx.saved_tensors
        dx, dgamma, dbeta = _InstanceNormBackward.apply(dy.contiguous(), x, gamma, mean, rstd)
        return dx, dgamma, dbeta, None


_FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


class InstanceNorm(nn.GroupNorm):
    """``nn.GroupNorm(C, C, affine=True)`` (same parameters, state dict and forward), whose double
    backward is the closed form of this module's docstring instead of PyTorch's composite.

    Used when autograd records the op on float32, float64 or bfloat16 NCHW-contiguous input (bf16 is
    what a convolution gives under ``--amp bf16``; the statistics, and so every full-size temporary of
    the double backward, are float32 then), outside ``torch.compile`` (whose inductor fuses the stock
    op itself and has no double backward); everything else (no grad, float16, channels_last,
    compiled) takes ``F.group_norm``.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, channels, eps=eps, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() and x.dtype in _FAST_DTYPES and x.dim() >= 3 and x.is_contiguous()
                and not torch.compiler.is_compiling()):
            return _InstanceNorm.apply(x, self.weight, self.bias, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
