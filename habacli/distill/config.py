"""The configuration of one ``haba distill`` run: defaults, presets, ``--config`` files, CLI flags.

Precedence (highest first): CLI flags > the ``--config`` TOML file > the preset > the defaults here.

Presets (``habacli/distill/presets/<name>.toml``) are data. Every table in a preset applies to the runs its
*path* matches; each path component is a selector:

- an objective name (``dm``, ``dc``, ``dsa``, ``mtt``);
- ``haba`` (factorised runs) or ``plain`` (``--no-factorize``);
- ``ipcN`` (exactly IPC N) or ``"ipc>=N"``;
- anything else is a dataset name (``cifar10``).

Top-level keys apply to every run. Matching tables are applied from the least to the most
specific (number of selectors), ties in file order. Keys that are not :class:`DistillConfig`
fields go to the objective (``DistillConfig.objective_config``) and must be among the objective's
``defaults``. This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from habacli._shapes import MODULATIONS, PADDINGS, hallucinator_values
from habacli.errors import ConfigError, UnknownNameError
from habacli.runtime.amp import check_amp

PRESETS: tuple[str, ...] = ("paper", "quick")
INIT_MODES: tuple[str, ...] = ("real", "noise")
HALLUCINATOR_INITS: tuple[str, ...] = ("official", "identity")
BUDGETS: tuple[str, ...] = ("paper", "matched")

#: Options that may change when a run is resumed (they do not change the optimisation path).
RESUMABLE_KEYS: frozenset[str] = frozenset(
    {
        "iterations",
        "device",
        "eval_every",
        "eval_start",
        "eval_epochs",
        "eval_runs",
        "eval_lr",
        "validate_single",
        "checkpoint_every",
        "log_every",
        "compile",
    }
)


@dataclass
class DistillConfig:
    """Every option of a distillation run (JSON-serialisable; stored in artifacts and checkpoints)."""

    dataset: str
    objective: str  # the baseline: dc | dsa | dm | mtt
    ipc: int  # the budget in images per class of the baseline
    factorize: bool = True  # False: the plain baseline (K = 0), same artifact format
    hallucinators: int = 5  # K, shared by all classes
    hallucinator_init: str = "official"  # official (PyTorch default convs) | identity (near-identity, opt-in)
    # pixel (the paper's FiLM maps) | channel (compact; format 1.1) | auto (auto_modulation)
    hallucinator_modulation: str = "pixel"
    hallucinator_padding: str = "valid"  # valid (the paper's network) | same (zero padding, format 1.3)
    single_channel: bool = False  # 1-channel bases (the hallucinators map them to the data's channels)
    # bases at 1/base_scale of the image size, bilinear-upsampled (IDC-style; format 1.1); 0: auto (auto_base_scale)
    base_scale: int = 1
    init: str = "real"  # bases from real images of their class (model space) or N(0, 1) noise
    budget: str = "paper"  # paper: ipc bases/class + hallucinators on top; matched: fit in C*ipc*c*h*w
    bases_per_class: int | None = None  # explicit override of the budget rule
    iterations: int = 1000
    seed: int = 0
    device: str = "auto"
    model: str | None = None  # the run's network (None: the default ConvNet for the data shape)
    image_size: int | None = None
    zca: bool = False  # model space = ZCA(pixels) as in MTT (no mean/std normalisation)
    dsa: bool = True  # siamese/per-sample DSA inside the objective
    contrast_dsa: bool = True  # per-sample DSA on HaBa's contrastive batches (official code)
    # synthetic-side optimisers (SGD)
    lr_img: float = 1.0
    momentum_img: float = 0.5
    lr_style: float | None = None  # hallucinators; None: lr_img
    momentum_style: float | None = None  # None: momentum_img
    # HaBa's adversarial game (research/haba.md section 2.4-2.6)
    lambda_cos: float = 0.1  # L_cos weight for bases and hallucinators
    lambda_cls: float = 1.0  # adversary: cross-entropy
    lambda_sim: float = 0.1  # adversary: (1 - cos) / 2
    lambda_con: float = 0.1  # adversary: SupCon
    supcon_temperature: float = 0.07
    supcon_base_temperature: float = 0.07
    adv_lr: float = 0.001
    adv_momentum: float = 0.9
    # bases per contrastive batch; 0: the baseline's image count ipc x C, the official batch_syn default (all
    # bases at base_scale 1; a random ipc x C of the base_scale^2 x as many low-resolution bases)
    batch_contrast: int = 0
    # validation (held-out split of train; never the test set)
    val_fraction: float = 0.1
    eval_every: int = 0  # 0: no validation; the final artifact is the last state
    eval_start: int = 0  # validate only from this iteration on (HaBa: the last 10 %)
    eval_epochs: int = 1000
    eval_runs: int = 1
    eval_lr: float | None = None  # None: the objective's learned lr, else 0.01
    eval_model: str | None = None
    # a lone validation point (e.g. only the last iteration) has nothing to choose between: it runs only
    # when asked (this flag, or eval_every given by the caller or a config file rather than a preset)
    validate_single: bool = False
    # bookkeeping
    checkpoint_every: int = 100
    log_every: int = 10
    amp: str = "off"  # off | bf16 (fp16 is refused: no loss scaling): autocast for the real forwards, the adversary, bf16 MTT student steps
    compile: bool = False  # torch.compile the objective's network calls
    channels_last: bool = False
    objective_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every option."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise :class:`ConfigError`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown distill option(s): {', '.join(unknown)}")
        return cls(**d)

    @property
    def effective_lr_style(self) -> float:
        return self.lr_img if self.lr_style is None else self.lr_style

    @property
    def effective_momentum_style(self) -> float:
        return self.momentum_img if self.momentum_style is None else self.momentum_style

    @property
    def num_hallucinators(self) -> int:
        """K as the run uses it (0 for plain runs)."""
        return self.hallucinators if self.factorize else 0

    def fingerprint(self) -> dict[str, Any]:
        """The options a resumed run must share with its checkpoint."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_KEYS}


def engine_keys() -> frozenset[str]:
    """Names of the engine-level options (every other key belongs to the objective)."""
    return frozenset(f.name for f in dataclasses.fields(DistillConfig)) - {"objective_config"}


# ----------------------------------------------------------------------------------- presets


def load_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of preset ``name`` (``paper`` or ``quick``)."""
    if name not in PRESETS:
        raise UnknownNameError("preset", name, PRESETS)
    text = resources.files("habacli.distill.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Flat options from a user ``--config`` TOML file (keys at the top level or under ``[distill]``)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {p}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {p}: invalid TOML ({e})") from None
    if isinstance(doc.get("distill"), dict):
        doc = {**{k: v for k, v in doc.items() if k != "distill"}, **doc["distill"]}
    nested = sorted(k for k, v in doc.items() if isinstance(v, dict))
    if nested:
        raise ConfigError(f"--config {p}: unexpected table(s) {', '.join(nested)}; put options at the top level")
    return doc


def _tables(doc: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    out = [(path, scalars)]
    for k, v in doc.items():
        if isinstance(v, dict):
            out.extend(_tables(v, path + (k,)))
    return out


def _selector_matches(
    sel: str, *, dataset: str, objective: str, ipc: int, factorize: bool, objectives: tuple[str, ...]
) -> bool:
    if sel in objectives:
        return sel == objective
    if sel in ("haba", "plain"):
        return (sel == "haba") == factorize
    if sel.startswith("ipc>="):
        return ipc >= int(sel[5:])
    if sel.startswith("ipc") and sel[3:].isdigit():
        return ipc == int(sel[3:])
    return sel == dataset.lower()


def resolve_preset(
    doc: dict[str, Any],
    *,
    dataset: str,
    objective: str,
    ipc: int,
    factorize: bool,
    objectives: tuple[str, ...] = ("dc", "dsa", "dm", "mtt"),
) -> dict[str, Any]:
    """Merge a preset's matching tables into one flat dict of options."""
    matched = [
        (len(path), order, values)
        for order, (path, values) in enumerate(_tables(doc))
        if all(
            _selector_matches(
                s, dataset=dataset, objective=objective, ipc=ipc, factorize=factorize, objectives=objectives
            )
            for s in path
        )
    ]
    merged: dict[str, Any] = {}
    for _, _, values in sorted(matched, key=lambda t: (t[0], t[1])):
        merged.update(values)
    return merged


def preset_zca(dataset: str, ipc: int, *, preset: str = "paper", objective: str = "mtt") -> bool:
    """Whether ``preset`` whitens ``dataset`` with ZCA for ``objective`` at ``ipc`` (plain sets)."""
    opts = resolve_preset(load_preset(preset), dataset=dataset, objective=objective, ipc=ipc, factorize=False)
    return bool(opts.get("zca", False))


# ----------------------------------------------------------------------------------- building


def build_config(
    dataset: str,
    objective: str,
    ipc: int,
    *,
    factorize: bool = True,
    preset: str = "paper",
    config_file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    objective_defaults: dict[str, Any] | None = None,
) -> DistillConfig:
    """Merge defaults < preset < config file < ``overrides`` (CLI) and validate the result.

    ``objective_defaults`` are the objective class's ``defaults`` (the valid objective keys);
    ``None`` skips the check of objective keys.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    file_opts = load_config_file(config_file) if config_file is not None else {}
    # factorize may itself come from the config file; presets are selected with the final value
    factorize = bool(overrides.get("factorize", file_opts.get("factorize", factorize)))
    preset_opts = resolve_preset(
        load_preset(preset), dataset=dataset, objective=objective, ipc=ipc, factorize=factorize
    )
    merged: dict[str, Any] = {}
    for source in (preset_opts, file_opts, overrides):
        merged.update(source)
    merged.update(dataset=dataset, objective=objective, ipc=ipc, factorize=factorize)
    if "validate_single" not in merged and ("eval_every" in overrides or "eval_every" in file_opts):
        merged["validate_single"] = True  # validation was asked for, not inherited from a preset
    keys = engine_keys()
    engine_opts = {k: v for k, v in merged.items() if k in keys}
    obj_opts = {k: v for k, v in merged.items() if k not in keys}
    nested = merged.get("objective_config")
    if isinstance(nested, dict):
        obj_opts.update(nested)
    obj_opts.pop("objective_config", None)
    if objective_defaults is not None:
        unknown = sorted(set(obj_opts) - set(objective_defaults))
        if unknown:
            allowed = sorted(keys | set(objective_defaults))
            raise ConfigError(f"unknown option(s) for {objective}: {', '.join(unknown)} (valid: {', '.join(allowed)})")
        obj_opts = {**objective_defaults, **obj_opts}
    cfg = _typed(engine_opts)
    cfg.objective_config = obj_opts
    validate(cfg)
    return cfg


def _typed(opts: dict[str, Any]) -> DistillConfig:
    """Coerce TOML/CLI values to the dataclass field types, with a clear error."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(DistillConfig):
        if f.name not in opts:
            continue
        value, kind = opts[f.name], str(f.type)
        try:
            if value is None:
                out[f.name] = None
            elif kind.startswith("bool"):
                if not isinstance(value, bool):
                    raise TypeError
                out[f.name] = value
            elif kind.startswith("int"):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                out[f.name] = int(value)
            elif kind.startswith("float"):
                if isinstance(value, bool):
                    raise TypeError
                out[f.name] = float(value)
            elif kind.startswith("str"):
                out[f.name] = str(value)
            else:
                out[f.name] = value
        except (TypeError, ValueError):
            raise ConfigError(f"option {f.name}: expected {kind.split(' ')[0]}, got {value!r}") from None
    return DistillConfig(**out)


def validate(cfg: DistillConfig) -> None:
    """Raise :class:`ConfigError` for impossible values (torch-free checks only)."""

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.ipc >= 1, f"--ipc must be >= 1, got {cfg.ipc}")
    need(cfg.hallucinators >= 0, f"--hallucinators must be >= 0, got {cfg.hallucinators}")
    need(
        not cfg.factorize or cfg.hallucinators >= 1,
        "--hallucinators 0 means no factorisation: use --no-factorize for the plain baseline",
    )
    need(cfg.init in INIT_MODES, f"--init must be one of {', '.join(INIT_MODES)}, got {cfg.init!r}")
    need(
        cfg.hallucinator_init in HALLUCINATOR_INITS,
        f"hallucinator_init must be one of {', '.join(HALLUCINATOR_INITS)}, got {cfg.hallucinator_init!r}",
    )
    need(
        cfg.hallucinator_modulation in (*MODULATIONS, "auto"),
        f"hallucinator_modulation must be one of {', '.join(MODULATIONS)} or auto, got {cfg.hallucinator_modulation!r}",
    )
    need(
        cfg.hallucinator_padding in PADDINGS,
        f"hallucinator_padding must be one of {', '.join(PADDINGS)}, got {cfg.hallucinator_padding!r}",
    )
    need(cfg.base_scale >= 0, f"--base-scale must be >= 0 (0: auto), got {cfg.base_scale}")
    need(cfg.budget in BUDGETS, f"--budget must be one of {', '.join(BUDGETS)}, got {cfg.budget!r}")
    cfg.amp = check_amp(cfg.amp) or "off"  # the one --amp check; "none" and "" are spelt "off"
    need(cfg.iterations >= 0, f"--iterations must be >= 0, got {cfg.iterations}")
    need(
        cfg.bases_per_class is None or cfg.bases_per_class >= 1,
        f"bases_per_class must be >= 1, got {cfg.bases_per_class}",
    )
    need(0.0 <= cfg.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    need(cfg.eval_every >= 0, f"--eval-every must be >= 0, got {cfg.eval_every}")
    need(
        cfg.eval_every == 0 or cfg.val_fraction > 0,
        "validation needs a held-out split: set val_fraction > 0 or --eval-every 0",
    )
    need(cfg.eval_epochs >= 1 and cfg.eval_runs >= 1, "--eval-epochs and eval_runs must be >= 1")
    need(cfg.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {cfg.checkpoint_every}")
    need(cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}")
    need(cfg.batch_contrast >= 0, f"batch_contrast must be >= 0, got {cfg.batch_contrast}")
    for name in ("lr_img", "adv_lr", "supcon_temperature", "supcon_base_temperature"):
        need(getattr(cfg, name) > 0, f"{name} must be > 0, got {getattr(cfg, name)}")
    need(cfg.effective_lr_style > 0, f"lr_style must be > 0, got {cfg.lr_style}")
    for name in ("momentum_img", "adv_momentum"):
        need(0.0 <= getattr(cfg, name) < 1.0, f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    need(0.0 <= cfg.effective_momentum_style < 1.0, f"momentum_style must be in [0, 1), got {cfg.momentum_style}")
    for name in ("lambda_cos", "lambda_cls", "lambda_sim", "lambda_con"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")


# ----------------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Budget:
    """Stored values of a run against its baseline's ``C * ipc * c * h * w``."""

    bases_per_class: int
    base_channels: int
    baseline_values: int
    bases_values: int
    hallucinator_values: int

    @property
    def total_values(self) -> int:
        return self.bases_values + self.hallucinator_values

    @property
    def overhead(self) -> float:
        """Relative storage over the baseline (0.09 = 9 % more values)."""
        return self.total_values / self.baseline_values - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total_values": self.total_values, "overhead": self.overhead}


#: ``base_scale = 0`` (auto) halves the bases only while they keep at least this many pixels a side, and never in
#: ZCA space: measured on the validation splits (docs/benchmarks.md, "Session 11"), 14 px bases of 28 px
#: Fashion-MNIST gain 2-7 points, 4 px bases of 8 px digits lose 17, and 16 px bases of whitened 32 px
#: CIFAR-shaped data lose 3.6 where full-size ones gain 0.4.
MIN_AUTO_BASE_SIDE = 14


def auto_base_scale(height: int, width: int, *, zca: bool = False) -> int:
    """The base scale of ``base_scale = 0``: 2 when half-size bases keep :data:`MIN_AUTO_BASE_SIDE` pixels a side
    (and 2 divides the image size) and the model space is not ZCA-whitened (whitening decorrelates neighbouring
    pixels, which a bilinearly upsampled basis cannot hold), else 1. A rule of the data's shape and space, never
    of its name."""
    if zca:
        return 1
    ok = height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= MIN_AUTO_BASE_SIDE
    return 2 if ok else 1


def auto_modulation(cfg: DistillConfig, *, num_classes: int, channels: int, height: int, width: int) -> str:
    """The modulation of ``hallucinator_modulation = "auto"``: ``channel`` when ``--budget matched`` and the
    per-pixel maps would cost the bases at least one basis per class (their values are 98 % of a per-pixel
    hallucinator's), else the paper's ``pixel``. A rule of the budget and the data's shape, never of its name:
    on whitened CIFAR-shaped data at matched IPC 10 it keeps 9 full-size bases per class instead of 8
    (validation split, docs/benchmarks.md "Session 16")."""
    if cfg.budget != "matched" or not cfg.num_hallucinators:
        return "pixel"
    shape = {"num_classes": num_classes, "channels": channels, "height": height, "width": width}
    per = {}
    for m in MODULATIONS:
        try:
            per[m] = plan_budget(replace(cfg, hallucinator_modulation=m), **shape).bases_per_class
        except ConfigError:  # nothing fits: 0 bases per class
            per[m] = 0
    return "channel" if per["channel"] > per["pixel"] else "pixel"


def plan_budget(cfg: DistillConfig, *, num_classes: int, channels: int, height: int, width: int) -> Budget:
    """Bases per class and stored values for ``cfg`` (``matched`` errors when nothing fits; ``base_scale`` 0 is
    :func:`auto_base_scale`, modulation ``auto`` :func:`auto_modulation`)."""
    c_b = 1 if cfg.single_channel else channels
    k = cfg.num_hallucinators
    modulation = cfg.hallucinator_modulation
    if modulation == "auto":
        modulation = auto_modulation(cfg, num_classes=num_classes, channels=channels, height=height, width=width)
    halluc = (
        hallucinator_values(k, c_b, channels, height, width, modulation=modulation, padding=cfg.hallucinator_padding)
        if k
        else 0
    )
    baseline = num_classes * cfg.ipc * channels * height * width
    r = cfg.base_scale or auto_base_scale(height, width, zca=cfg.zca)
    if height % r or width % r:
        raise ConfigError(f"--base-scale {r} must divide the image size {height}x{width}")
    per_basis = c_b * (height // r) * (width // r)
    if cfg.bases_per_class is not None:
        n = cfg.bases_per_class
    elif cfg.budget == "matched":
        n = (baseline - halluc) // (num_classes * per_basis)
        if n < 1:
            raise ConfigError(
                f"--budget matched: {k} hallucinators ({halluc} values) leave no room for one "
                f"{'single-channel ' if cfg.single_channel else ''}basis per class in the baseline's "
                f"{baseline} values at IPC {cfg.ipc}; use --budget paper, fewer hallucinators, per-channel maps "
                f"(--set hallucinator_modulation=auto), --single-channel or a larger --ipc"
            )
    else:  # the paper's budget: the baseline's pixels for the bases (r^2 times as many at 1/r size)
        n = cfg.ipc * r * r
    return Budget(
        bases_per_class=n,
        base_channels=c_b,
        baseline_values=baseline,
        bases_values=num_classes * n * per_basis,
        hallucinator_values=halluc,
    )


def describe(cfg: DistillConfig) -> str:
    """A one-line JSON rendering (for error messages and logs)."""
    return json.dumps(cfg.to_dict(), sort_keys=True)
