"""Dataset specs: one frozen :class:`DatasetSpec` per registered dataset (no torch here).

Normalisation constants follow DC/DSA/DM/MTT/HaBa (research: baselines.md §3, ecosystem.md §4.4).
Class orders follow the reference code: torchvision's for MNIST/Fashion-MNIST/CIFAR/SVHN, sorted
WordNet ids for Tiny-ImageNet (``ImageFolder``), and MTT's list order for the ImageNet subsets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from habacli._registry import Registry
from habacli.data import classes
from habacli.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: shape, classes, normalisation, licence and where it can come from."""

    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str
    hub_id: str | None = None
    hub_config: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    flip: bool = True  # False for digits: DSA drops its flip family (DSA README)
    sources: tuple[str, ...] = ()  # where the original data is published (attribution)
    # --- haba additions (not needed by other modules) ---
    layout: str = ""  # local loader name in habacli.data.layouts ("" = none)
    hub_splits: tuple[str, str] = ("train", "test")  # Hub split names used for haba's train / test
    hub_revision: str | None = None
    class_ids: tuple[str, ...] = ()  # folder names (WordNet ids) in class order, for folder layouts
    imagenet_classes: tuple[int, ...] = ()  # ImageNet-1k indices of an ImageNet subset (MTT)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"{self.name}: mean/std need {self.channels} values")

    @property
    def image_size(self) -> int:
        """The side of square images (``height``; DD data is square)."""
        return self.height

    def with_size(self, height: int, width: int | None = None) -> DatasetSpec:
        """The same dataset resized to ``height`` x ``width`` (square when ``width`` is None)."""
        return dataclasses.replace(self, height=int(height), width=int(width if width is not None else height))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (forward compatibility)."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in d.items():
            if k not in names:
                continue
            kw[k] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> None:
    DATASETS.add(spec.name, spec)


_add(
    DatasetSpec(
        name="mnist",
        channels=1,
        height=28,
        width=28,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        license="CC BY-SA 3.0 (per LeCun & Cortes); the Hub card ylecun/mnist says MIT",
        hub_id="ylecun/mnist",
        hub_config="mnist",
        flip=False,
        layout="idx",
        sources=("http://yann.lecun.com/exdb/mnist/",),
        extra={"torchvision_dir": "MNIST"},
    )
)
_add(
    DatasetSpec(
        name="fashion_mnist",
        channels=1,
        height=28,
        width=28,
        num_classes=10,
        class_names=classes.FASHION_MNIST_NAMES,
        mean=(0.2861,),
        std=(0.3530,),
        license="MIT",
        hub_id="zalando-datasets/fashion_mnist",
        hub_config="fashion_mnist",
        flip=True,
        layout="idx",
        sources=("https://github.com/zalandoresearch/fashion-mnist",),
        extra={"torchvision_dir": "FashionMNIST", "system_dirs": ["/usr/share/datasets/fashion-mnist"]},
    )
)
_add(
    DatasetSpec(
        name="svhn",
        channels=3,
        height=32,
        width=32,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        license="non-commercial use only (SVHN terms)",
        hub_id="ufldl-stanford/svhn",
        hub_config="cropped_digits",
        flip=False,
        layout="svhn",
        sources=("http://ufldl.stanford.edu/housenumbers/",),
        notes="flip=False per the DSA README (digits); HaBa/MTT code still flips SVHN",
    )
)
_add(
    DatasetSpec(
        name="cifar10",
        channels=3,
        height=32,
        width=32,
        num_classes=10,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        license="unspecified (CIFAR terms: cite Krizhevsky 2009)",
        hub_id="uoft-cs/cifar10",
        hub_config="plain_text",
        image_column="img",
        layout="cifar10",
        sources=("https://www.cs.toronto.edu/~kriz/cifar.html",),
    )
)
_add(
    DatasetSpec(
        name="cifar100",
        channels=3,
        height=32,
        width=32,
        num_classes=100,
        class_names=classes.CIFAR100,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        license="unspecified (CIFAR terms: cite Krizhevsky 2009)",
        hub_id="uoft-cs/cifar100",
        image_column="img",
        label_column="fine_label",
        layout="cifar100",
        sources=("https://www.cs.toronto.edu/~kriz/cifar.html",),
        notes="reuses the CIFAR-10 mean/std, like MTT/HaBa (DC uses CIFAR-100's own statistics)",
    )
)
_add(
    DatasetSpec(
        name="tinyimagenet",
        channels=3,
        height=64,
        width=64,
        num_classes=200,
        class_names=tuple(f"class_{i:03d}" for i in range(200)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        license="ImageNet terms of access (non-commercial research)",
        hub_id="zh-plus/tiny-imagenet",
        hub_splits=("train", "valid"),
        layout="tinyimagenet",
        sources=("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
        notes="classes in sorted WordNet-id order (ImageFolder); names are read from the data; "
        "test = the official val split",
    )
)
_add(
    DatasetSpec(
        name="imagenette",
        channels=3,
        height=128,
        width=128,
        num_classes=10,
        class_names=classes.IMAGENETTE_NAMES,
        class_ids=classes.IMAGENETTE_WNIDS,
        imagenet_classes=(0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        license="ImageNet terms of access (non-commercial research)",
        hub_id="frgfm/imagenette",
        hub_config="full_size",
        hub_splits=("train", "validation"),
        hub_revision="refs/convert/parquet",
        layout="imagenet_subset",
        sources=("https://image-net.org/",),
        notes="MTT/HaBa ImageNet subset: 10 ImageNet-1k classes from train/val folders, Resize(128)+CenterCrop(128); "
        "the Hub copy is fastai's Imagenette (same classes, different images and split)",
    )
)
_add(
    DatasetSpec(
        name="imagewoof",
        channels=3,
        height=128,
        width=128,
        num_classes=10,
        class_names=classes.IMAGEWOOF_NAMES,
        class_ids=classes.IMAGEWOOF_WNIDS,
        imagenet_classes=(193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        license="ImageNet terms of access (non-commercial research)",
        hub_id="frgfm/imagewoof",
        hub_config="full_size",
        hub_splits=("train", "validation"),
        hub_revision="refs/convert/parquet",
        layout="imagenet_subset",
        sources=("https://image-net.org/",),
        notes="MTT/HaBa ImageNet subset (class order = MTT's index list); the Hub copy is fastai's Imagewoof "
        "(same classes, different images and split), relabelled by WordNet id",
    )
)


CUSTOM_PREFIXES = ("imagefolder:", "hf:")


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names (``imagefolder:PATH`` and ``hf:ORG/NAME`` are accepted too)."""
    return DATASETS.names(pattern)


def is_custom(name: str) -> bool:
    """True for ``imagefolder:PATH`` and ``hf:ORG/NAME[:config]`` names."""
    return name.startswith(CUSTOM_PREFIXES)


def builtin_spec(name: str) -> DatasetSpec:
    """The registered spec of ``name`` (unknown names raise with suggestions)."""
    return DATASETS.get(name.replace("-", "_") if name.replace("-", "_") in DATASETS else name)
