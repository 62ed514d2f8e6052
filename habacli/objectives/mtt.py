"""MTT: matching training trajectories (Cazenavette et al., CVPR 2022), as HaBa's L_DD.

One iteration (research/baselines.md section 4.2, research/haba.md section 2.2):

    expert = next in a shuffled order (engine.generator); s ~ U{0..T+ - 1}
    theta_0 = snapshot[s], theta* = snapshot[s + M]
    N student steps: chunk = next batch_syn bases of a random permutation, k = one random
        hallucinator, x = DSA(H_k(B[chunk])) per sample, theta <- theta - alpha * grad CE(f(x; theta))
    L = ||theta_N - theta*||^2 / ||theta_0 - theta*||^2  ->  engine.synth_step(L)

The student is ``torch.func.functional_call`` on views of one flat parameter vector
(:class:`~habacli.experts.layout.ParamLayout`, the order the expert files use). ``memory``
= ``unrolled`` keeps the N-step graph (MTT); ``constant`` computes the exact same gradient
with memory independent of N (:mod:`habacli.objectives.tesla`) and hands the engine a
surrogate loss with the value of L and the gradient of L.

The learnable student lr alpha (init ``lr_teacher``) is a :class:`ParamGroup`: HaBa steps it with
SGD(lr_lr, momentum 0.9) and clips it at 1e-3; the plain baseline (``--no-factorize``) uses MTT's
momentum 0.5 and no clip.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from habacli.errors import ConfigError, ExpertsError, HabaError
from habacli.experts.buffer import ExpertBuffer, open_buffer
from habacli.experts.layout import ParamLayout
from habacli.experts.train import default_experts_dir, train_experts
from habacli.objectives import OBJECTIVES
from habacli.objectives.base import Engine, Objective, ParamGroup
from habacli.objectives.tesla import (
    StudentStep,
    constant_memory_match,
    unrolled_bytes_per_image_step,
    unrolled_match,
)
from habacli.runtime.device import available_memory

MEMORY_MODES = ("auto", "unrolled", "constant")
#: ``memory = "auto"`` keeps the unrolled graph while its estimate stays under this share of the free memory
AUTO_MEMORY_SHARE = 0.6


def _num(
    config: dict[str, Any], key: str, *, integer: bool = False, minimum: float | None = None, positive: bool = False
) -> Any:
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and positive:
        ok = value > 0
    if not ok:
        need = "an integer" if integer else "a number"
        bound = f" >= {minimum}" if minimum is not None else (" > 0" if positive else "")
        raise ConfigError(f"mtt option {key} must be {need}{bound}, got {value!r}")
    return int(value) if integer else float(value)


def resolve_config(config: dict[str, Any], *, factorize: bool) -> dict[str, Any]:
    """Validate an MTT config and resolve its ``auto`` values (momentum and clip of alpha)."""
    unknown = sorted(set(config) - set(MTT.defaults))
    if unknown:
        raise ConfigError(
            f"unknown mtt option(s) {', '.join(map(repr, unknown))} (choose from: {', '.join(sorted(MTT.defaults))})"
        )
    c = {**MTT.defaults, **config}
    out = dict(c)
    out["syn_steps"] = _num(c, "syn_steps", integer=True, minimum=1)
    out["expert_epochs"] = _num(c, "expert_epochs", integer=True, minimum=1)
    out["max_start_epoch"] = _num(c, "max_start_epoch", integer=True, minimum=1)
    out["batch_syn"] = _num(c, "batch_syn", integer=True, minimum=0)
    out["auto_experts"] = _num(c, "auto_experts", integer=True, minimum=1)
    out["lr_teacher"] = _num(c, "lr_teacher", positive=True)
    out["lr_lr"] = _num(c, "lr_lr", positive=True)
    out["lr_momentum"] = (
        (0.9 if factorize else 0.5) if c["lr_momentum"] == "auto" else _num(c, "lr_momentum", minimum=0.0)
    )
    if not out["lr_momentum"] < 1.0:
        raise ConfigError(f"mtt option lr_momentum must be < 1, got {out['lr_momentum']}")
    if c["lr_min"] == "auto":
        out["lr_min"] = 1e-3 if factorize else None
    elif c["lr_min"] in (None, "none"):
        out["lr_min"] = None
    else:
        out["lr_min"] = _num(c, "lr_min")
    if c["memory"] not in MEMORY_MODES:
        raise ConfigError(f"--mtt-memory must be one of {', '.join(MEMORY_MODES)}, got {c['memory']!r}")
    if c["experts"] is not None and not isinstance(c["experts"], str):
        raise ConfigError(f"--experts must be a folder or 'auto', got {c['experts']!r}")
    return out


def experts_command(dataset: str, model: str, zca: bool, epochs: int, folder: Path | None, num: int = 100) -> str:
    """The ``haba experts`` command that makes the experts a run needs."""
    out = f" --out {folder}" if folder is not None else ""
    return f"haba experts {dataset} --model {model} --num {num} --epochs {epochs} {'--zca' if zca else '--no-zca'}{out}"


def surrogate_loss(
    value: torch.Tensor,
    image_grads: list[tuple[torch.Tensor, int, torch.Tensor]],
    alpha: torch.Tensor,
    alpha_grad: torch.Tensor,
    images: Callable[[torch.Tensor | None, int], torch.Tensor],
    num_bases: int,
) -> torch.Tensor:
    """A scalar with the value ``value`` whose gradient is the exact gradient of L.

    ``image_grads`` holds ``(basis indices, hallucinator k, dL/d images(idx, k))`` per student step.
    An image of basis j under hallucinator k depends only on basis j and hallucinator k, so the
    per-step gradients are summed per (k, basis) first: the graph built here holds at most K
    decodes of the bases, whatever N is.
    """
    acc: dict[int, torch.Tensor] = {}
    for idx, k, g in image_grads:
        if k not in acc:
            acc[k] = torch.zeros((num_bases, *g.shape[1:]), dtype=g.dtype, device=g.device)
        acc[k].index_add_(0, idx, g)
    inner = alpha_grad * alpha
    for k, a in acc.items():
        inner = inner + (a * images(None, k)).sum()
    return value + inner - inner.detach()


@OBJECTIVES.register("mtt")
class MTT(Objective):
    """Trajectory matching against expert trajectories (``haba experts``)."""

    name: ClassVar[str] = "mtt"
    paper: ClassVar[str] = "cazenavette2022mtt"
    defaults: ClassVar[dict[str, Any]] = {
        "syn_steps": 20,  # N: differentiable student steps per iteration
        "expert_epochs": 2,  # M: theta* = snapshot[s + M]
        "max_start_epoch": 10,  # T+: s ~ U{0..T+ - 1}
        "lr_teacher": 0.01,  # alpha's initial value (the experts' lr)
        "lr_lr": 1e-5,  # SGD lr of alpha
        "lr_momentum": "auto",  # alpha's momentum: 0.9 (HaBa) or 0.5 (plain MTT)
        "lr_min": "auto",  # clip alpha from below: 1e-3 (HaBa) or none (plain MTT)
        "batch_syn": 0,  # bases per student step; 0 = all (the default of MTT and HaBa)
        "experts": None,  # folder of expert trajectories; None = the default folder; "auto" = train
        "auto_experts": 5,  # experts trained by experts = "auto" when none exist
        # auto: unrolled (MTT) unless its measured estimate would not fit in AUTO_MEMORY_SHARE of the free memory,
        # then constant (exact gradient, memory independent of N); unrolled | constant force one
        "memory": "auto",
    }

    def __init__(self, engine: Engine, config: dict[str, Any]):
        super().__init__(engine, config)
        self.config = resolve_config(config, factorize=engine.settings.factorize)
        c = self.config
        self.device = engine.device
        self.net = engine.make_network()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.train()
        self.layout = ParamLayout.of(self.net)
        self.buffer = self._open_experts()
        self.alpha = torch.tensor(c["lr_teacher"], dtype=torch.float32, device=self.device, requires_grad=True)
        self.memory: str | None = None if c["memory"] == "auto" else str(c["memory"])  # auto: at the first iteration
        self.order = torch.zeros(0, dtype=torch.int64)
        self.cursor = 0

    # ------------------------------------------------------------------ experts

    def _open_experts(self) -> ExpertBuffer:
        e, c = self.engine, self.config
        dataset, model, zca = e.spec.name, e.settings.model, e.settings.zca
        # start is drawn from 0..max_start_epoch-1 and the target is start + expert_epochs, so the
        # last row read is max_start_epoch - 1 + expert_epochs (a trajectory of E epochs has rows 0..E).
        need = c["max_start_epoch"] - 1 + c["expert_epochs"]
        choice = c["experts"]
        folder = default_experts_dir(dataset, model, zca) if choice in (None, "auto") else Path(choice)
        cmd = experts_command(dataset, model, zca, need, None if choice in (None, "auto") else folder)
        if choice == "auto":
            try:
                return open_buffer(folder, dataset=dataset, model=model, zca=zca, min_epochs=need, layout=self.layout)
            except ExpertsError:
                n = c["auto_experts"]
                warnings.warn(
                    f"--experts auto: training {n} experts x {need} epochs into {folder} first; this costs about "
                    f"{n * need} passes over the train set (MTT uses 100 experts: `{cmd}`)",
                    stacklevel=2,
                )
                train_experts(
                    dataset,
                    model=model,
                    num=n,
                    epochs=need,
                    out=folder,
                    zca=zca,
                    seed=e.settings.seed,
                    device=str(self.device),
                    data_dir=e.settings.data_dir,
                )
        return open_buffer(
            folder, dataset=dataset, model=model, zca=zca, min_epochs=need, layout=self.layout, make_command=cmd
        )

    def _next_expert(self) -> int:
        if self.cursor >= len(self.order):
            self.order = torch.randperm(self.buffer.num_experts, generator=self.engine.generator).cpu()
            self.cursor = 0
        i = int(self.order[self.cursor])
        self.cursor += 1
        return i

    # ------------------------------------------------------------------ the objective

    def extra_parameters(self) -> list[ParamGroup]:
        """alpha, the learnable student lr."""
        c = self.config
        return [ParamGroup("syn_lr", [self.alpha], lr=c["lr_lr"], momentum=c["lr_momentum"], clamp_min=c["lr_min"])]

    def _steps(self) -> list[tuple[StudentStep, torch.Tensor, int]]:
        """Draw the N student steps (chunks, hallucinators, DSA draws) from engine.generator."""
        e, syn, c = self.engine, self.engine.synthetic, self.config
        gen = e.generator
        n = syn.num_bases
        batch = n if c["batch_syn"] in (0, None) or c["batch_syn"] >= n else c["batch_syn"]
        shape = (e.spec.channels, e.spec.height, e.spec.width)
        chunks: list[torch.Tensor] = []
        out = []
        for _ in range(c["syn_steps"]):
            if not chunks:
                chunks = list(torch.randperm(n, generator=gen).split(batch))
            idx = chunks.pop(0).to(self.device)
            k = syn.random_k(gen)
            state = gen.get_state()
            if e.dsa is not None:  # advance the stream exactly as one DSA call on this shape does
                e.dsa(torch.zeros((len(idx), *shape), device=self.device), gen)
            step = StudentStep(
                images=lambda idx=idx, k=k: syn.images(idx, k),
                augment=self._replay(state),
                labels=syn.labels[idx].to(self.device),
            )
            out.append((step, idx, k))
        return out

    def _replay(self, state: torch.Tensor):
        dsa, gen = self.engine.dsa, self.engine.generator
        if dsa is None:
            return lambda x: x

        def augment(x: torch.Tensor) -> torch.Tensor:
            g = torch.Generator(device=gen.device)
            g.set_state(state)
            return dsa(x, g)

        return augment

    def run_iteration(self, it: int) -> dict[str, float]:
        """One trajectory-matching update of the synthetic set and alpha."""
        e, c = self.engine, self.config
        expert = self._next_expert()
        start = int(torch.randint(0, c["max_start_epoch"], (1,), generator=e.generator))
        rows = self.buffer.rows(expert, [start, start + c["expert_epochs"]], device=self.device)
        theta0, theta_star = rows[0], rows[1]
        if not float(((theta0 - theta_star) ** 2).sum()) > 0:
            raise ExpertsError(
                f"expert {expert}: snapshots {start} and {start + c['expert_epochs']} are identical "
                "(a trajectory saved without copying its snapshots?)"
            )
        steps = self._steps()
        # --amp bf16 runs the student steps' forward (and so their backward and double backward) in bf16;
        # theta, alpha and the matching loss stay fp32. fp16 has no loss scaling here: fp32 then.
        autocast = e.autocast if e.settings.amp == "bf16" else contextlib.nullcontext
        student = [s for s, _, _ in steps]
        if self.memory is None:
            self.memory = self._choose_memory(theta0, autocast, max(len(i) for _, i, _ in steps))
        if self.memory == "unrolled":
            loss = unrolled_match(self.net, self.layout, theta0, theta_star, self.alpha, student, autocast)
            value = loss.detach()
        else:
            grads = constant_memory_match(self.net, self.layout, theta0, theta_star, self.alpha, student, autocast)
            value = grads.loss
            syn = self.engine.synthetic
            loss = surrogate_loss(
                grads.loss,
                [(idx, k, g) for (_, idx, k), g in zip(steps, grads.images)],
                self.alpha,
                grads.alpha,
                syn.images,
                syn.num_bases,
            )
        if not torch.isfinite(value):
            raise HabaError(
                f"MTT loss is {float(value)} at iteration {it} (alpha = {float(self.alpha):.3g}); lower lr_img or lr_lr"
            )
        stats = dict(e.synth_step(loss))
        stats.update(loss_mtt=float(value), syn_lr=float(self.alpha.detach()), start_epoch=float(start))
        return stats

    def _choose_memory(self, theta0: torch.Tensor, autocast: Any, batch: int) -> str:
        """``memory = auto``: unrolled while ``batch x syn_steps`` times the measured bytes per image and step fit
        in :data:`AUTO_MEMORY_SHARE` of the device's free memory, else constant (said in one line)."""
        c, syn = self.config, self.engine.synthetic
        if c["memory"] != "auto":
            return str(c["memory"])
        free = available_memory(self.device)
        if free is None:
            return "unrolled"
        labels = syn.labels.to(self.device)

        def probe(n: int) -> StudentStep:
            idx = torch.arange(min(n, syn.num_bases), device=self.device)
            return StudentStep(images=lambda: syn.images(idx, 0), augment=lambda x: x, labels=labels[idx])

        per = unrolled_bytes_per_image_step(self.net, self.layout, theta0, self.alpha, probe, autocast)
        need = per * batch * c["syn_steps"]
        if need <= AUTO_MEMORY_SHARE * free:
            return "unrolled"
        warnings.warn(
            f"MTT: the unrolled graph would hold about {need / 2**30:.1f} GiB ({c['syn_steps']} steps x {batch} "
            f"images) of {free / 2**30:.1f} GiB free, so this run uses --mtt-memory constant (the same gradient, "
            "about 1.2x the time); --mtt-memory unrolled forces the other",
            stacklevel=2,
        )
        return "constant"

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, torch.Tensor]:
        """alpha, the shuffled expert order and the cursor into it."""
        return {
            "alpha": self.alpha.detach().clone(),
            "expert_order": self.order.clone(),
            "expert_cursor": torch.tensor([self.cursor], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (alpha in place: the engine's optimiser holds it)."""
        with torch.no_grad():
            self.alpha.copy_(state["alpha"].to(self.alpha.device, self.alpha.dtype).reshape(()))
        self.order = state["expert_order"].to("cpu", torch.int64)
        self.cursor = int(state["expert_cursor"].reshape(-1)[0])
        if len(self.order) and int(self.order.max()) >= self.buffer.num_experts:
            raise ExpertsError(
                f"the checkpoint's expert order refers to {int(self.order.max()) + 1} experts but "
                f"{self.buffer.folder} holds {self.buffer.num_experts}"
            )

    def artifact_fields(self) -> dict[str, Any]:
        """The learned lr, reused as the evaluation lr."""
        return {"learned_lr": float(self.alpha.detach())}

    def run_facts(self) -> dict[str, Any]:
        """The memory path the last session of this run took (``--mtt-memory auto`` chooses at its first iteration)."""
        return {"mtt_memory": self.memory} if self.memory is not None else {}
