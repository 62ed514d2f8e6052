"""The HaBa engine: owns the synthetic set, the adversary and the optimisers, and gives objectives
the services of :class:`habacli.objectives.base.Engine`.

One synthesizer step (research/haba.md section 2.7), :meth:`Engine.synth_step`:

1. the objective's ``L_DD`` (computed on the current bases/hallucinators);
2. factorised with K >= 2: a contrastive batch of bases, two distinct hallucinators k1 != k2,
   ``X = DSA([H_k1(b); H_k2(b)])`` (per-sample DSA), ``L_cos`` with the current adversary
   (whose parameters get no gradient);
3. backward ``L_DD + lambda_cos * L_cos``; SGD steps on the bases, the hallucinators and the
   objective's extra parameter groups (clamped when asked);
4. one adversary step on a fresh batch and pair, built from the *updated* synthetic set and
   detached: ``CE + lambda_sim * L_sim + lambda_con * SupCon``.

With K < 2 there is no contrastive game (the plain baseline, or a single hallucinator): steps 2
and 4 are skipped. All randomness comes from :attr:`Engine.generator` (checkpointed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn

from habacli.data.real import RealData
from habacli.data.spec import DatasetSpec
from habacli.distill.config import DistillConfig
from habacli.distill.factorization import SyntheticSet, adversary_loss, cos_loss
from habacli.errors import ConfigError
from habacli.networks import default_network, get_network
from habacli.objectives.base import Objective, ParamGroup, RunSettings
from habacli.transforms.augment import DSA

F = TypeVar("F", bound=Callable[..., Any])


def _sgd(params: Sequence[Tensor], lr: float, momentum: float) -> torch.optim.SGD | None:
    params = [p for p in params if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum) if params else None


class Engine:
    """Implements the objectives' ``Engine`` protocol for one run."""

    def __init__(
        self,
        *,
        config: DistillConfig,
        spec: DatasetSpec,
        real: RealData,
        synthetic: SyntheticSet,
        device: torch.device,
        generator: torch.Generator,
        model_name: str,
        dsa: DSA | None,
        contrast_dsa: DSA | None,
        data_dir: str | os.PathLike | None = None,
    ):
        self.config = config
        self.settings = RunSettings(
            ipc=config.ipc,
            model=model_name,
            factorize=config.factorize,
            zca=config.zca,
            seed=config.seed,
            data_dir=data_dir,
            amp=config.amp,
            compile=config.compile,
            channels_last=config.channels_last,
        )
        self.spec = spec
        self.real = real
        self.synthetic = synthetic.to(device)
        self.device = device
        self.generator = generator
        self.model_name = model_name
        self.dsa = dsa
        self.contrast_dsa = contrast_dsa
        self.contrastive = synthetic.num_hallucinators >= 2
        self.adversary: nn.Module | None = None
        if self.contrastive:
            self.adversary = self.make_network(default_network(spec), frozen=False)  # the default ConvNet
            self.adv_opt = torch.optim.SGD(self.adversary.parameters(), lr=config.adv_lr, momentum=config.adv_momentum)
        self._adv_embed = self.compile(_adversary_embed)  # under --compile: fused, like DM's embedding
        self.extra_groups: list[ParamGroup] = []
        self.optimizers: dict[str, torch.optim.SGD] = {}
        self._build_optimizers([])
        self.steps = 0

    # ------------------------------------------------------------------ services for objectives

    def make_network(self, name: str | None = None, *, frozen: bool = False) -> nn.Module:
        """A freshly initialised network on the device, seeded from :attr:`generator`."""
        spec = self.spec
        net = get_network(
            name or self.model_name,
            channels=spec.channels,
            num_classes=spec.num_classes,
            height=spec.height,
            width=spec.width,
            generator=self.generator,
        )
        net = net.to(self.device)
        if self.config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if frozen:
            for p in net.parameters():
                p.requires_grad_(False)
        return net

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for ``--amp bf16|fp16`` (a no-op context otherwise)."""
        if self.config.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def compile(self, fn: F) -> F:
        """``torch.compile(fn)`` under ``--compile``, else ``fn``."""
        if not self.config.compile:
            return fn
        return cast(F, torch.compile(fn, dynamic=False))

    # ------------------------------------------------------------------ optimisers

    def attach(self, objective: Objective) -> None:
        """Add the objective's extra parameter groups to the synthesizer's optimisers."""
        self._build_optimizers(list(objective.extra_parameters()))

    def _build_optimizers(self, extra: list[ParamGroup]) -> None:
        cfg = self.config
        opts: dict[str, torch.optim.SGD | None] = {
            "bases": _sgd([self.synthetic.bases], cfg.lr_img, cfg.momentum_img),
            "hallucinators": _sgd(
                self.synthetic.hallucinator_parameters(), cfg.effective_lr_style, cfg.effective_momentum_style
            ),
        }
        names = {"bases", "hallucinators", "adversary"}
        for group in extra:
            if group.name in names:
                raise ConfigError(f"objective parameter group {group.name!r} clashes with an engine group")
            names.add(group.name)
            opts[f"extra.{group.name}"] = _sgd(list(group.params), group.lr, group.momentum)
        self.optimizers = {k: v for k, v in opts.items() if v is not None}
        self.extra_groups = list(extra)

    def all_optimizers(self) -> dict[str, torch.optim.SGD]:
        """Every optimiser by name (the synthesizer's and the adversary's), for checkpoints."""
        out = dict(self.optimizers)
        if self.adversary is not None:
            out["adversary"] = self.adv_opt
        return out

    # ------------------------------------------------------------------ the HaBa steps

    def _contrast_batch(self) -> tuple[Tensor | None, Tensor]:
        """A random batch of bases for the contrastive game (None: all of them) and its labels.

        The default size is the baseline's image count ``ipc x C``: the official ``batch_syn`` default, which is
        every basis when bases are full-size, and bounds the game's cost when low-resolution bases are
        ``base_scale^2`` times as many (docs/fidelity.md)."""
        syn, b = self.synthetic, self.config.batch_contrast
        if b <= 0:
            b = self.config.ipc * syn.num_classes
        if b >= syn.num_bases:
            return None, syn.labels
        idx = torch.randperm(syn.num_bases, generator=self.generator)[:b].to(self.device)
        return idx, syn.labels[idx]

    def _two_views(self, idx: Tensor | None) -> Tensor:
        k1, k2 = self.synthetic.random_pair(self.generator)
        x = torch.cat([self.synthetic.images(idx, k1), self.synthetic.images(idx, k2)])
        if self.contrast_dsa is not None:
            x = self.contrast_dsa(x, self.generator)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def synth_step(self, loss_dd: Tensor) -> dict[str, float]:
        """One synthesizer update (``L_DD + lambda_cos * L_cos``), then one adversary step."""
        cfg = self.config
        stats: dict[str, float] = {"loss_dd": float(loss_dd.detach())}
        total = loss_dd
        if self.contrastive and cfg.lambda_cos > 0:
            assert self.adversary is not None
            idx, _ = self._contrast_batch()
            x = self._two_views(idx)
            self.adversary.requires_grad_(False)
            try:
                with self.autocast():
                    z = self._adv_embed(self.adversary, x).float()
            finally:
                self.adversary.requires_grad_(True)
            n = z.shape[0] // 2
            l_cos = cos_loss(z[:n], z[n:])
            total = total + cfg.lambda_cos * l_cos
            stats["loss_cos"] = float(l_cos.detach())
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self.optimizers.values():
            opt.step()
        with torch.no_grad():
            for group in self.extra_groups:
                if group.clamp_min is not None:
                    for p in group.params:
                        p.clamp_(min=group.clamp_min)
        self.steps += 1
        if self.contrastive:
            stats.update(self.adversary_step())
        return stats

    def adversary_step(self) -> dict[str, float]:
        """One SGD step of the adversary on detached hallucinations of the current synthetic set."""
        assert self.adversary is not None
        cfg = self.config
        idx, labels = self._contrast_batch()
        with torch.no_grad():
            x = self._two_views(idx)
        self.adversary.train()
        with self.autocast():
            z = self._adv_embed(self.adversary, x)
            logits = cast(nn.Module, self.adversary.classifier)(z)
        z, logits = z.float(), logits.float()
        parts = adversary_loss(
            z,
            logits,
            labels,
            lambda_cls=cfg.lambda_cls,
            lambda_sim=cfg.lambda_sim,
            lambda_con=cfg.lambda_con,
            temperature=cfg.supcon_temperature,
            base_temperature=cfg.supcon_base_temperature,
        )
        self.adv_opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.adv_opt.step()
        return {
            "loss_adv": float(parts["loss"].detach()),
            "adv_cls": float(parts["cls"].detach()),
            "adv_con": float(parts["con"].detach()),
        }

    # ------------------------------------------------------------------ state (checkpoints)

    def state_tensors(self) -> dict[str, Tensor]:
        """The engine's learnable state (synthetic set, adversary, extra parameter values)."""
        out: dict[str, Tensor] = {"synthetic.bases": self.synthetic.bases.detach()}
        for k, v in self.synthetic.hallucinator_state().items():
            out[f"synthetic.hallucinators.{k}"] = v
        if self.adversary is not None:
            for k, v in self.adversary.state_dict().items():
                out[f"adversary.{k}"] = v.detach()
        for group in self.extra_groups:
            for i, p in enumerate(group.params):
                out[f"extra.{group.name}.{i}"] = p.detach()
        return out

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_tensors` in place (shapes must match)."""

        def copy(dst: Tensor, key: str) -> None:
            if key not in tensors:
                raise ConfigError(f"checkpoint lacks {key!r}")
            src = tensors[key]
            if tuple(src.shape) != tuple(dst.shape):
                raise ConfigError(
                    f"checkpoint tensor {key!r} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}"
                )
            dst.copy_(src.to(dst.device))

        copy(self.synthetic.bases, "synthetic.bases")
        if self.synthetic.bank is not None:
            for k, v in self.synthetic.bank.params().items():
                copy(v, f"synthetic.hallucinators.{k}")
        if self.adversary is not None:
            state = self.adversary.state_dict()
            for k, v in state.items():
                copy(v, f"adversary.{k}")
        for group in self.extra_groups:
            for i, p in enumerate(group.params):
                copy(p, f"extra.{group.name}.{i}")


def _adversary_embed(net: nn.Module, x: Tensor) -> Tensor:
    """The adversary's features (a free function, so ``torch.compile`` sees one graph per mode)."""
    return cast(Callable[[Tensor], Tensor], net.embed)(x)
