"""DM: distribution matching (Zhao & Bilen, WACV 2023), research/baselines.md section 5.3.

One iteration:

    net = a fresh randomly initialised network, frozen (requires_grad False)
    k   = one random hallucinator (HaBa; ignored for the plain set)
    for every class c: x_r = batch_real real images of c, x_s = the class's images under k,
                       the same siamese DSA transformation on x_r and x_s (one per class)
    L = sum_c || mean(embed(x_r)) - mean(embed(x_s)) ||^2     (real embeddings without grad)
    engine.synth_step(L)

The synthetic images of all classes go through ONE forward pass, and the real images through
no-grad passes of 256 images: ``embed`` is per sample for instance-norm networks, so batching and
chunking are exact (for BatchNorm networks DM's own code batches all classes together, and so does
this one, in one pass). ``--amp`` autocasts the real
forward here (and the engine autocasts HaBa's adversary passes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from habacli.errors import ConfigError
from habacli.objectives import OBJECTIVES
from habacli.objectives.base import Engine, Objective


def _embed(net: nn.Module, x: Tensor) -> Tensor:
    return net.embed(x)


REAL_CHUNK = 256  # images per no-grad real forward; see DistributionMatching.real_embedding


def _batch_dependent(net: nn.Module) -> bool:
    """Whether a forward in train mode mixes samples (BatchNorm), so a batch cannot be split."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@OBJECTIVES.register("dm")
class DistributionMatching(Objective):
    """Per-class mean-embedding matching under fresh random networks."""

    name: ClassVar[str] = "dm"
    paper: ClassVar[str] = "zhao2023distribution"
    defaults: ClassVar[dict[str, Any]] = {"batch_real": 256}

    def __init__(self, engine: Engine, config: dict[str, Any]):
        super().__init__(engine, config)
        unknown = sorted(set(self.config) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown dm option(s) {', '.join(unknown)} (choose from: {', '.join(self.defaults)})")
        batch_real = self.config["batch_real"]
        if isinstance(batch_real, bool) or not isinstance(batch_real, int) or batch_real < 1:
            raise ConfigError(f"dm option batch_real must be an integer >= 1, got {batch_real!r}")
        self._embed = engine.compile(_embed)
        self._channels_last = engine.settings.channels_last

    def _fmt(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def batches(self, k: int) -> tuple[Tensor, Tensor]:
        """The (augmented) real and synthetic batches of one iteration, class-major."""
        eng = self.engine
        syn, real, gen = eng.synthetic, eng.real, eng.generator
        n_real = int(self.config["batch_real"])
        x_syn = syn.images(None, k)
        reals, syns = [], []
        for c in range(syn.num_classes):
            xr = real.sample_class(c, n_real, gen)
            xs = x_syn[syn.class_indices(c)]
            if eng.dsa is not None:
                xr, xs = eng.dsa.siamese([xr, xs], gen)
            reals.append(xr)
            syns.append(xs)
        return torch.cat(reals), torch.cat(syns)

    def loss(self, net: nn.Module, x_real: Tensor, x_syn: Tensor) -> Tensor:
        """``sum_c ||mean embed(real_c) - mean embed(syn_c)||^2`` for class-major batches."""
        c = self.engine.synthetic.num_classes
        e_real = self.real_embedding(net, x_real)
        e_syn = self._embed(net, self._fmt(x_syn)).float()
        mean_real = e_real.reshape(c, -1, e_real.shape[-1]).mean(1)
        mean_syn = e_syn.reshape(c, -1, e_syn.shape[-1]).mean(1)
        return ((mean_real - mean_syn) ** 2).sum()

    def real_embedding(self, net: nn.Module, x_real: Tensor) -> Tensor:
        """``embed(x_real)`` without grad, in chunks of :data:`REAL_CHUNK` images when the network is
        per-sample (exact: instance norm has no cross-sample term). One 2,560-image pass at IPC 10
        keeps 1.3 GB activations alive and ran ~2x slower on the CPU than ten 256-image passes."""
        chunk = x_real.shape[0] if _batch_dependent(net) else REAL_CHUNK
        with torch.no_grad(), self.engine.autocast():
            parts = [
                self._embed(net, self._fmt(x_real[i : i + chunk])).float() for i in range(0, x_real.shape[0], chunk)
            ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def run_iteration(self, it: int) -> dict[str, float]:
        eng = self.engine
        net = eng.make_network()
        for p in net.parameters():
            p.requires_grad_(False)
        net.train()  # as DM: a BatchNorm net uses the statistics of the (multi-class) batch
        k = eng.synthetic.random_k(eng.generator)
        x_real, x_syn = self.batches(k)
        return eng.synth_step(self.loss(net, x_real, x_syn))
