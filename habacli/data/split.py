"""A decoded split (:class:`Split`) and how readers build one: resize, provenance, custom specs
measured on the data, and haba's safetensors cache around a build. Imports nothing else of
``habacli.data`` but the spec and the cache, so every reader can use it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.data import cache
from habacli.data.spec import DatasetSpec
from habacli.runtime.progress import ProgressFn, note

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Split:
    """One split in pixel space: uint8 ``images [N, C, H, W]``, int64 ``labels [N]`` (CPU)."""

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec
    source: str = ""  # where it was decoded from (a folder, or hub:ORG/NAME)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> list[int]:
        """Images per class, in class order."""
        import torch  # lazy: torch

        return torch.bincount(self.labels, minlength=self.spec.num_classes).tolist()


def resize_uint8(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of a uint8 batch, in chunks to bound memory."""
    import torch  # lazy: torch
    import torch.nn.functional as F  # lazy: torch

    if tuple(images.shape[-2:]) == (height, width):
        return images
    out = torch.empty((images.shape[0], images.shape[1], height, width), dtype=torch.uint8)
    for i in range(0, images.shape[0], 4096):
        x = images[i : i + 4096].float()
        y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + 4096] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _from_cache(path: Path) -> Split | None:
    hit = cache.load_tensors(path)
    if hit is None:
        return None
    tensors, meta = hit
    if "images" not in tensors or "labels" not in tensors or "spec" not in meta:
        return None
    return Split(tensors["images"], tensors["labels"], DatasetSpec.from_dict(meta["spec"]), meta.get("source", ""))


def _to_cache(path: Path, split: Split) -> None:
    try:
        cache.save_tensors(
            path,
            {"images": split.images, "labels": split.labels},
            {"spec": split.spec.to_dict(), "source": split.source},
        )
    except OSError:  # a read-only cache folder only costs speed
        pass


def cached_or_build(
    name: str, split: str, payload: dict[str, Any], build: Callable[[], Split], progress: ProgressFn | None = None
) -> Split:
    """Serve ``name``/``split`` from the cache under ``payload``'s key, else ``build()`` and store it."""
    path = cache.split_path(name, split, cache.cache_key({"name": name, "split": split, **payload}))
    hit = _from_cache(path)
    if hit is not None:
        return hit
    note(progress, "data", f"decoding {name} {split} (first load; cached afterwards)")
    result = build()
    _to_cache(path, result)
    return result


def make_split(spec: DatasetSpec, images: Any, labels: Any, size: tuple[int, int] | None, source: str) -> Split:
    """Arrays (numpy or torch) -> :class:`Split`, resized to ``size`` if given; the spec takes the final size."""
    import numpy as np  # lazy: numpy
    import torch  # lazy: torch

    x = torch.from_numpy(_writable(images)) if isinstance(images, np.ndarray) else images
    y = torch.from_numpy(_writable(labels)).long() if isinstance(labels, np.ndarray) else labels.long()
    if size is not None:
        x = resize_uint8(x, *size)
    x = x.contiguous()
    # provenance without local paths (specs travel inside artifacts): "hub:ORG/NAME" or "local:<layout>"
    origin = source if source.startswith("hub:") else f"local:{spec.layout or 'folder'}"
    spec = dataclasses.replace(spec.with_size(x.shape[-2], x.shape[-1]), extra={**spec.extra, "origin": origin})
    return Split(x, y, spec, source)


def _writable(a: Any) -> Any:
    import numpy as np  # lazy: numpy

    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def pixel_stats(images: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1] units (float64 sums, chunked)."""
    import numpy as np  # lazy: numpy
    import torch  # lazy: torch

    x = torch.from_numpy(_writable(images)) if isinstance(images, np.ndarray) else images
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], 4096):
        chunk = x[i : i + 4096].double().div_(255.0).transpose(0, 1).reshape(c, -1)
        s += chunk.sum(1)
        s2 += chunk.square().sum(1)
    n = max(1, x.shape[0] * x.shape[2] * x.shape[3])
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def custom_spec(
    name: str,
    train_images: Any,
    class_names: list[str] | tuple[str, ...],
    *,
    license: str,
    sources: tuple[str, ...],
    notes: str,
    hub_id: str | None = None,
    hub_config: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    hub_splits: tuple[str, str] = ("train", "test"),
) -> DatasetSpec:
    """A spec for ``imagefolder:`` / ``hf:`` data; mean/std are measured on the train images."""
    mean, std = pixel_stats(train_images)
    _, c, h, w = train_images.shape
    return DatasetSpec(
        name=name,
        channels=int(c),
        height=int(h),
        width=int(w),
        num_classes=len(class_names),
        class_names=tuple(str(n) for n in class_names),
        mean=mean,
        std=std,
        license=license,
        hub_id=hub_id,
        hub_config=hub_config,
        image_column=image_column,
        label_column=label_column,
        flip=True,
        sources=sources,
        hub_splits=hub_splits,
        notes=notes + "; mean/std measured on the train split",
    )
