"""DC: dataset condensation with gradient matching (Zhao, Mopuri & Bilen, ICLR 2021).

One iteration (research/baselines.md section 5.1), with HaBa's factorisation folded in the way
the unofficial HaBa DC port does it (research/haba.md section 2.2):

    net = a fresh network; opt_net = SGD(net, lr_net)               (no momentum)
    for ol in range(outer_loop):
        (BatchNorm nets) 16 real images per class in train mode, then freeze BN statistics
        k = one random hallucinator for this outer step (all classes)
        for every class c:
            x_r = batch_real real images of c;  x_s = the class's bases under hallucinator k
            (DSA) the same siamese augmentation on x_r and x_s
            loss += D(grad CE(net(x_s), c), grad CE(net(x_r), c).detach())
        engine.synth_step(loss)                                      (all classes jointly)
        unless last: train net for inner_loop epochs on every basis x hallucinator image
                     (batch_train; DSA per-sample augmentation for DSA, none for DC);
                     with inner_set = "sampled", each inner epoch sees every basis once under a
                     random hallucinator instead (haba's option: K times fewer images per epoch)

With ``--no-factorize`` (K = 0) this is exactly DC/DSA on plain images.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from habacli.errors import ConfigError
from habacli.evaluate.run import sampled_expansion
from habacli.objectives import OBJECTIVES
from habacli.objectives._matching import (
    BN_IMAGES_PER_CLASS,
    DISTANCES,
    get_loops,
    gradient_distance,
    has_batchnorm,
    matched_parameters,
    real_gradients,
    refresh_batchnorm,
    synthetic_gradients,
    train_network,
)
from habacli.objectives.base import Engine, IterationStats, Objective

_INT_KEYS: dict[str, int] = {"outer_loop": 1, "inner_loop": 0, "batch_real": 1, "batch_train": 1}
#: what the inner network trains on: every basis x hallucinator image (the unofficial HaBa DC port), or
#: every basis once per epoch under a uniformly drawn hallucinator (the evaluation's sampled expansion)
INNER_SETS = ("full", "sampled")


def _ipc(engine: Engine) -> int:
    """The run's images-per-class budget."""
    return engine.settings.ipc


def resolve_config(config: dict[str, Any], ipc: int, objective: str = "dc") -> dict[str, Any]:
    """Validate a DC/DSA objective config and fill ``outer_loop``/``inner_loop`` from ``ipc``.

    Raises :class:`ConfigError` (one line) on an unknown key or a bad value.
    """
    known = set(GradientMatching.defaults)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"unknown {objective} option(s) {', '.join(map(repr, unknown))} (choose from: {', '.join(sorted(known))})"
        )
    out = {**GradientMatching.defaults, **config}
    outer, inner = get_loops(ipc)
    if out["outer_loop"] is None:
        out["outer_loop"] = outer
    if out["inner_loop"] is None:
        out["inner_loop"] = inner
    for key, minimum in _INT_KEYS.items():
        value = out[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{objective} option {key} must be an integer >= {minimum}, got {out[key]!r}")
        out[key] = value
    lr = out["lr_net"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"{objective} option lr_net must be a positive number, got {lr!r}")
    out["lr_net"] = float(lr)
    if out["inner_set"] not in INNER_SETS:
        raise ConfigError(
            f"{objective} option inner_set must be one of {', '.join(INNER_SETS)}, got {out['inner_set']!r}"
        )
    if out["distance"] not in DISTANCES:
        raise ConfigError(f"{objective} option distance must be one of {', '.join(DISTANCES)}, got {out['distance']!r}")
    return out


class GradientMatching(Objective):
    """DC's gradient matching; :attr:`siamese` switches on DSA's augmentation (subclass :class:`~habacli.objectives.dsa.DSAObjective`)."""

    #: DSA: siamese augmentation while matching and per-sample augmentation in the inner loop
    siamese: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "outer_loop": None,  # None: from DC's get_loops(ipc)
        "inner_loop": None,
        "batch_real": 256,
        "lr_net": 0.01,
        "batch_train": 256,
        "distance": "ours",
        "inner_set": "full",
    }

    def __init__(self, engine: Engine, config: dict[str, Any]):
        super().__init__(engine, config)
        self.config = resolve_config(dict(config), _ipc(engine), self.name or "dc")
        self.augment = self._augmentation() if self.siamese else None

    def _augmentation(self) -> Any:
        if self.engine.dsa is None:
            raise ConfigError(
                f"objective {self.name!r} needs DSA augmentation, which is switched off for this run "
                "(use objective 'dc' for gradient matching without augmentation)"
            )
        return self.engine.dsa

    def run_iteration(self, it: int) -> dict[str, float]:
        """A fresh network, ``outer_loop`` synthesizer steps, ``inner_loop`` epochs of network
        training between them."""
        eng, cfg = self.engine, self.config
        syn, real, gen = eng.synthetic, eng.real, eng.generator
        net = eng.make_network()
        net.train()
        params = matched_parameters(net, cfg["distance"])
        opt_net = torch.optim.SGD(net.parameters(), lr=cfg["lr_net"])
        use_bn = has_batchnorm(net)
        classes = [(c, syn.class_indices(c)) for c in range(syn.num_classes)]
        stats, inner_losses = IterationStats(), []
        for ol in range(cfg["outer_loop"]):
            if use_bn:
                refresh_batchnorm(net, lambda c, n: real.sample_class(c, n, gen), syn.num_classes, BN_IMAGES_PER_CLASS)
            k = syn.random_k(gen)
            x_syn = syn.images(None, k)  # one hallucinator for every class in this outer step
            loss = x_syn.new_zeros(())
            for c, idx in classes:
                xs = x_syn[idx]
                xr = real.sample_class(c, cfg["batch_real"], gen)
                if self.augment is not None:
                    xr, xs = self.augment.siamese([xr, xs], gen)
                g_real = real_gradients(net, params, xr, c, eng.autocast)
                g_syn = synthetic_gradients(net, params, xs, c)
                loss = loss + gradient_distance(g_syn, g_real, cfg["distance"])
            step = dict(eng.synth_step(loss))
            step.setdefault("match", float(loss.detach()) / max(syn.num_classes, 1))
            stats.add(step)
            if ol == cfg["outer_loop"] - 1:
                break
            x_all, y_all = syn.expand_all()
            k_all = syn.num_hallucinators
            draw = sampled_expansion(x_all, y_all, k_all) if cfg["inner_set"] == "sampled" and k_all > 1 else None
            inner_losses.append(
                train_network(
                    net,
                    opt_net,
                    x_all,
                    y_all,
                    epochs=cfg["inner_loop"],
                    batch_size=cfg["batch_train"],
                    generator=gen,
                    augment=(lambda x: self.augment(x, gen)) if self.augment is not None else None,
                    autocast=eng.autocast,
                    draw=draw,
                )
            )
        for p in net.parameters():  # synth_step's backward also reached the network
            p.grad = None
        out = stats.mean()
        if inner_losses:
            out["inner_loss"] = sum(inner_losses) / len(inner_losses)
        return out


@OBJECTIVES.register("dc")
class DCObjective(GradientMatching):
    """Gradient matching without augmentation (Zhao, Mopuri & Bilen, ICLR 2021)."""

    name: ClassVar[str] = "dc"
    paper: ClassVar[str] = "zhao2021dataset"
