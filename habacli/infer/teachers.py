"""INFER's teachers: M BatchNorm-equipped networks, trained once per dataset, stored as safetensors.

Two families:

* ``cpu`` (default): four small BatchNorm ConvNets that differ in width, depth, pooling and activation,
  so that they form an ensemble; a few epochs each train on Fashion-MNIST in minutes on a laptop CPU.
* ``cifar``: the official CIFAR recipe, ResNet-18 (3x3 stem, no max-pool), MobileNetV2, EfficientNet-B0
  and ShuffleNet, built from torchvision and adapted to 32 px inputs (first-stage strides 1). **Unverified
  here**: never trained to the official 200 epochs on this machine, and torchvision ships ShuffleNet v2
  where the official code uses ShuffleNet v1 with groups 2.

A teacher file ``<dir>/<dataset>/<arch>.safetensors`` holds the state dict (BatchNorm running statistics
included) and a JSON document (``__metadata__['haba']``) with the arch, dataset, shape, epochs and test
accuracy. Teachers see model-space images: ``(pixel - mean) / std`` with the dataset's mean/std, the space
``RealData`` serves.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from habacli.data import RealData, load_split
from habacli.errors import ConfigError, UnknownNameError, UsageError
from habacli.infer._io import load_tensors, read_meta, save_tensors_atomic
from habacli.infer.augment import model_black, random_crop_flip
from habacli.networks.convnet import ConvNet
from habacli.runtime.progress import Progress, ProgressFn

__all__ = [
    "FAMILIES",
    "TEACHER_ARCHS",
    "TeacherArch",
    "TeacherError",
    "TeacherRecord",
    "build_teacher",
    "load_teacher",
    "load_teachers",
    "teacher_path",
    "train_teachers",
]

FORMAT = "haba-infer-teacher"
FORMAT_VERSION = 1


class TeacherError(UsageError):
    """A teacher file is missing, corrupted or does not fit the run."""


@dataclass(frozen=True)
class TeacherArch:
    name: str
    build: Callable[[int, int, int, int], nn.Module]  # (channels, num_classes, height, width)
    description: str
    verified: bool = True  # False: a preset never trained/checked on this project's machines


def _convnet_bn(channels: int, num_classes: int, height: int, width: int, **kw: Any) -> nn.Module:
    return ConvNet(channels, num_classes, height, width, norm="batchnorm", **kw)


def _first_conv(channels: int, out: int) -> nn.Conv2d:
    return nn.Conv2d(channels, out, 3, stride=1, padding=1, bias=False)


def _resnet18_cifar(channels: int, num_classes: int, height: int, width: int) -> nn.Module:
    from torchvision.models import resnet18

    m = resnet18(num_classes=num_classes)
    m.conv1 = _first_conv(channels, 64)
    m.maxpool = nn.Identity()
    return m


def _mobilenetv2_cifar(channels: int, num_classes: int, height: int, width: int) -> nn.Module:
    from torchvision.models import mobilenet_v2

    m = mobilenet_v2(num_classes=num_classes)
    m.features[0][0] = _first_conv(channels, 32)
    m.features[2].conv[1][0].stride = (1, 1)  # first stride-2 stage -> 1 (CIFAR adaptation, total stride 8)
    return m


def _efficientnet_b0_cifar(channels: int, num_classes: int, height: int, width: int) -> nn.Module:
    from torchvision.models import efficientnet_b0

    m = efficientnet_b0(num_classes=num_classes)
    m.features[0][0] = _first_conv(channels, 32)
    return m


def _shufflenet_cifar(channels: int, num_classes: int, height: int, width: int) -> nn.Module:
    from torchvision.models import shufflenet_v2_x1_0

    m = shufflenet_v2_x1_0(num_classes=num_classes)
    m.conv1[0] = _first_conv(channels, 24)
    m.maxpool = nn.Identity()
    return m


TEACHER_ARCHS: dict[str, TeacherArch] = {
    a.name: a
    for a in (
        TeacherArch(
            "convbn_w32_d2", partial(_convnet_bn, net_width=32, depth=2), "ConvNet-BN width 32, depth 2, avg-pool"
        ),
        TeacherArch(
            "convbn_w64_d3", partial(_convnet_bn, net_width=64, depth=3), "ConvNet-BN width 64, depth 3, avg-pool"
        ),
        TeacherArch(
            "convbn_w48_d3_max",
            partial(_convnet_bn, net_width=48, depth=3, pooling="maxpooling"),
            "ConvNet-BN width 48, depth 3, max-pool",
        ),
        TeacherArch(
            "convbn_w64_d2_lrelu",
            partial(_convnet_bn, net_width=64, depth=2, act="leakyrelu", pooling="maxpooling"),
            "ConvNet-BN width 64, depth 2, leaky ReLU, max-pool",
        ),
        TeacherArch(
            "resnet18_cifar", _resnet18_cifar, "ResNet-18, 3x3 stride-1 stem, no max-pool (torchvision)", False
        ),
        TeacherArch(
            "mobilenetv2_cifar", _mobilenetv2_cifar, "MobileNetV2, stride-1 stem and first stage (torchvision)", False
        ),
        TeacherArch(
            "efficientnet_b0_cifar", _efficientnet_b0_cifar, "EfficientNet-B0, stride-1 stem (torchvision)", False
        ),
        TeacherArch(
            "shufflenet_cifar",
            _shufflenet_cifar,
            "ShuffleNet v2 x1.0, stride-1 stem, no max-pool (torchvision; official: ShuffleNet v1 g2)",
            False,
        ),
    )
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "cpu": ("convbn_w32_d2", "convbn_w64_d3", "convbn_w48_d3_max", "convbn_w64_d2_lrelu"),
    "cifar": ("resnet18_cifar", "mobilenetv2_cifar", "efficientnet_b0_cifar", "shufflenet_cifar"),
}


def resolve_archs(archs: Sequence[str] | str | None) -> tuple[str, ...]:
    """A family name, a list of arch names, or None (the ``cpu`` family) -> arch names."""
    if archs is None:
        return FAMILIES["cpu"]
    if isinstance(archs, str):
        if archs in FAMILIES:
            return FAMILIES[archs]
        archs = [a.strip() for a in archs.split(",") if a.strip()]  # "a,b": a comma-separated list
    names = tuple(archs)
    if not names:
        raise ConfigError("INFER needs at least one teacher")
    for n in names:
        if n not in TEACHER_ARCHS:
            raise UnknownNameError("teacher architecture", n, [*TEACHER_ARCHS, *FAMILIES])
    if len(set(names)) != len(names):
        raise ConfigError(f"teacher architectures repeat: {', '.join(names)}")
    return names


def build_teacher(
    arch: str, *, channels: int, num_classes: int, height: int, width: int, generator: torch.Generator | None = None
) -> nn.Module:
    """A freshly initialised teacher ``arch`` (initialised from ``generator`` when given; the global RNG is
    left untouched then)."""
    if arch not in TEACHER_ARCHS:
        raise UnknownNameError("teacher architecture", arch, TEACHER_ARCHS)
    factory = TEACHER_ARCHS[arch].build
    if generator is None:
        net = factory(channels, num_classes, height, width)
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = factory(channels, num_classes, height, width)
    if not any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        raise ConfigError(f"teacher {arch!r} has no BatchNorm2d layer (INFER matches BatchNorm statistics)")
    return net


@dataclass
class TeacherRecord:
    """One stored teacher: where it is and its metadata document."""

    arch: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    trained_now: bool = False

    @property
    def test_accuracy(self) -> float:
        return float(self.meta["test_accuracy"])


def teacher_path(teachers_dir: str | os.PathLike, dataset: str, arch: str) -> Path:
    safe = dataset.replace("/", "_").replace(":", "_")
    return Path(teachers_dir) / safe / f"{arch}.safetensors"


def _arch_seed(seed: int, arch: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(arch.encode())) % (2**62)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on model-space ``x``."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was)
    return correct / max(1, x.shape[0])


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    flip: bool,
    fill: torch.Tensor,
    generator: torch.Generator,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """AdamW, cosine per step, RandomCrop(pad 4) + flip, cross-entropy. (SGD at lr 0.02-0.1 was unstable
    for the max-pool teachers in one-epoch runs; AdamW lr 1e-3 trained all four.)"""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    step = 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            for g in opt.param_groups:
                g["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
            xb = random_crop_flip(x[idx], pad=4, flip=flip, fill=fill, generator=generator)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.eval()


def _epoch_events(progress: ProgressFn | None, description: str, epochs: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda e: progress(Progress("epoch", description, e, epochs))


def _model_space(split: Any, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    return RealData.build(split, device=device).all_model()


def _subset(split: Any, limit: int | None, seed: int) -> Any:
    """The first ``limit`` images of a seeded permutation of ``split`` (all when None)."""
    if limit is None or limit >= len(split):
        return split
    import dataclasses

    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(split), generator=g)[:limit].sort().values
    return dataclasses.replace(
        split, images=split.images.index_select(0, idx), labels=split.labels.index_select(0, idx)
    )


def _check_existing(path: Path, want: dict[str, Any]) -> dict[str, Any]:
    meta = _read_teacher_meta(path)
    for key in ("arch", "dataset", "channels", "num_classes", "height", "width", "epochs", "train_images", "seed"):
        if meta.get(key) != want[key]:
            raise TeacherError(
                f"{path}: a finished teacher with {key}={meta.get(key)!r} is there, this run asks for "
                f"{want[key]!r} (use another teachers folder or delete the file)"
            )
    return meta


def train_teachers(
    dataset: str,
    teachers_dir: str | os.PathLike,
    *,
    archs: Sequence[str] | str | None = None,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    train_limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> list[TeacherRecord]:
    """Train (or reuse) the teachers ``archs`` (a family name or arch names; default the ``cpu`` family) on
    ``dataset``'s training split and store them under ``teachers_dir``.

    Resumable per teacher: a finished teacher file with the same settings is reused (``trained_now`` is
    False); one with other settings raises :class:`TeacherError`. Each file is written atomically, so an
    interrupted run leaves finished teachers only. ``train_limit`` trains on a seeded subset of that many
    images (tests). ``progress`` gets :class:`Progress` events: one bar per teacher (``teacher ARCH``, an
    ``epoch`` event per epoch, ``skip`` for a cached one), then ``done``.
    """
    names = resolve_archs(archs)
    if epochs < 1 or batch_size < 2 or lr <= 0 or weight_decay < 0:
        raise ConfigError(
            f"teacher training needs epochs >= 1, batch_size >= 2, lr > 0, weight_decay >= 0 "
            f"(got {epochs}, {batch_size}, {lr}, {weight_decay})"
        )
    if train_limit is not None and train_limit < 2:
        raise ConfigError(f"train_limit must be >= 2, got {train_limit}")
    device = torch.device(device)
    train_split = load_split(dataset, "train", data_dir=data_dir)
    spec = train_split.spec
    records: list[TeacherRecord] = []
    loaded: tuple[torch.Tensor, ...] | None = None
    for arch in names:
        path = teacher_path(teachers_dir, dataset, arch)
        want = {
            "arch": arch,
            "dataset": dataset,
            "channels": spec.channels,
            "num_classes": spec.num_classes,
            "height": spec.height,
            "width": spec.width,
            "epochs": epochs,
            "train_images": min(len(train_split), train_limit) if train_limit else len(train_split),
            "seed": seed,
        }
        if path.exists():
            records.append(TeacherRecord(arch, path, _check_existing(path, want)))
            if progress:
                progress(Progress("skip", f"teacher {arch}", epochs, epochs, message="cached"))
            continue
        if loaded is None:
            sub = _subset(train_split, train_limit, seed)
            x, y = _model_space(sub, device)
            xt, yt = _model_space(load_split(dataset, "test", data_dir=data_dir), device)
            loaded = (x, y, xt, yt)
        x, y, xt, yt = loaded
        g = torch.Generator().manual_seed(_arch_seed(seed, arch))
        model = build_teacher(
            arch,
            channels=spec.channels,
            num_classes=spec.num_classes,
            height=spec.height,
            width=spec.width,
            generator=g,
        ).to(device)
        fill = model_black(spec.mean, spec.std, device)
        t0 = time.perf_counter()
        _fit(
            model,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            flip=spec.flip,
            fill=fill,
            generator=g,
            on_epoch=_epoch_events(progress, f"teacher {arch}", epochs),
        )
        seconds = time.perf_counter() - t0
        acc = evaluate_accuracy(model, xt, yt)
        meta = {
            **want,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "test_accuracy": acc,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "optimizer": "adamw-cosine",
            "augment": ["random_crop(pad=4)", *(["hflip"] if spec.flip else [])],
            "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
            "train_seconds": round(seconds, 3),
            "description": TEACHER_ARCHS[arch].description,
            "verified": TEACHER_ARCHS[arch].verified,
        }
        save_tensors_atomic(path, dict(model.state_dict()), meta)
        records.append(TeacherRecord(arch, path, meta, trained_now=True))
        if progress:
            progress(Progress("teacher", f"teacher {arch}", epochs, epochs, stats={"accuracy": acc}))
    if progress:
        progress(Progress("done", "teachers", len(records), len(records)))
    return records


def _read_teacher_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TeacherError(f"{path}: no teacher file there (train it with `haba teachers`)")
    try:
        meta = read_meta(path)
    except Exception as e:  # noqa: BLE001 - any decoding problem is one line
        raise TeacherError(
            f"{path}: not a haba teacher file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if meta.get("format") != FORMAT:
        raise TeacherError(f"{path}: not a haba teacher file (format {meta.get('format')!r})")
    return meta


def load_teacher(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    shape: tuple[int, int, int, int] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Load one teacher in eval mode with frozen parameters. ``dataset``, ``arch`` and ``shape``
    ``(channels, num_classes, height, width)`` are checked against the file; any mismatch is a one-line
    :class:`TeacherError`."""
    path = Path(path)
    meta = _read_teacher_meta(path)
    if dataset is not None and meta.get("dataset") != dataset:
        raise TeacherError(f"{path}: teacher was trained on {meta.get('dataset')!r}, not {dataset!r}")
    if arch is not None and meta.get("arch") != arch:
        raise TeacherError(f"{path}: teacher architecture is {meta.get('arch')!r}, not {arch!r}")
    got = tuple(int(meta.get(k) or 0) for k in ("channels", "num_classes", "height", "width"))
    if shape is not None and got != tuple(shape):
        raise TeacherError(
            f"{path}: teacher shape (channels, classes, height, width) = {got}, the run needs {tuple(shape)}"
        )
    if meta.get("arch") not in TEACHER_ARCHS:
        raise TeacherError(f"{path}: unknown teacher architecture {meta.get('arch')!r}")
    model = build_teacher(meta["arch"], channels=got[0], num_classes=got[1], height=got[2], width=got[3])
    try:
        state = load_tensors(path)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TeacherError(f"{path}: weights do not fit {meta['arch']} ({first})") from None
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, meta


def load_teachers(
    teachers_dir: str | os.PathLike,
    dataset: str,
    *,
    archs: Sequence[str] | str | None = None,
    shape: tuple[int, int, int, int] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """Load the teachers ``archs`` of ``dataset``; with ``archs`` None, every teacher file found for the
    dataset (sorted by name). Raises :class:`TeacherError` when none is there."""
    if archs is None:
        folder = teacher_path(teachers_dir, dataset, "x").parent
        names = sorted(p.name[: -len(".safetensors")] for p in folder.glob("*.safetensors")) if folder.is_dir() else []
        if not names:
            raise TeacherError(f"{folder}: no teachers for {dataset} (train them with `haba teachers {dataset}`)")
    else:
        names = list(resolve_archs(archs))
    models, metas = [], []
    for n in names:
        m, meta = load_teacher(
            teacher_path(teachers_dir, dataset, n), dataset=dataset, arch=n, shape=shape, device=device
        )
        models.append(m)
        metas.append(meta)
    return models, metas
