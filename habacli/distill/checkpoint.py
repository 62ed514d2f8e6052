"""Checkpoints of a distillation run: one safetensors file, tensors + JSON metadata, no pickle.

Optimiser states are flattened: every tensor of ``optimizer.state_dict()["state"]`` becomes
``opt.<name>.state.<param index>.<key>``; everything else (param groups, non-tensor state) goes
to the JSON metadata. The RNG state of the run's generator is a uint8 tensor. Writes are atomic,
so a killed run leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from habacli import __version__
from habacli.errors import ConfigError
from habacli.runtime.atomic import atomic_path

if TYPE_CHECKING:
    from habacli.distill.run import Run  # the run module imports this one when it checkpoints

FORMAT = "haba-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "haba_checkpoint"


def checkpoint_path_for(out: str | os.PathLike) -> Path:
    """The default checkpoint next to an artifact: ``run.safetensors`` -> ``run.ckpt.safetensors``."""
    out = Path(out)
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(f"{stem}.ckpt.safetensors")


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, json_meta)`` for one optimiser's state."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{key}"] = value
            else:
                state_meta.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def restore_optimizer(
    opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for idx, st in meta.get("state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    head = f"{prefix}.state."
    for name, value in tensors.items():
        if name.startswith(head):
            idx, key = name[len(head) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    groups = meta["param_groups"]
    current = opt.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
        raise ConfigError(f"checkpoint optimiser {prefix!r} does not match this run's parameters")
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` (any device; copied to contiguous CPU) and JSON ``meta`` atomically."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), _META_KEY: json.dumps(meta, sort_keys=True)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(clean, str(tmp), metadata=header)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint to resume from at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable checkpoint ({e})") from None
    if header.get("format") != FORMAT or _META_KEY not in header:
        raise ConfigError(f"{path}: not a haba checkpoint")
    if header.get("format_version") != str(FORMAT_VERSION):
        raise ConfigError(f"{path}: unsupported checkpoint version {header.get('format_version')!r}")
    try:
        meta = json.loads(header[_META_KEY])
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: damaged checkpoint metadata ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: damaged checkpoint metadata (not a JSON object)")
    return tensors, meta


def generator_state(gen: torch.Generator) -> torch.Tensor:
    """The generator's state as a uint8 tensor."""
    return gen.get_state().clone()


def set_generator_state(gen: torch.Generator, state: torch.Tensor) -> None:
    """Restore :func:`generator_state`."""
    gen.set_state(state.to(torch.uint8).cpu())


# ----------------------------------------------------------------------------------- runs


def save_run(run: Run, path: Path) -> None:
    """Checkpoint a :class:`habacli.distill.run.Run`: engine state, optimisers, objective, RNG, history, best."""
    tensors = dict(run.engine.state_tensors())
    opt_meta: dict[str, Any] = {}
    for name, opt in run.engine.all_optimizers().items():
        t, m = flatten_optimizer(opt, f"opt.{name}")
        tensors.update(t)
        opt_meta[name] = m
    for k, v in run.objective.state_dict().items():
        tensors[f"objective.{k}"] = v
    tensors["rng.generator"] = generator_state(run.generator)
    best_meta = None
    if run.best is not None:
        tensors["best.bases"] = run.best["state"]["bases"]
        for k, v in run.best["state"]["hallucinators"].items():
            tensors[f"best.hallucinators.{k}"] = v
        best_meta = {
            "acc": run.best["acc"],
            "iteration": run.best["iteration"],
            "objective": run.best["state"]["objective"],
        }
    meta = {
        "iteration": run.iteration,
        "config": run.cfg.to_dict(),
        "fingerprint": run.cfg.fingerprint(),
        "optimizers": opt_meta,
        "history": run.history,
        "best": best_meta,
        "version": __version__,
        "elapsed": run.total_elapsed(),
    }
    save_checkpoint(path, tensors, meta)


def restore_run(run: Run, path: Path) -> None:
    """Restore :func:`save_run` into a freshly built run with the same configuration (else ConfigError)."""
    tensors, meta = load_checkpoint(path)
    ours = run.cfg.fingerprint()
    # an option added after the checkpoint was written counts as its default there
    defaults = {f.name: f.default for f in dataclasses.fields(run.cfg) if f.default is not dataclasses.MISSING}
    theirs = {**{k: v for k, v in defaults.items() if k in ours}, **meta.get("fingerprint", {})}
    # likewise an objective option (e.g. DC/DSA's inner_set) counts as the objective's default there
    if isinstance(theirs.get("objective_config"), dict) and isinstance(ours.get("objective_config"), dict):
        obj_defaults = getattr(run.objective, "defaults", {})
        known = {k: v for k, v in obj_defaults.items() if k in ours["objective_config"]}
        theirs["objective_config"] = {**known, **theirs["objective_config"]}
    diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if diff:
        shown = "; ".join(f"{k}: {theirs.get(k)!r} in the checkpoint, {ours.get(k)!r} now" for k in diff[:4])
        raise ConfigError(
            f"--resume: {path} was made with a different configuration ({shown}); "
            "use the same options or start afresh without --resume"
        )
    run.engine.load_state_tensors(tensors)
    for name, opt in run.engine.all_optimizers().items():
        if name not in meta["optimizers"]:
            raise ConfigError(f"--resume: {path} lacks the state of optimiser {name!r}")
        restore_optimizer(opt, f"opt.{name}", tensors, meta["optimizers"][name])
    obj_state = {k[len("objective.") :]: v.to(run.device) for k, v in tensors.items() if k.startswith("objective.")}
    run.objective.load_state_dict(obj_state)
    set_generator_state(run.generator, tensors["rng.generator"])
    run.iteration = int(meta["iteration"])
    run.history = list(meta.get("history", []))
    run.elapsed_before = float(meta.get("elapsed", 0.0))
    best = meta.get("best")
    if best is not None:
        halluc = {k[len("best.hallucinators.") :]: v for k, v in tensors.items() if k.startswith("best.hallucinators.")}
        run.best = {
            "acc": best["acc"],
            "iteration": best["iteration"],
            "state": {"bases": tensors["best.bases"], "hallucinators": halluc, "objective": best.get("objective", {})},
        }
