"""The flat parameter layout shared by expert trajectories and the MTT student.

A trajectory row is every parameter of the network concatenated in ``named_parameters()``
order (PyTorch registration order, shared parameters once), each flattened in C order. The
student in :mod:`habacli.objectives.mtt` reads the same vector back through :meth:`ParamLayout.views`,
so a row can be fed to ``torch.func.functional_call`` without a reparametrised module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a network's parameters, in trajectory order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        """The layout of ``module`` (``named_parameters()`` order)."""
        names, shapes = [], []
        for name, p in module.named_parameters():
            names.append(name)
            shapes.append(tuple(int(s) for s in p.shape))
        return cls(tuple(names), tuple(shapes))

    @property
    def numels(self) -> tuple[int, ...]:
        """Element count of each parameter."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def size(self) -> int:
        """P: the length of a flat parameter vector."""
        return sum(self.numels)

    def flatten(self, module: nn.Module) -> torch.Tensor:
        """A detached float32 copy of ``module``'s parameters as one vector (never a view)."""
        params = dict(module.named_parameters())
        return torch.cat([params[n].detach().reshape(-1).float() for n in self.names]).clone()

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: view}`` into ``flat`` (differentiable), for ``functional_call``."""
        out, offset = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.numels):
            out[name] = flat[offset : offset + n].view(shape)
            offset += n
        return out

    def load_into(self, module: nn.Module, flat: torch.Tensor) -> None:
        """Copy ``flat`` into ``module``'s parameters in place."""
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, view in self.views(flat.to(torch.float32)).items():
                params[name].copy_(view.to(params[name].device, params[name].dtype))

    def to_json(self) -> list[list]:
        """``[[name, [shape...]], ...]`` for metadata."""
        return [[n, list(s)] for n, s in zip(self.names, self.shapes)]

    @classmethod
    def from_json(cls, data: list) -> ParamLayout:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(str(n) for n, _ in data), tuple(tuple(int(x) for x in s) for _, s in data))
