"""`haba evaluate`: train fresh networks from scratch on a distilled set, test on the real test set.

The standard protocol of DC/DSA/DM/MTT (:mod:`habacli.evaluate.protocol`): per model, ``runs``
fresh networks (run ``r`` seeded with ``seed + r``), SGD momentum 0.9 / wd 5e-4, lr = the
artifact's learned lr for the network it was learned on (else 0.01: :func:`model_lrs`), DSA while
training, one test pass at the end on
the *whole* real test set, transformed into model space exactly as the training data (the
artifact's normalisation, and the train-fitted ZCA when the artifact used ZCA).

HaBa sets are trained, by default, with the official code's sampled expansion: every epoch each
basis appears once, under a uniformly random hallucinator. The hallucinators are frozen, so the
whole ``bases x hallucinators`` set is decoded once (no grad) and each epoch just gathers one
column per basis. ``expansion='full'`` trains on all pairs every epoch.

Reported std is the population std over runs (``ddof=0``, numpy's default, as the papers'
``np.std``). :func:`evaluate_random` is the random-real-images baseline under the same protocol.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from habacli.artifact.codec import load_artifact
from habacli.artifact.header import local_path
from habacli.data import DatasetSpec, fit_zca, get_spec, load_split
from habacli.data.real import stratified_val_mask
from habacli.errors import ConfigError, UnknownNameError
from habacli.evaluate.batched import train_runs
from habacli.evaluate.protocol import TrainResult, train_and_test
from habacli.infer.artifact import recipe_from_dict
from habacli.infer.labels import ensemble_logits
from habacli.infer.teachers import load_teachers
from habacli.infer.train import InferRecipe, train_student
from habacli.networks import NETWORKS, default_network
from habacli.runtime.amp import check_amp
from habacli.runtime.device import check_compile, pick_device, resolve_amp, warn_if_emulated
from habacli.runtime.progress import Progress, ProgressFn
from habacli.transforms.augment import dsa_for

__all__ = ["EvalResult", "ModelResult", "TrainResult", "evaluate", "evaluate_random", "train_and_test"]

EXPANSIONS = ("sampled", "full")
RECIPES = ("artifact", "standard")
DEFAULT_LR = 0.01
STD_DEFINITION = "population std over runs (ddof=0, numpy default)"


@dataclass
class ModelResult:
    """Accuracies of one network architecture over the runs."""

    model: str
    accuracies: list[float]
    train_loss_curves: list[list[float]] = field(default_factory=list)
    test_curves: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean accuracy in [0, 1]."""
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Population std (ddof=0) of the accuracies."""
        if not self.accuracies:
            return math.nan
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accuracies) / len(self.accuracies))

    def to_dict(self, *, curves: bool = False) -> dict[str, Any]:
        """JSON-friendly form; learning curves only if ``curves``."""
        d: dict[str, Any] = {"model": self.model, "accuracies": self.accuracies, "mean": self.mean, "std": self.std}
        if curves:
            d["train_loss_curves"] = self.train_loss_curves
            d["test_curves"] = [[list(p) for p in c] for c in self.test_curves]
        return d


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate` / :func:`evaluate_random`."""

    source: str  # artifact path or "random:<dataset>"
    dataset: str
    models: dict[str, ModelResult]
    settings: dict[str, Any]
    wall_time_s: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, curves: bool = False) -> dict[str, Any]:
        """JSON-friendly form (accuracies as fractions in [0, 1])."""
        return {
            "source": self.source,
            "dataset": self.dataset,
            "models": {k: v.to_dict(curves=curves) for k, v in self.models.items()},
            "settings": self.settings,
            "wall_time_s": self.wall_time_s,
            "notes": self.notes,
        }

    def summary(self) -> str:
        """One line per model: ``convnet: 52.1 +- 0.4 % over 5 runs``."""
        return "\n".join(
            f"{m}: {100 * r.mean:.1f} +- {100 * r.std:.1f} % over {len(r.accuracies)} runs"
            for m, r in self.models.items()
        )


def _check(runs: int, epochs: int, lr: float | None, batch_size: int, test_every: int | None) -> None:
    if runs < 1:
        raise ConfigError(f"--runs must be >= 1, got {runs}")
    if epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {epochs}")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if test_every is not None and test_every < 1:
        raise ConfigError(f"--test-every must be >= 1, got {test_every}")


def _models(models: Sequence[str] | str | None, spec: Any) -> list[str]:
    if isinstance(models, str):
        models = [m for m in models.split(",")]
    names = [m.strip().lower() for m in (models or []) if m and m.strip()]
    if not names:
        names = [default_network(spec)]
    for m in names:
        NETWORKS.get(m)  # unknown -> UnknownNameError with suggestions
    return list(dict.fromkeys(names))


def distilled_network(artifact: Any, spec: Any) -> str:
    """The network an artifact was distilled with: ``extra.distill.model`` (what haba writes), else
    ``objective.config.model``, else the dataset's reference ConvNet (:func:`default_network`)."""
    distill = (getattr(artifact, "extra", None) or {}).get("distill") or {}
    config = getattr(artifact, "objective_config", None) or {}
    for name in (distill.get("model"), config.get("model")):
        if isinstance(name, str) and name.strip():
            return name.strip().lower()
    return default_network(spec)


def model_lrs(names: Sequence[str], artifact: Any, spec: Any, lr: float | None) -> dict[str, tuple[float, str]]:
    """``{network: (lr, source)}``: ``--lr`` for every network when given; else the artifact's learned lr
    for the network it was learned on (:func:`distilled_network`) and 0.01 for the others, since a
    student lr learned for one network is no lr for another (an MTT set's 0.028 trains VGG-11 to
    chance level on Fashion-MNIST: docs/fidelity.md); else 0.01."""
    if lr is not None:
        return {n: (float(lr), "--lr") for n in names}
    learned = getattr(artifact, "learned_lr", None)
    if not learned:
        return {n: (DEFAULT_LR, "default") for n in names}
    own = distilled_network(artifact, spec)
    return {n: (float(learned), "learned") if n == own else (DEFAULT_LR, "default") for n in names}


def image_size_arg(spec: Any, data_dir: Any) -> int | None:
    """``image_size`` to pass to the data loaders: None at the dataset's native size."""
    try:
        native = int(get_spec(spec.name, data_dir=data_dir).height)
    except Exception:  # noqa: BLE001 - custom specs may need the data; load_split reports that
        return None
    return None if native == int(spec.height) else int(spec.height)


SPLITS = ("test", "val")


def model_space_test(
    spec: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    zca: Any,
    device: Any,
    data_dir: str | os.PathLike | None = None,
    chunk: int = 2048,
    heldout: tuple[float, int] | None = None,
) -> tuple[Any, Any]:
    """The real images a set is scored on, in model space (``zca(normalize(x / 255))`` on ``device``):
    the test split, or with ``heldout = (val_fraction, seed)`` the held-out part of the train split that
    ``haba distill`` carves with the same fraction and seed (its validation split)."""
    which = "test" if heldout is None else "train"
    split = load_split(spec.name, which, data_dir=data_dir, image_size=image_size_arg(spec, data_dir))
    if tuple(split.images.shape[1:]) != (spec.channels, spec.height, spec.width):
        raise ConfigError(
            f"the {spec.name} {which} images are {tuple(split.images.shape[1:])}, the set is "
            f"{(spec.channels, spec.height, spec.width)}"
        )
    images, labels = split.images, split.labels
    if heldout is not None:
        mask = stratified_val_mask(labels, spec.num_classes, heldout[0], heldout[1])
        images, labels = images[mask], labels[mask]
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    parts = []
    for start in range(0, images.shape[0], chunk):
        x = (images[start : start + chunk].float().div_(255.0) - m) / s
        parts.append((zca.apply(x) if zca is not None else x).to(device))
    x = torch.cat(parts) if parts else torch.empty((0, spec.channels, spec.height, spec.width), device=device)
    return x, labels.to(device=device, dtype=torch.long)


def artifact_heldout(artifact: Any) -> tuple[float, int]:
    """``(val_fraction, seed)`` of the held-out split an artifact's distillation validated on.

    Raises :class:`ConfigError` when the artifact records none (INFER sets, hand-built sets, val_fraction 0)."""
    validation = (getattr(artifact, "extra", None) or {}).get("validation") or {}
    fraction, seed = validation.get("val_fraction"), getattr(artifact, "seed", None)
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1 or seed is None:
        raise ConfigError(
            "--split val needs the held-out split the set was distilled against, and this artifact records none "
            "(extra.validation.val_fraction and seed); evaluate it on the test split"
        )
    return float(fraction), int(seed)


def _load(artifact_ref: Any) -> tuple[Any, str]:
    if hasattr(artifact_ref, "decode") and hasattr(artifact_ref, "bases"):
        return artifact_ref, "<artifact>"

    path = local_path(artifact_ref)
    return load_artifact(path, device="cpu"), str(artifact_ref)


def _run_models(
    names: list[str],
    train: Any,
    test: tuple[Any, Any],
    *,
    spec: Any,
    runs: int,
    epochs: int,
    lr: float | dict[str, float],
    batch_size: int,
    seed: int,
    device: Any,
    amp: str | None,
    test_every: int | None,
    progress: ProgressFn | None,
    train_for_run: Callable[[int], Any] | None = None,
    standardize_batches: bool = False,
    compile: bool = False,
    images_per_epoch: int | None = None,
) -> dict[str, ModelResult]:
    dsa = dsa_for(spec)
    total = len(names) * runs * (epochs + 1)
    results = {}
    for m, name in enumerate(names):
        base = m * runs * (epochs + 1)

        def tick(e: Progress, _base: int = base, _name: str = name) -> None:
            if progress is not None:
                progress(Progress("epoch", "evaluate", _base + e.done, total, message=f"{_name} {e.message}"))

        out = train_runs(
            name,
            [train if train_for_run is None else train_for_run(r) for r in range(runs)],
            test,
            spec=spec,
            epochs=epochs,
            lr=lr[name] if isinstance(lr, dict) else lr,
            batch_size=batch_size,
            dsa=dsa,
            seeds=[seed + r for r in range(runs)],
            device=device,
            amp=amp,
            test_every=test_every,
            standardize_batches=standardize_batches,
            compile=compile,
            images_per_epoch=images_per_epoch,
            progress=tick,
        )
        results[name] = ModelResult(
            name,
            [t.accuracy for t in out],
            [t.train_loss_curve for t in out],
            [t.test_curve for t in out],
        )
    return results


def evaluate(
    artifact_ref: Any,
    *,
    models: Sequence[str] | str | None = ("convnet",),
    runs: int = 5,
    epochs: int | None = None,
    lr: float | None = None,
    expansion: str = "sampled",
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    amp: str | None = None,
    batch_size: int = 256,
    test_every: int | None = None,
    standardize_batches: bool = False,
    compile: bool = False,
    recipe: str = "artifact",
    split: str = "test",
    compensators: bool = True,
    progress: ProgressFn | None = None,
) -> EvalResult:
    """Evaluate an artifact (path, ``hf://`` reference or loaded artifact): with ``recipe="artifact"`` (the
    default) under the artifact's own evaluation recipe when it has one (format 1.2, INFER: all instances,
    stored soft labels, :func:`_evaluate_recipe`), otherwise, or with ``recipe="standard"``, under the
    standard hard-label protocol (``epochs`` default 1000). With a recipe, ``epochs`` (when given) replaces
    the recipe's; its lr and batch size are the recipe's.

    ``standardize_batches`` reproduces HaBa's official per-batch standardisation (off by default:
    the distillation never saw standardised images, and it makes a test prediction depend on the
    rest of its batch).

    ``compile`` runs each network through ``torch.compile`` (opt-in: it pays a one-off compilation,
    seconds to a minute, for faster steps; see docs/benchmarks.md).

    ``split="val"`` scores the networks on the held-out part of the train split that the set's distillation
    validated on (:func:`artifact_heldout`) instead of the test split: the split to choose settings on.

    ``compensators=False`` (INFER artifacts only) trains on the natural images and their own soft labels alone,
    every compensated instance left out: INFER's no-compensator ablation, which says what the compensators add.

    ``models=None`` uses the dataset's default network. Raises :class:`ConfigError` /
    :class:`UnknownNameError` for bad options and :class:`DataNotFoundError` when the real test set
    is not available locally.
    """
    if recipe not in RECIPES:
        raise UnknownNameError("recipe", recipe, RECIPES)
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS)
    _check(runs, epochs if epochs is not None else 1, lr, batch_size, test_every)
    amp = check_amp(amp)
    if expansion not in EXPANSIONS:
        raise UnknownNameError("expansion", expansion, EXPANSIONS)
    start = time.perf_counter()
    artifact, source = _load(artifact_ref)
    if not compensators and getattr(artifact, "compensators", None) is None:
        raise ConfigError("--no-compensators applies only to an INFER artifact (this one stores no compensators)")
    heldout = artifact_heldout(artifact) if split == "val" else None
    if recipe == "artifact" and getattr(artifact, "evaluation_recipe", None) is not None:
        if lr is not None or amp or compile or test_every is not None or batch_size != 256 or standardize_batches:
            raise ConfigError(
                "--lr, --amp, --compile, --test-every, --batch-size and --standardize-batches do not apply to the "
                "artifact's own evaluation recipe (INFER); drop them, or pass --recipe standard"
            )
        return _evaluate_recipe(
            artifact,
            source,
            models=models,
            runs=runs,
            epochs=epochs,
            seed=seed,
            device=device,
            data_dir=data_dir,
            progress=progress,
            start=start,
            heldout=heldout,
            compensators=compensators,
        )
    epochs = 1000 if epochs is None else epochs
    spec = DatasetSpec.from_dict(artifact.spec if isinstance(artifact.spec, dict) else artifact.spec.to_dict())
    names = _models(models, spec)
    dev = pick_device(device)
    amp = resolve_amp(amp, dev)
    warn_if_emulated(dev, amp)
    if compile:
        check_compile(dev)
    notes: list[str] = []
    zca = None
    if artifact.zca is not None:
        zca = fit_zca(
            spec.name, data_dir=data_dir, eps=float(artifact.zca.eps), image_size=image_size_arg(spec, data_dir)
        )
        gap = float((zca.mean.float().reshape(-1) - artifact.zca.mean.float().reshape(-1)).abs().max())
        if gap > 1e-3:
            notes.append(
                f"the artifact's ZCA mean differs from the ZCA fitted on {spec.name}'s train split "
                f"by up to {gap:.3g}: the test set may not be whitened like the training data"
            )
    test = model_space_test(
        spec, mean=artifact.mean, std=artifact.std, zca=zca, device=dev, data_dir=data_dir, heldout=heldout
    )
    with torch.no_grad():
        x_all, y_all = artifact.decode(device=dev, pixel=False)
    x_all, y_all = x_all.detach().float().contiguous(), y_all.to(device=dev, dtype=torch.long)
    k = int(artifact.num_hallucinators)
    n_bases = int(artifact.bases.shape[0])
    if not compensators:  # an INFER artifact: its natural images lead the instance order (spec section 12)
        x_all, y_all = x_all[:n_bases], y_all[:n_bases]
        notes.append(f"no compensators: the {n_bases} natural images alone (INFER's ablation)")
    if artifact.soft_labels is not None:  # per-basis logits -> target distributions (spec section 3)
        probs = torch.softmax(artifact.soft_labels.to(dev).float(), dim=1)
        y_all = probs.repeat_interleave(max(k, 1), dim=0)
        notes.append("trained on the artifact's soft labels (softmax of the stored logits)")
    if k > 1 and expansion == "sampled":
        train: Any = sampled_expansion(x_all, y_all, k)
        per_epoch = n_bases
    else:
        train, per_epoch = (x_all, y_all), int(x_all.shape[0])
    lrs = model_lrs(names, artifact, spec, lr)
    lr_used, lr_source = lrs[names[0]]
    if len({v for v in lrs.values()}) > 1:
        notes.append(
            "learning rate per network: "
            + ", ".join(f"{n} {v:g} ({src})" for n, (v, src) in lrs.items())
            + f"; the learned lr belongs to {distilled_network(artifact, spec)}, the network it was learned on"
        )
    results = _run_models(
        names,
        train,
        test,
        spec=spec,
        runs=runs,
        epochs=epochs,
        lr={n: v for n, (v, _) in lrs.items()},
        batch_size=batch_size,
        seed=seed,
        device=dev,
        amp=amp,
        test_every=test_every,
        progress=progress,
        standardize_batches=standardize_batches,
        compile=compile,
        images_per_epoch=per_epoch,
    )
    settings = {
        "epochs": epochs,
        "epochs_run": epochs + 1,
        "runs": runs,
        "lr": lr_used,
        "lr_source": lr_source,
        "lr_by_model": {n: v for n, (v, _) in lrs.items()},
        "lr_source_by_model": {n: src for n, (_, src) in lrs.items()},
        "batch_size": batch_size,
        "expansion": expansion if k > 1 else "full",
        "seed": seed,
        "device": str(dev),
        "amp": amp,
        "dsa": dsa_strategy(spec),
        "zca": zca is not None,
        "num_bases": n_bases,
        "num_hallucinators": k,
        "num_images": int(x_all.shape[0]),
        "images_per_epoch": per_epoch,
        "ipc": int(getattr(artifact, "ipc", 0) or 0),
        "split": split,
        "compensators": compensators,
        "test_images": int(test[0].shape[0]),
        "std": STD_DEFINITION,
        "standardize_batches": standardize_batches,
        "compile": compile,
    }
    return EvalResult(source, spec.name, results, settings, time.perf_counter() - start, notes)


def _evaluate_recipe(
    artifact: Any,
    source: str,
    *,
    models: Sequence[str] | str | None,
    runs: int,
    epochs: int | None,
    seed: int,
    device: str,
    data_dir: str | os.PathLike | None,
    progress: ProgressFn | None,
    start: float,
    heldout: tuple[float, int] | None = None,
    compensators: bool = True,
) -> EvalResult:
    """The artifact's evaluation recipe (spec section 12.5; INFER's ``val_static.py``): every instance in model
    space, crop + flip, MixUp with the linearly interpolated stored soft labels, KL at T, AdamW, cosine; the
    final epoch's test accuracy. Run r trains network ``models`` with seed ``seed + r``. ``compensators=False``
    keeps only the natural images (the first ``num_images`` instances, spec section 12) and their soft labels."""
    rec = recipe_from_dict(artifact.evaluation_recipe, epochs=epochs)
    spec = DatasetSpec.from_dict(artifact.spec if isinstance(artifact.spec, dict) else artifact.spec.to_dict())
    network = artifact.evaluation_recipe.get("network")
    names = _models(models if models is not None or not network else network, spec)
    dev = pick_device(device)
    test = model_space_test(
        spec, mean=artifact.mean, std=artifact.std, zca=None, device=dev, data_dir=data_dir, heldout=heldout
    )
    with torch.no_grad():
        x, y = artifact.decode(device=dev, pixel=False)
    soft = artifact.instance_soft_labels
    if rec.label_mode == "soft" and soft is None:
        raise ConfigError("the artifact's evaluation recipe asks for soft labels but it stores none")
    x, y = x.float(), y.long()
    soft = None if soft is None else soft.to(dev)
    if not compensators:
        n = int(artifact.bases.shape[0])  # the natural images lead the instance order
        x, y, soft = x[:n], y[:n], None if soft is None else soft[:n]
    results = _train_under_recipe(
        lambda _r: (x, y, soft),
        names,
        rec,
        test=test,
        spec=spec,
        mean=artifact.mean,
        std=artifact.std,
        runs=runs,
        seed=seed,
        device=dev,
        progress=progress,
    )
    settings = {
        **_recipe_settings(rec, runs=runs, seed=seed, device=dev, test=test),
        "recipe": "artifact",
        "num_bases": int(artifact.bases.shape[0]),
        "num_hallucinators": 0,
        "num_images": int(x.shape[0]),
        "num_instances": int(x.shape[0]),
        "images_per_epoch": int(x.shape[0]),
        "expansion": "full",
        "compensators": compensators,
        "ipc": int(getattr(artifact, "ipc", 0) or 0),
        "split": "test" if heldout is None else "val",
    }
    notes = (
        []
        if compensators
        else [f"no compensators: the {int(x.shape[0])} natural images and their soft labels alone (INFER's ablation)"]
    )
    notes += [
        f"followed the artifact's evaluation recipe ({rec.label_mode} labels, {rec.loss} at T = {rec.temperature:g}, "
        f"{rec.optimizer} lr {rec.lr:g}, {rec.epochs} epochs, batch {rec.batch_size}); final-epoch accuracy. "
        "--recipe standard evaluates with hard labels instead"
    ]
    return EvalResult(source, spec.name, results, settings, time.perf_counter() - start, notes)


def sampled_expansion(x_all: Any, y_all: Any, k: int) -> Callable[[int, Any], tuple[Any, Any]]:
    """HaBa's evaluation expansion over a decoded set ``x_all [n*K, ...]`` (basis-major): each call
    returns every basis once, each under a hallucinator drawn uniformly from ``generator``. The
    hallucinators are frozen during evaluation, so this is a gather, not a decode."""
    n = int(x_all.shape[0]) // k
    offsets = torch.arange(n, device=x_all.device) * k
    y_bases = y_all[offsets]

    def train(_epoch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(k, (n,), generator=generator).to(x_all.device)
        return x_all[offsets + pick], y_bases

    return train


def dsa_strategy(spec: Any) -> str:
    """The DSA strategy string used for ``spec`` (flip dropped for digits)."""
    d = dsa_for(spec)
    return str(getattr(d, "strategy", d))


def evaluate_random(
    dataset: str,
    ipc: int,
    *,
    models: Sequence[str] | str | None = ("convnet",),
    runs: int = 5,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    amp: str | None = None,
    batch_size: int = 256,
    test_every: int | None = None,
    compile: bool = False,
    zca: bool = False,
    split: str = "test",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    teachers: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> EvalResult:
    """The random baseline: ``ipc`` random real training images per class (a fresh draw per run,
    seeded with ``seed + run``; the same draw for every model of that run), trained and tested under
    the same protocol, in the space a distilled set of the dataset lives in: normalised with the
    dataset's mean/std, or with ``zca`` whitened as MTT does (no mean/std normalisation, then ZCA
    fitted on the train split, the test set whitened with the same ZCA).

    ``split="val"`` scores on the held-out part of the train split that ``haba distill --seed split_seed`` with
    ``val_fraction`` validates on, and draws the random images from the rest of the train split only.

    ``teachers`` (a folder of ``haba teachers``): INFER's "random real images with the same soft labels" row; the
    teacher ensemble's averaged logits on each drawn image are its soft labels, and each network trains under
    INFER's recipe (:class:`~habacli.infer.train.InferRecipe`, ``epochs`` default 400, final epoch reported)
    instead of the standard protocol (``epochs`` default 1000)."""
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS)
    if teachers is not None and zca:
        raise ConfigError("--teachers evaluates in INFER's mean/std space: drop --zca")
    if teachers is not None and (lr is not None or amp or compile or test_every is not None or batch_size != 256):
        raise ConfigError(
            "--lr, --amp, --compile, --test-every and --batch-size do not apply with --teachers (INFER's recipe)"
        )
    epochs = (InferRecipe().epochs if teachers is not None else 1000) if epochs is None else epochs
    _check(runs, epochs, lr, batch_size, test_every)
    amp = check_amp(amp)
    if ipc < 1:
        raise ConfigError(f"--ipc must be >= 1, got {ipc}")
    start = time.perf_counter()
    spec = get_spec(dataset, data_dir=data_dir)
    names = _models(models, spec)
    dev = pick_device(device)
    amp = resolve_amp(amp, dev)
    warn_if_emulated(dev, amp)
    if compile:
        check_compile(dev)
    train_split = load_split(spec.name, "train", data_dir=data_dir)
    heldout = (float(val_fraction), int(split_seed)) if split == "val" else None
    pool_images, labels = train_split.images, train_split.labels.long()
    if heldout is not None:  # never draw an image the networks are scored on
        keep = ~stratified_val_mask(labels, spec.num_classes, heldout[0], heldout[1])
        pool_images, labels = pool_images[keep], labels[keep]
    counts = torch.bincount(labels, minlength=spec.num_classes)
    if int(counts.min()) < ipc:
        raise ConfigError(
            f"--ipc {ipc} is more than the {int(counts.min())} training images of the smallest {spec.name} class"
        )
    whitening = fit_zca(spec.name, data_dir=data_dir) if zca else None
    mean, std = ((0.0,) * spec.channels, (1.0,) * spec.channels) if zca else (spec.mean, spec.std)
    test = model_space_test(spec, mean=mean, std=std, zca=whitening, device=dev, data_dir=data_dir, heldout=heldout)
    order = torch.argsort(labels, stable=True)  # class-major indices, class c at offsets[c]..
    offsets = torch.cumsum(counts, 0) - counts
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)

    def draw(run: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(int(seed) + run)
        # ipc distinct random positions inside each class, all classes at once.
        keys = torch.rand(spec.num_classes, int(counts.max()), generator=g)
        keys[torch.arange(int(counts.max()))[None, :] >= counts[:, None]] = 2.0  # past the class end
        pos = keys.argsort(dim=1)[:, :ipc]
        idx = order[(offsets[:, None] + pos).reshape(-1)]
        x = (pool_images[idx].float().div_(255.0) - m) / s
        if whitening is not None:
            x = whitening.apply(x)
        return x.to(dev), labels[idx].to(dev)

    if teachers is not None:
        return _random_with_soft_labels(
            spec,
            names,
            draw,
            test,
            teachers=teachers,
            runs=runs,
            epochs=epochs,
            seed=seed,
            device=dev,
            split=split,
            ipc=ipc,
            progress=progress,
            start=start,
        )
    results = _run_models(
        names,
        None,
        test,
        spec=spec,
        runs=runs,
        epochs=epochs,
        lr=lr or DEFAULT_LR,
        batch_size=batch_size,
        seed=seed,
        device=dev,
        amp=amp,
        test_every=test_every,
        progress=progress,
        train_for_run=draw,
        compile=compile,
        images_per_epoch=ipc * spec.num_classes,
    )
    settings = {
        "epochs": epochs,
        "epochs_run": epochs + 1,
        "runs": runs,
        "lr": float(lr or DEFAULT_LR),
        "lr_source": "--lr" if lr is not None else "default",
        "batch_size": batch_size,
        "seed": seed,
        "device": str(dev),
        "amp": amp,
        "dsa": dsa_strategy(spec),
        "zca": bool(zca),
        "ipc": ipc,
        "num_images": ipc * spec.num_classes,
        "images_per_epoch": ipc * spec.num_classes,
        "split": split,
        "test_images": int(test[0].shape[0]),
        "std": STD_DEFINITION,
        "baseline": "random",
        "compile": compile,
    }
    return EvalResult(f"random:{spec.name}", spec.name, results, settings, time.perf_counter() - start)


def _random_with_soft_labels(
    spec: Any,
    names: list[str],
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    test: tuple[Any, Any],
    *,
    teachers: str | os.PathLike,
    runs: int,
    epochs: int,
    seed: int,
    device: Any,
    split: str,
    ipc: int,
    progress: ProgressFn | None,
    start: float,
) -> EvalResult:
    """Random real images with the teacher ensemble's soft labels, trained under INFER's recipe."""
    shape = (spec.channels, spec.num_classes, spec.height, spec.width)
    models, metas = load_teachers(teachers, spec.name, shape=shape, device=device)
    rec = InferRecipe(epochs=epochs)

    def instances(r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = draw(r)
        with torch.no_grad():
            return x, y, ensemble_logits(models, x)

    results = _train_under_recipe(
        instances,
        names,
        rec,
        test=test,
        spec=spec,
        mean=spec.mean,
        std=spec.std,
        runs=runs,
        seed=seed,
        device=device,
        progress=progress,
    )
    archs = [str(m["arch"]) for m in metas]
    settings = {
        **_recipe_settings(rec, runs=runs, seed=seed, device=device, test=test),
        "baseline": "random",
        "recipe": "infer",
        "soft_labels": f"teacher ensemble ({', '.join(archs)}), averaged logits at T = {rec.temperature:g}",
        "teachers": archs,
        "ipc": ipc,
        "num_images": ipc * spec.num_classes,
        "images_per_epoch": ipc * spec.num_classes,
        "split": split,
    }
    notes = [f"soft labels from the teachers in {teachers}: {', '.join(archs)}; INFER's recipe, final epoch reported"]
    return EvalResult(f"random:{spec.name}", spec.name, results, settings, time.perf_counter() - start, notes)


def _train_under_recipe(
    instances: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    names: list[str],
    rec: InferRecipe,
    *,
    test: tuple[Any, Any],
    spec: Any,
    mean: Sequence[float],
    std: Sequence[float],
    runs: int,
    seed: int,
    device: Any,
    progress: ProgressFn | None,
) -> dict[str, ModelResult]:
    """Run ``r`` trains every network of ``names`` on ``instances(r)`` (model-space images, hard labels, soft-label
    logits or None) under ``rec`` with seed ``seed + r``; the final epoch's test accuracy per run."""
    results = {name: ModelResult(name, []) for name in names}
    total, done = len(names) * runs * rec.epochs, 0
    for r in range(runs):
        x, y, soft = instances(r)
        for name in names:

            def tick(e: Progress, _base: int = done, _what: str = f"{name} run {r + 1}/{runs}") -> None:
                if progress is not None:
                    progress(Progress("epoch", "evaluate", _base + e.done, total, stats=e.stats, message=_what))

            out = train_student(
                x,
                y,
                soft,
                test=test,
                mean=mean,
                std=std,
                flip=spec.flip,
                recipe=rec,
                network=name,
                generator=torch.Generator().manual_seed(seed + r),
                device=device,
                progress=tick,
            )
            done += rec.epochs
            results[name].accuracies.append(out.accuracy)
            results[name].train_loss_curves.append(out.losses)
    return results


def _recipe_settings(rec: InferRecipe, *, runs: int, seed: int, device: Any, test: tuple[Any, Any]) -> dict[str, Any]:
    """The settings every evaluation under an INFER-style recipe reports."""
    return {
        "evaluation_recipe": rec.to_dict(),
        "epochs": rec.epochs,
        "epochs_run": rec.epochs,
        "reported": "final_epoch",
        "runs": runs,
        "lr": rec.lr,
        "lr_source": "recipe",
        "batch_size": rec.batch_size,
        "seed": seed,
        "device": str(device),
        "amp": None,
        "dsa": "none (recipe: " + ", ".join(rec.augmentations) + f", MixUp {rec.mixup_alpha:g})",
        "zca": False,
        "test_images": int(test[0].shape[0]),
        "std": STD_DEFINITION,
        "temperature": rec.temperature,
    }
