"""``haba distill``: build a run from its configuration, loop, validate, checkpoint, write the artifact.

The loop (one objective iteration = one or more :meth:`Engine.synth_step`), validation and the
artifact live here; the HaBa maths in :mod:`habacli.distill.engine` and :mod:`habacli.distill.factorization`;
checkpoint I/O in :mod:`habacli.distill.checkpoint`; options in :mod:`habacli.distill.config`.

Resumption is exact on the CPU: every random draw comes from the run's generator, whose state is
checkpointed together with the synthetic set, the adversary, every optimiser and the objective's
state. Validation uses its own generator derived from ``(seed, iteration)``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from habacli.artifact.codec import HabaArtifact, save_artifact
from habacli.data import RealData, fit_zca, get_spec, load_split
from habacli.distill.checkpoint import checkpoint_path_for, restore_run, save_run
from habacli.distill.config import DistillConfig, auto_base_scale, auto_modulation, build_config, plan_budget
from habacli.distill.engine import Engine
from habacli.distill.factorization import SyntheticSet
from habacli.errors import ConfigError, Interrupted, UsageError
from habacli.evaluate.batched import train_runs
from habacli.networks import default_network
from habacli.networks.hallucinator import HallucinatorBank, apply_pairs
from habacli.networks.instancenorm import fused_double_backward
from habacli.objectives import get_objective
from habacli.objectives.base import IterationStats
from habacli.runtime.device import check_compile, pick_device, resolve_amp, seed_everything, warn_if_emulated
from habacli.runtime.progress import Progress, ProgressFn
from habacli.transforms.augment import dsa_for

#: The loop's events are :class:`habacli.runtime.progress.Progress` (description ``distill``; kinds start,
#: iteration, validating, validation, checkpoint, done); ``ProgressEvent`` is the old name.
ProgressEvent = Progress


@dataclass
class DistillResult:
    """The outcome of :func:`distill`."""

    artifact_path: Path
    checkpoint_path: Path | None
    iterations: int  # iterations completed in total
    start_iteration: int  # > 0 when resumed
    wall_time: float  # seconds of this call
    best_val_acc: float | None
    best_iteration: int | None
    history: list[dict[str, Any]]
    storage: dict[str, Any]
    config: dict[str, Any]
    last_stats: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "artifact": str(self.artifact_path),
            "checkpoint": str(self.checkpoint_path) if self.checkpoint_path else None,
            "iterations": self.iterations,
            "start_iteration": self.start_iteration,
            "wall_time_s": round(self.wall_time, 3),
            "best_val_acc": self.best_val_acc,
            "best_iteration": self.best_iteration,
            "validation": self.history,
            "storage": self.storage,
            "objective": self.config.get("objective"),
            "factorize": self.config.get("factorize"),
            "last_stats": self.last_stats,
        }


def _check_out(out: str | os.PathLike) -> Path:
    """Fail early (one line) when ``out`` cannot be written."""
    path = Path(out)
    if path.exists() and path.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file path such as {path / 'distilled.safetensors'}")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {path}: cannot create folder {parent} ({e.strerror or e})") from None
    try:  # os.access is not enough (root, read-only mounts): try to create a file there
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"--out {path}: folder {parent} is not writable ({e.strerror or e})") from None
    return path


class _SigintGuard:
    """Defers Ctrl-C to the end of the current iteration (the state is consistent there)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[_SigintGuard]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:  # second Ctrl-C: stop now (the last checkpoint stays)
                signal.signal(signal.SIGINT, self._old)
                raise KeyboardInterrupt
            self.requested = True

        self._old = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, self._old)


def resume_command(cfg: DistillConfig, out: Path) -> str:
    """The command line that continues a run."""
    return f"haba distill {cfg.dataset} --ipc {cfg.ipc} --baseline {cfg.objective} --out {out} --resume (same options)"


def _derive_seed(*parts: int) -> int:
    """A 62-bit seed from integers (splitmix64-style mixing; no clock, no hash randomisation)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & ((1 << 62) - 1)


class Run:
    """One distillation run: data, engine, objective, loop state."""

    def __init__(
        self,
        cfg: DistillConfig,
        objective_cls: type,
        *,
        data_dir: str | os.PathLike | None = None,
        progress: ProgressFn | None = None,
    ):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        # --amp auto becomes what this device runs natively, and the artifact records that
        cfg.amp = resolve_amp(None if cfg.amp == "off" else cfg.amp, self.device) or "off"
        warn_if_emulated(self.device, cfg.amp)
        if cfg.compile:
            check_compile(self.device)
        self.generator = seed_everything(cfg.seed)
        spec = get_spec(cfg.dataset, data_dir=data_dir, image_size=cfg.image_size)
        if cfg.base_scale == 0:  # auto: resolved from the data's shape, and recorded as the number it became
            cfg.base_scale = auto_base_scale(spec.height, spec.width, zca=cfg.zca)
        if cfg.hallucinator_modulation == "auto":  # likewise, from the budget and the data's shape
            cfg.hallucinator_modulation = auto_modulation(
                cfg, num_classes=spec.num_classes, channels=spec.channels, height=spec.height, width=spec.width
            )
        # the budget first: a bad --budget fails before the data is decoded
        self.budget = plan_budget(
            cfg, num_classes=spec.num_classes, channels=spec.channels, height=spec.height, width=spec.width
        )
        split = load_split(cfg.dataset, "train", data_dir=data_dir, image_size=cfg.image_size, progress=progress)
        self.spec = split.spec
        self.zca = (
            fit_zca(cfg.dataset, data_dir=data_dir, image_size=cfg.image_size, progress=progress) if cfg.zca else None
        )
        self.real = RealData.build(
            split, device=self.device, zca=self.zca, val_fraction=cfg.val_fraction, seed=cfg.seed
        )
        spec = self.spec
        if cfg.single_channel and not cfg.factorize and spec.channels > 1:
            raise ConfigError(
                "--single-channel needs hallucinators to map bases to the data's channels: "
                "drop --no-factorize or --single-channel"
            )
        n, c_b = self.budget.bases_per_class, self.budget.base_channels
        if cfg.init == "real":
            bases, _ = self.real.init_bases(n, self.generator, single_channel=cfg.single_channel)
            if cfg.base_scale > 1:  # low-resolution bases start as the real images' r x r block means
                bases = torch.nn.functional.avg_pool2d(bases, cfg.base_scale)
        else:
            shape = (spec.num_classes * n, c_b, spec.height // cfg.base_scale, spec.width // cfg.base_scale)
            bases = torch.randn(shape, generator=self.generator)
        bank = (
            HallucinatorBank(
                cfg.num_hallucinators,
                c_b,
                spec.channels,
                spec.height,
                spec.width,
                generator=self.generator,
                init=cfg.hallucinator_init,
                modulation=cfg.hallucinator_modulation,
                padding=cfg.hallucinator_padding,
            )
            if cfg.num_hallucinators
            else None
        )
        synthetic = SyntheticSet(bases.to(self.device), spec.num_classes, bank, size=(spec.height, spec.width))
        self.model_name = cfg.model or default_network(spec)
        self.engine = Engine(
            config=cfg,
            spec=spec,
            real=self.real,
            synthetic=synthetic,
            device=self.device,
            generator=self.generator,
            model_name=self.model_name,
            dsa=dsa_for(spec) if cfg.dsa else None,
            contrast_dsa=dsa_for(spec) if cfg.contrast_dsa else None,
            data_dir=data_dir,  # MTT's --experts auto trains experts on the same data
        )
        self.objective = objective_cls(self.engine, dict(cfg.objective_config))
        self.engine.attach(self.objective)
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"acc", "iteration", "state": {name: tensor}}
        self.elapsed_before = 0.0
        self._t0: float | None = None

    # ------------------------------------------------------------------ state and checkpoints

    def synthetic_state(self) -> dict[str, Any]:
        syn = self.engine.synthetic
        return {
            "bases": syn.bases.detach().clone(),
            "hallucinators": syn.hallucinator_state(),
            "objective": dict(self.objective.artifact_fields()),
        }

    def save_checkpoint(self, path: Path) -> None:
        save_run(self, path)

    def load_checkpoint(self, path: Path) -> None:
        restore_run(self, path)

    # ------------------------------------------------------------------ validation and artifacts

    def validate(self, progress: ProgressFn | None = None) -> float:
        """Mean accuracy on the held-out validation split of fresh networks trained on the
        sampled expansion (each basis under one random hallucinator per epoch); ``progress`` gets
        ``validating`` events over runs x epochs."""
        cfg, syn = self.cfg, self.engine.synthetic
        bases = syn.upsampled(syn.bases.detach()).clone()
        params = syn.hallucinator_state()
        labels = syn.labels.clone()
        k_total = syn.num_hallucinators
        pad = 0 if syn.bank is None else syn.bank.pad

        def train(epoch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.randint(k_total, (bases.shape[0],), generator=gen)
            with torch.no_grad():
                return apply_pairs(bases, params, k.to(bases.device), pad=pad), labels

        if self.real.val is None:  # validate() runs only with a validation split (config.validate checks it)
            raise ConfigError("validation needs a held-out split: set val_fraction > 0")
        x_val, y_val = self.real.val.all_model()
        net = cfg.eval_model or self.model_name
        learned = self.objective.artifact_fields().get("learned_lr") if net == self.model_name else None
        lr = cfg.eval_lr or learned or 0.01  # a learned lr belongs to the network it was learned on
        what = f"validation at it {self.iteration}"

        def tick(e: Progress) -> None:
            if progress is not None:
                progress(Progress("validating", what, e.done, e.total))

        results = train_runs(
            net,
            [train if k_total else (bases, labels)] * cfg.eval_runs,
            (x_val, y_val),
            spec=self.spec,
            epochs=cfg.eval_epochs,
            lr=float(lr),
            dsa=dsa_for(self.spec),
            seeds=[_derive_seed(cfg.seed, self.iteration, r) for r in range(cfg.eval_runs)],
            device=self.device,
            amp="bf16" if cfg.amp == "bf16" else None,
            images_per_epoch=int(bases.shape[0]),
            progress=tick,
        )
        accs = [float(res.accuracy) for res in results]
        return sum(accs) / len(accs)

    def write_artifact(self, path: Path, state: dict[str, Any], *, best_iteration: int | None) -> None:
        cfg = self.cfg
        fields = dict(state.get("objective") or {})
        extra = {
            "validation": {
                "history": self.history,
                "best_iteration": best_iteration,
                "split": "train-holdout",
                "val_fraction": cfg.val_fraction,
            },
            "distill": {
                "iterations": self.iteration,
                "budget": self.budget.to_dict(),
                "model": self.model_name,
                **self.objective.run_facts(),
            },
        }
        artifact = HabaArtifact.build(
            bases=state["bases"].cpu(),
            labels=self.engine.synthetic.labels.cpu(),
            hallucinators={k: v.cpu() for k, v in state["hallucinators"].items()},
            hallucinator_padding=cfg.hallucinator_padding,
            spec=self.spec,
            mean=self.real.normalize_mean,
            std=self.real.normalize_std,
            zca=self.zca,
            objective=cfg.objective,
            objective_config=cfg.to_dict(),
            ipc=cfg.ipc,
            learned_lr=fields.get("learned_lr"),
            seed=cfg.seed,
            extra=extra,
        )
        save_artifact(artifact, path)

    # ------------------------------------------------------------------ the loop

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def total_elapsed(self) -> float:
        """Seconds of work on this run so far, over every resumed session (checkpointed)."""
        return self.elapsed_before + self._elapsed()

    def _due(self, every: int, it: int) -> bool:
        return every > 0 and it % every == 0

    def execute(self, out: Path, ckpt: Path, *, resume: bool, progress: ProgressFn | None) -> DistillResult:
        """Run (or continue) the loop to ``cfg.iterations``; returns the result."""
        cfg = self.cfg
        if resume:
            self.load_checkpoint(ckpt)
        start = self.iteration
        emit = progress or (lambda e: None)
        self._t0 = time.perf_counter()
        emit(
            Progress(
                "start",
                "distill",
                start,
                cfg.iterations,
                message=f"{cfg.objective} run, {self.budget.bases_per_class} bases/class; {self._validation_plan()}",
            )
        )
        window = IterationStats()
        last: dict[str, float] = {}
        guard = _SigintGuard()
        consistent = True
        try:
            with guard.installed():
                while self.iteration < cfg.iterations:
                    consistent = False
                    with fused_double_backward(cfg.compile):  # --compile: MTT's and DC's second order fused
                        stats = self.objective.run_iteration(self.iteration)
                    self.iteration += 1
                    consistent = True
                    window.add(stats)
                    last = dict(stats)
                    it = self.iteration
                    emit(Progress("iteration", "distill", it, cfg.iterations, last, self._validation_left(it)))
                    if it in self.validation_points:
                        self._validate_and_keep(out, emit)
                    if self._due(cfg.checkpoint_every, it) and it < cfg.iterations:
                        self.save_checkpoint(ckpt)
                        emit(Progress("checkpoint", "distill", it, message=f"checkpoint at it {it}: {ckpt}"))
                    if guard.requested:
                        raise KeyboardInterrupt
                if cfg.eval_every and cfg.iterations == start == 0 and not self.history:
                    self._validate_and_keep(out, emit)
        except KeyboardInterrupt:
            if consistent:
                self.save_checkpoint(ckpt)
                raise Interrupted(
                    f"interrupted at iteration {self.iteration}; checkpoint saved to {ckpt}; "
                    f"continue with: {resume_command(cfg, out)}"
                ) from None
            raise Interrupted(
                f"interrupted during iteration {self.iteration + 1}; continue from the last "
                f"checkpoint with: {resume_command(cfg, out)}"
            ) from None
        if cfg.checkpoint_every:
            self.save_checkpoint(ckpt)
        if self.best is not None:
            self.write_artifact(out, self.best["state"], best_iteration=self.best["iteration"])
        else:
            self.write_artifact(out, self.synthetic_state(), best_iteration=None)
        wall = self._elapsed()
        emit(Progress("done", "distill", self.iteration, cfg.iterations, window.mean(), message=str(out)))
        return DistillResult(
            artifact_path=out,
            checkpoint_path=ckpt if cfg.checkpoint_every else None,
            iterations=self.iteration,
            start_iteration=start,
            wall_time=wall,
            best_val_acc=None if self.best is None else self.best["acc"],
            best_iteration=None if self.best is None else self.best["iteration"],
            history=list(self.history),
            storage=self.budget.to_dict(),
            config=cfg.to_dict(),
            last_stats=last,
        )

    @property
    def validation_points(self) -> list[int]:
        """The iterations validated after: every ``eval_every`` from ``eval_start`` and the last one;
        none when that is a single point (nothing to choose between) unless ``validate_single``."""
        cfg = self.cfg
        if not cfg.eval_every:
            return []
        first = max(cfg.eval_start, 1)
        points = list(range(-(-first // cfg.eval_every) * cfg.eval_every, cfg.iterations + 1, cfg.eval_every))
        if cfg.iterations >= first and (not points or points[-1] != cfg.iterations):
            points.append(cfg.iterations)
        return points if len(points) > 1 or cfg.validate_single else []

    def _validation_cost(self, points: int) -> str:
        cfg = self.cfg
        return f"{points} x {cfg.eval_runs} run(s) x {cfg.eval_epochs + 1} epochs"

    def _validation_plan(self) -> str:
        """What the run will spend on validation (printed before it starts)."""
        points = self.validation_points
        if points:
            return f"validation: {self._validation_cost(len(points))} on the held-out split"
        if self.cfg.eval_every:
            return "no validation (a single validation point has nothing to choose between; --set validate_single=true)"
        return "no validation"

    def _validation_left(self, it: int) -> str:
        """How much validation is still to come after iteration ``it``."""
        left = sum(1 for p in self.validation_points if p >= it)
        return f"validation to come: {self._validation_cost(left)}" if left else ""

    def _validate_and_keep(self, out: Path, emit: ProgressFn) -> None:
        t = time.perf_counter()
        acc = self.validate(emit)
        self.history.append({"iteration": self.iteration, "val_acc": acc, "seconds": round(time.perf_counter() - t, 2)})
        improved = self.best is None or acc > self.best["acc"]
        if improved:
            self.best = {"acc": acc, "iteration": self.iteration, "state": self.synthetic_state()}
            self.write_artifact(out, self.best["state"], best_iteration=self.iteration)
        best = " (new best)" if improved else ""
        emit(
            Progress(
                "validation",
                "distill",
                self.iteration,
                None,
                {"val_acc": acc},
                message=f"validation at it {self.iteration}: acc {acc * 100:.2f}%{best}",
            )
        )


def distill(
    dataset: str,
    *,
    ipc: int,
    baseline: str = "dm",
    out: str | os.PathLike,
    hallucinators: int | None = None,
    factorize: bool = True,
    single_channel: bool | None = None,
    init: str | None = None,
    budget: str | None = None,
    iterations: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    data_dir: str | os.PathLike | None = None,
    preset: str = "paper",
    config_file: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    resume: bool = False,
    checkpoint: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> DistillResult:
    """Distill ``dataset`` into bases + hallucinators with ``baseline``'s objective (HaBa+X), or
    the plain baseline with ``factorize=False``, and write the artifact to ``out``.

    Options left ``None`` come from ``config_file``, then the ``preset`` (precedence: arguments and
    ``options`` > config file > preset > defaults). ``options`` holds any other
    :class:`~habacli.distill.config.DistillConfig` field or objective option. With ``resume`` the run
    continues from its checkpoint (default ``<out stem>.ckpt.safetensors``).
    Raises :class:`~habacli.errors.UsageError` subclasses for bad input and
    :class:`~habacli.errors.Interrupted` (after saving a checkpoint) on Ctrl-C.
    """
    if ipc is None or int(ipc) < 1:
        raise ConfigError(f"--ipc must be >= 1, got {ipc}")
    obj_cls = get_objective(baseline)
    overrides = dict(options or {})
    overrides.update(
        hallucinators=hallucinators,
        single_channel=single_channel,
        init=init,
        budget=budget,
        iterations=iterations,
        seed=seed,
        device=device,
    )
    if not factorize:
        overrides["factorize"] = False
    cfg = build_config(
        dataset,
        baseline,
        int(ipc),
        factorize=factorize,
        preset=preset,
        config_file=config_file,
        overrides=overrides,
        objective_defaults=obj_cls.defaults,
    )
    out_path = _check_out(out)
    ckpt_path = Path(checkpoint) if checkpoint is not None else checkpoint_path_for(out_path)
    if resume and not ckpt_path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
    run = Run(cfg, obj_cls, data_dir=data_dir, progress=progress)
    return run.execute(out_path, ckpt_path, resume=resume, progress=progress)
