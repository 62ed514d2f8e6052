"""Gradient matching, the machinery DC and DSA share (research/baselines.md section 5.1).

- :func:`get_loops`: DC's (outer_loop, inner_loop) per images-per-class;
- :func:`gradient_distance`: the layer-wise matching distance ('ours'), plus 'mse' and 'cos';
- :func:`matched_parameters`: the parameters whose gradients the distance looks at;
- :func:`real_gradients` / :func:`synthetic_gradients`: per-class gradients of the network's
  cross-entropy (the real one detached, the synthetic one differentiable);
- :func:`refresh_batchnorm`: DC's BatchNorm handling (16 real images per class, then freeze);
- :func:`train_network`: the inner loop that trains the matching network on the synthetic set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The matching distances DC's code offers (``dis_metric``).
DISTANCES: tuple[str, ...] = ("ours", "mse", "cos")

#: DC's ``get_loops`` table: images per class -> (outer_loop, inner_loop).
LOOPS: dict[int, tuple[int, int]] = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}

#: Real images per class used to set BatchNorm statistics before matching (DC's ``BN_size``).
BN_IMAGES_PER_CLASS = 16

_EPS = 1e-6


def get_loops(ipc: int) -> tuple[int, int]:
    """DC's (outer_loop, inner_loop) for ``ipc`` images per class.

    The official table covers 1, 10, 20, 30, 40 and 50. Elsewhere haba follows the table's
    pattern (outer = ipc, outer x inner ~ 500 network-training epochs per iteration, inner capped
    at 50): ``(ipc, min(50, round(500 / ipc)))`` below 50, and the author's suggestion ``(50, 10)``
    above 50.
    """
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    if ipc in LOOPS:
        return LOOPS[ipc]
    if ipc > 50:
        return 50, 10
    return ipc, min(50, max(1, round(500 / ipc)))


def _rows(g: Tensor) -> Tensor | None:
    """A gradient as rows of output units, or None for 1-D gradients (which DC ignores)."""
    if g.dim() <= 1:
        return None
    return g.reshape(g.shape[0], -1)


def gradient_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor], metric: str = "ours") -> Tensor:
    """The matching distance between two lists of per-parameter gradients (same order and shapes).

    - ``ours`` (DC's ``distance_wb``, summed over layers): every gradient becomes rows of output
      units (conv ``out x in*k*k``, linear as is, a 3-D LayerNorm gradient ``C x H*W``), and
      ``d = sum_rows (1 - <g_r, g_s> / (|g_r| |g_s| + 1e-6))``; 1-D gradients contribute 0;
    - ``mse``: squared L2 distance between all gradients concatenated;
    - ``cos``: ``1 - cos`` between all gradients concatenated (with the same 1e-6).
    """
    if len(g_syn) != len(g_real):
        raise ValueError(f"gradient lists differ in length: {len(g_syn)} vs {len(g_real)}")
    if metric == "ours":
        total: Tensor | None = None
        for gs, gr in zip(g_syn, g_real):
            rs, rr = _rows(gs), _rows(gr)
            if rs is None or rr is None:
                continue
            cos = (rs * rr).sum(-1) / (rs.norm(dim=-1) * rr.norm(dim=-1) + _EPS)
            d = (1.0 - cos).sum()
            total = d if total is None else total + d
        if total is None:  # nothing but 1-D gradients
            ref = g_syn[0] if g_syn else torch.zeros(())
            return ref.new_zeros(())
        return total
    if metric in ("mse", "cos"):
        vs = torch.cat([g.reshape(-1) for g in g_syn])
        vr = torch.cat([g.reshape(-1) for g in g_real])
        if metric == "mse":
            return ((vs - vr) ** 2).sum()
        return 1.0 - (vs * vr).sum() / (vs.norm() * vr.norm() + _EPS)
    raise ValueError(f"unknown gradient distance {metric!r} (choose from: {', '.join(DISTANCES)})")


def matched_parameters(net: nn.Module, metric: str = "ours") -> list[Tensor]:
    """The parameters whose gradients enter the distance: all for 'mse'/'cos'; for 'ours' only the
    multi-dimensional ones (1-D gradients contribute 0, so they are never computed)."""
    params: list[Tensor] = [p for p in net.parameters() if p.requires_grad]
    if metric == "ours":
        params = [p for p in params if p.dim() > 1]
    return params


def has_batchnorm(net: nn.Module) -> bool:
    """Whether ``net`` holds any BatchNorm layer (whose statistics DC freezes while matching)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def refresh_batchnorm(
    net: nn.Module, sample_class: Callable[[int, int], Tensor], num_classes: int, per_class: int = BN_IMAGES_PER_CLASS
) -> None:
    """DC's BatchNorm handling: one train-mode forward of ``per_class`` real images of every class
    (updates the running statistics), then BatchNorm layers in eval mode (frozen statistics)."""
    x = torch.cat([sample_class(c, per_class) for c in range(num_classes)])
    net.train()
    with torch.no_grad():
        net(x)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _class_targets(n: int, c: int, device: torch.device) -> Tensor:
    return torch.full((n,), c, dtype=torch.long, device=device)


def real_gradients(
    net: nn.Module,
    params: Sequence[Tensor],
    x: Tensor,
    c: int,
    autocast: Callable[[], AbstractContextManager] | None = None,
) -> list[Tensor]:
    """Gradients of ``CE(net(x), c)`` w.r.t. ``params`` (detached; no graph is kept).

    ``autocast`` (e.g. ``engine.autocast``) wraps the forward pass, so an opt-in bf16 run computes
    this, the most expensive pass of DC, in low precision; the gradients come back in fp32.
    """
    with (autocast or nullcontext)():
        loss = F.cross_entropy(net(x), _class_targets(x.shape[0], c, x.device))
    grads = torch.autograd.grad(loss, list(params))
    return [g.detach().float() for g in grads]


def synthetic_gradients(net: nn.Module, params: Sequence[Tensor], x: Tensor, c: int) -> list[Tensor]:
    """Gradients of ``CE(net(x), c)`` w.r.t. ``params`` with ``create_graph=True``, so a distance
    on them back-propagates into ``x`` (and from there into bases and hallucinators); fp32."""
    loss = F.cross_entropy(net(x), _class_targets(x.shape[0], c, x.device))
    return list(torch.autograd.grad(loss, list(params), create_graph=True))


def train_network(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    augment: Callable[[Tensor], Tensor] | None = None,
    autocast: Callable[[], AbstractContextManager] | None = None,
    draw: Callable[[int, torch.Generator], tuple[Tensor, Tensor]] | None = None,
) -> float:
    """Train ``net`` for ``epochs`` shuffled epochs on a fixed (detached) set (DC's inner loop).

    ``augment`` is applied per batch (DSA's per-sample mode for the DSA objective; None for DC).
    ``draw`` (optional) gives each epoch's set as ``draw(epoch, generator) -> (x, y)`` instead of the
    fixed ``x, y`` (HaBa's sampled inner set: every basis once under a random hallucinator).
    Returns the mean training loss of the last epoch (0.0 when ``epochs`` is 0).
    """
    x, y = x.detach(), y.detach()
    net.train()
    last: Tensor | float = 0.0
    ctx = autocast or nullcontext
    for epoch in range(epochs):
        xe, ye = (x, y) if draw is None else draw(epoch, generator)
        n = xe.shape[0]
        order = torch.randperm(n, generator=generator).to(xe.device)
        total, seen = xe.new_zeros((), dtype=torch.float32), 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = xe[idx], ye[idx]
            if augment is not None:
                xb = augment(xb)
            with ctx():
                loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().float() * idx.numel()  # no host sync per step
            seen += idx.numel()
        last = total / max(seen, 1)
    return float(last)
