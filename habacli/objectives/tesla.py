"""Trajectory matching math: the unrolled MTT loss and its memory-constant exact gradient.

The student takes ``N`` SGD steps from an expert snapshot ``theta_0``::

    theta_{i+1} = theta_i - alpha * g_i,   g_i = grad_theta CE(f(A_i(x_i); theta_i), y_i)
    L = ||theta_N - theta*||^2 / ||theta_0 - theta*||^2

:func:`unrolled_match` keeps the whole N-step graph (MTT; memory linear in N).
:func:`constant_memory_match` computes the SAME gradient with memory independent of N
(TESLA's goal, but exact): a forward pass without a graph stores only the N parameter
vectors ``theta_i``; a backward walk then recomputes one step at a time with a graph and
propagates the adjoint ``lambda_i = dL/dtheta_i`` through the SGD recursion:

    lambda_N = 2 (theta_N - theta*) / D
    dL/dx_i  = -alpha * d<g_i, lambda_{i+1}>/dx_i
    dL/dalpha += -<g_i, lambda_{i+1}>
    lambda_i = lambda_{i+1} - alpha * H_i lambda_{i+1}      (H_i lambda: a Hessian-vector product)

Unlike the released TESLA code, the Hessian-vector terms (the dependence of theta_i on the
earlier batches) are kept, so the gradient equals the unrolled one up to rounding. The cost
is about one extra forward + backward per step. Each step must be replayable: its images and
its augmentation are recomputed bit-identically in the backward walk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from habacli.experts.layout import ParamLayout


@dataclass
class StudentStep:
    """One student step's data, replayable.

    ``images()`` returns the step's model-space images (differentiable w.r.t. the synthetic
    parameters when grad is enabled); ``augment(x)`` applies this step's augmentation with
    the same random parameters every time it is called.
    """

    images: Callable[[], torch.Tensor]
    augment: Callable[[torch.Tensor], torch.Tensor]
    labels: torch.Tensor


def student_ce(
    net: torch.nn.Module,
    layout: ParamLayout,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Callable = contextlib.nullcontext,
) -> torch.Tensor:
    """Cross-entropy of ``net`` with flat parameters ``theta`` on ``(x, y)`` (functional_call)."""
    with autocast():
        out = functional_call(net, layout.views(theta), (x,))
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    return F.cross_entropy(out, y)


def unrolled_match(
    net: torch.nn.Module,
    layout: ParamLayout,
    theta0: torch.Tensor,
    theta_star: torch.Tensor,
    alpha: torch.Tensor,
    steps: Sequence[StudentStep],
    autocast: Callable = contextlib.nullcontext,
) -> torch.Tensor:
    """The normalised trajectory-matching loss with the full N-step graph (MTT)."""
    theta = theta0.detach().clone().requires_grad_(True)
    for step in steps:
        ce = student_ce(net, layout, theta, step.augment(step.images()), step.labels, autocast)
        (g,) = torch.autograd.grad(ce, theta, create_graph=True)
        theta = theta - alpha * g
    return ((theta - theta_star) ** 2).sum() / ((theta0 - theta_star) ** 2).sum()


def unrolled_bytes_per_image_step(
    net: torch.nn.Module,
    layout: ParamLayout,
    theta0: torch.Tensor,
    alpha: torch.Tensor,
    step: Callable[[int], StudentStep],
    autocast: Callable = contextlib.nullcontext,
) -> float:
    """Bytes the unrolled graph keeps per image and student step, measured: the tensors autograd saves for
    one step on 2 and on 4 images (``step(n)``: a :class:`StudentStep` of ``n`` images), the difference over 2.
    :func:`unrolled_match` keeps about ``images per step x syn_steps`` times this until its backward."""

    def one(n: int) -> int:
        total, seen = 0, set()

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            s = step(n)
            theta = theta0.detach().clone().requires_grad_(True)
            ce = student_ce(net, layout, theta, s.augment(s.images()), s.labels, autocast)
            (g,) = torch.autograd.grad(ce, theta, create_graph=True)
            _ = theta - alpha * g  # the update's own saved tensors, as in unrolled_match
        return total

    return max(one(4) - one(2), 0) / 2


@dataclass
class MatchGradients:
    """The loss value and its exact gradients from :func:`constant_memory_match`."""

    loss: torch.Tensor  # detached scalar
    images: list[torch.Tensor]  # dL/d images() of each step, same shapes
    alpha: torch.Tensor  # dL/dalpha (detached scalar)


def constant_memory_match(
    net: torch.nn.Module,
    layout: ParamLayout,
    theta0: torch.Tensor,
    theta_star: torch.Tensor,
    alpha: torch.Tensor,
    steps: Sequence[StudentStep],
    autocast: Callable = contextlib.nullcontext,
) -> MatchGradients:
    """Loss and exact gradients (w.r.t. each step's images and alpha) in memory independent of N.

    Peak memory: one step's double-backward graph plus N flat parameter vectors.
    """
    a = alpha.detach()
    theta0 = theta0.detach()
    thetas = [theta0]
    theta = theta0
    for step in steps:  # forward: no graph kept across steps
        with torch.no_grad():
            x = step.augment(step.images())
        th = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(student_ce(net, layout, th, x, step.labels, autocast), th)
        theta = (theta - a * g).detach()
        thetas.append(theta)
    denom = ((theta0 - theta_star) ** 2).sum()
    loss = ((theta - theta_star) ** 2).sum() / denom
    lam = 2.0 * (theta - theta_star) / denom
    grad_alpha = torch.zeros((), dtype=theta0.dtype, device=theta0.device)
    grads: list[torch.Tensor] = [torch.empty(0)] * len(steps)
    for i in range(len(steps) - 1, -1, -1):  # backward walk, one step's graph at a time
        step = steps[i]
        th = thetas[i].clone().requires_grad_(True)
        with torch.no_grad():
            img = step.images()
        img = img.detach().requires_grad_(True)
        with torch.enable_grad():
            ce = student_ce(net, layout, th, step.augment(img), step.labels, autocast)
            (g,) = torch.autograd.grad(ce, th, create_graph=True)
            h_theta, h_img = torch.autograd.grad((g * lam).sum(), (th, img))
        grad_alpha = grad_alpha - (g.detach() * lam).sum()
        grads[i] = -a * h_img
        lam = lam - a * h_theta
        thetas[i + 1] = thetas[i + 1].new_empty(0)  # free what is no longer needed
    return MatchGradients(loss.detach(), grads, grad_alpha.detach())
