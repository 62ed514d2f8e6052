"""INFER end to end, as ``haba teachers`` and ``haba distill --method infer`` run it: the teacher family
(trained or reused), the distillation with a checkpoint after every UFC, and the artifact (format 1.2)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from habacli.artifact.codec import save_artifact
from habacli.data import load_split
from habacli.errors import ConfigError, UnknownNameError
from habacli.infer.artifact import infer_artifact
from habacli.infer.budget import infer_budget
from habacli.infer.pipeline import PAPER_ITERATIONS, distill_infer
from habacli.infer.store import load_ufc_state, save_ufc_state
from habacli.infer.teachers import (
    TeacherError,
    TeacherRecord,
    load_teachers,
    resolve_archs,
    teacher_path,
    train_teachers,
)
from habacli.infer.train import InferRecipe
from habacli.runtime.device import pick_device
from habacli.runtime.progress import Progress, ProgressFn, note

__all__ = ["PRESETS", "InferRunResult", "TeachersResult", "default_teachers_dir", "distill", "teachers"]

# paper: the official settings (1000 UFC iterations, 400 student epochs); quick: a real result in minutes on
# a CPU (200 iterations, 1-epoch teachers, a 50-epoch recipe).
PRESETS: dict[str, dict[str, int]] = {
    "paper": {"iterations": PAPER_ITERATIONS, "teacher_epochs": 3, "eval_epochs": 400},
    "quick": {"iterations": 200, "teacher_epochs": 1, "eval_epochs": 50},
}


def default_teachers_dir() -> Path:
    """``$HABA_CACHE/teachers``, or ``./teachers`` without HABA_CACHE (teachers are reused across runs)."""
    return Path(os.environ["HABA_CACHE"]) / "teachers" if os.environ.get("HABA_CACHE") else Path("teachers")


@dataclass
class TeachersResult:
    out: Path
    records: list[TeacherRecord]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "teachers": [
                {
                    "arch": r.arch,
                    "path": str(r.path),
                    "test_accuracy": r.test_accuracy,
                    "epochs": r.meta.get("epochs"),
                    "trained_now": r.trained_now,
                    "verified": r.meta.get("verified", True),
                }
                for r in self.records
            ],
        }


def teachers(
    dataset: str,
    *,
    archs: str | list[str] | None = "cpu",
    epochs: int = 3,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | None = "auto",
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    progress: ProgressFn | None = None,
) -> TeachersResult:
    """Train (or reuse) INFER's teacher family for ``dataset`` under ``out`` (default
    :func:`default_teachers_dir`); each teacher's test accuracy is recorded in its file."""
    folder = Path(out) if out is not None else default_teachers_dir()
    records = train_teachers(
        dataset,
        folder,
        archs=archs,
        epochs=epochs,
        seed=seed,
        device=pick_device(device or "auto"),
        train_limit=subset,
        data_dir=data_dir,
        progress=progress,
    )
    return TeachersResult(folder, records)


@dataclass
class InferRunResult:
    artifact_path: Path
    wall_time: float
    storage: dict[str, int | float]
    subsets: int
    teachers: list[str]
    iterations: int
    resumed_ufcs: int = 0
    teachers_trained: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["artifact_path"] = str(self.artifact_path)
        return d


def _arch_names(archs: str | list[str]) -> tuple[str, ...]:
    return resolve_archs(archs)


def distill(
    dataset: str,
    ipc: int,
    *,
    out: str | os.PathLike,
    teachers_dir: str | os.PathLike | None = None,
    archs: str | list[str] | None = None,
    preset: str = "paper",
    iterations: int | None = None,
    teacher_epochs: int | None = None,
    eval_epochs: int | None = None,
    seed: int | None = None,
    temperature: float = 30.0,
    device: str | None = "auto",
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> InferRunResult:
    """Distil ``dataset`` at ``ipc`` with INFER and write the artifact ``out`` (format 1.2).

    Teachers come from ``teachers_dir`` (default :func:`default_teachers_dir`): every teacher stored there
    for the dataset, or ``archs``; when there are none, the ``cpu`` family (or ``archs``) is trained first
    with the preset's epochs. A checkpoint (``checkpoint``, default next to ``out``) is written after every
    UFC; ``resume`` continues from it (a run that differs in any setting is refused)."""
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, list(PRESETS))
    p = PRESETS[preset]
    iters = int(iterations if iterations is not None else p["iterations"])
    run_seed = 0 if seed is None else int(seed)
    dev = pick_device(device or "auto")
    folder = Path(teachers_dir) if teachers_dir is not None else default_teachers_dir()
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".infer-checkpoint")
    t0 = time.perf_counter()
    split = load_split(dataset, "train", data_dir=data_dir, progress=progress)
    spec = split.spec
    shape = (spec.channels, spec.num_classes, spec.height, spec.width)
    trained = False
    stored = teacher_path(folder, dataset, "x").parent
    wanted = [] if archs is None else [teacher_path(folder, dataset, a) for a in _arch_names(archs)]
    if not (stored.is_dir() and any(stored.glob("*.safetensors"))):
        note(progress, "teachers", f"no teachers for {dataset} in {folder}: training them (haba teachers {dataset})")
        train_teachers(
            dataset,
            folder,
            archs=archs if archs is not None else "cpu",
            epochs=int(teacher_epochs or p["teacher_epochs"]),
            seed=run_seed,
            device=dev,
            data_dir=data_dir,
            progress=progress,
        )
        trained = True
    elif wanted and not all(w.exists() for w in wanted):
        missing = ", ".join(w.stem for w in wanted if not w.exists())
        raise TeacherError(f"{stored}: no teacher {missing}; train it with `haba teachers {dataset} --out {folder}`")
    _, metas = load_teachers(folder, dataset, archs=archs, shape=shape, device="cpu")
    names = [m["arch"] for m in metas]
    infer_budget(ipc, spec.num_classes, len(names))  # K = 0 is a one-line error before any work
    run_meta = {"dataset": dataset, "ipc": ipc, "seed": run_seed, "iterations": iters, "teachers": names}
    done: dict[tuple[int, int], Tensor] = {}
    if ckpt.exists():
        if not resume:
            raise ConfigError(f"{ckpt}: a checkpoint of an earlier run exists; pass --resume to continue it")
        done = load_ufc_state(ckpt, expect=run_meta)
        note(progress, "UFCs", f"resuming: {len(done)} UFCs done")
    resumed = len(done)

    def checkpoint_ufc(k: int, m: int, u: Tensor, info: dict) -> None:
        done[(k, m)] = u.detach().cpu()
        save_ufc_state(ckpt, done, run_meta)

    s = distill_infer(
        dataset,
        ipc,
        teachers_dir=folder,
        teachers=names,
        iterations=iters,
        seed=run_seed,
        device=dev,
        progress=progress,
        temperature=temperature,
        done=dict(done),
        on_ufc=checkpoint_ufc,
        data_dir=data_dir,
    )
    recipe = InferRecipe(temperature=temperature, epochs=int(eval_epochs or p["eval_epochs"]))
    wall = time.perf_counter() - t0
    extra = {"distill": {"wall_time": round(wall, 3), "preset": preset, "teachers_dir": str(folder)}}
    art = infer_artifact(s, spec, recipe=recipe, extra=extra)
    save_artifact(art, out)
    ckpt.unlink(missing_ok=True)
    if progress is not None:
        progress(Progress("done", "UFCs", message=f"wrote {out}"))
    return InferRunResult(
        out,
        wall,
        dict(art.storage),
        s.subsets,
        names,
        iters,
        resumed,
        trained,
        {"ufc_seconds": s.info.get("ufc_seconds")},
    )
