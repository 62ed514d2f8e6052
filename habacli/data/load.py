"""``load_split`` and ``get_spec``: find the data (local layout, system folder or the Hub), decode it once,
and serve it from haba's safetensors cache afterwards."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.data import cache
from habacli.data.layouts import expected_files, find_local
from habacli.data.spec import DatasetSpec, builtin_spec, is_custom
from habacli.errors import ConfigError, DataNotFoundError

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "test")
Progress = Callable[[str], None] | None


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
        import torch

        return torch.bincount(self.labels, minlength=self.spec.num_classes).tolist()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use 'train' or 'test'")


def _check_size(image_size: int | None) -> None:
    if image_size is not None and not (4 <= int(image_size) <= 1024):
        raise ConfigError(f"--image-size must be between 4 and 1024, got {image_size}")


def resize_uint8(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of a uint8 batch, in chunks to bound memory."""
    import torch
    import torch.nn.functional as F

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
    name: str, split: str, payload: dict[str, Any], build: Callable[[], Split], progress: Progress = None
) -> Split:
    """Serve ``name``/``split`` from the cache under ``payload``'s key, else ``build()`` and store it."""
    path = cache.split_path(name, split, cache.cache_key({"name": name, "split": split, **payload}))
    hit = _from_cache(path)
    if hit is not None:
        return hit
    if progress:
        progress(f"decoding {name} {split} (first load; cached afterwards)")
    result = build()
    _to_cache(path, result)
    return result


def make_split(spec: DatasetSpec, images: Any, labels: Any, size: tuple[int, int] | None, source: str) -> Split:
    """Arrays (numpy or torch) -> :class:`Split`, resized to ``size`` if given; the spec takes the final size."""
    import numpy as np
    import torch

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
    import numpy as np

    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def _builtin_split(
    spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None, image_size: int | None, progress: Progress
) -> Split:
    size = (int(image_size), int(image_size)) if image_size else None
    if size == (spec.height, spec.width):
        size = None  # the native size shares the cache entry
    found = find_local(spec, data_dir)
    if found is not None:
        files = found.files[split]
        payload = {"layout": found.layout.name, "files": cache.files_fingerprint(files), "size": size}

        def build() -> Split:
            s = _layout_spec(spec, found)
            images, labels = found.layout.read(s, files, split, size)
            return make_split(s, images, labels, size, str(found.root))

        return cached_or_build(spec.name, split, payload, build, progress)
    expect = expected_files(spec, data_dir)
    if data_dir is not None:
        hub = f"; or leave out --data-dir to use the Hub copy {spec.hub_id}" if spec.hub_id else ""
        raise DataNotFoundError(f"{spec.name} not found in {data_dir}: {expect}{hub}")
    if not spec.hub_id:
        raise DataNotFoundError(f"{spec.name} is not available locally: {expect} and pass --data-dir DIR")
    from habacli.data import hf as hub

    payload = {"hub": spec.hub_id, "config": spec.hub_config, "revision": spec.hub_revision, "size": size}
    return cached_or_build(
        spec.name, split, payload, lambda: hub.load_builtin(spec, split, size, local_hint=expect), progress
    )


def _layout_spec(spec: DatasetSpec, found: Any) -> DatasetSpec:
    """Specs whose class names come from the data (Tiny-ImageNet's WordNet ids)."""
    if spec.layout == "tinyimagenet":
        from habacli.data.folder import tiny_wnids

        wnids = tiny_wnids(found.root)
        if len(wnids) == spec.num_classes:
            return dataclasses.replace(spec, class_names=wnids, class_ids=wnids)
    return spec


def load_split(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    progress: Progress = None,
) -> Split:
    """Load ``split`` of dataset ``name`` as uint8 tensors (decoded once, then cached as safetensors).

    ``name`` is a registered dataset, ``imagefolder:PATH`` or ``hf:ORG/NAME[:config]`` (or a local path
    the ``datasets`` library can read). With ``data_dir`` only that folder is searched; without it,
    ``$HABA_DATA``, known system folders and then the Hub (through the ``datasets`` cache) are tried.
    ``channels`` applies to custom datasets only (1 or 3; default: detected).
    """
    _check_split(split)
    _check_size(image_size)
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {channels}")
    if name.startswith("imagefolder:"):
        from habacli.data.folder import load_imagefolder

        return load_imagefolder(name, split, image_size=image_size, channels=channels, progress=progress)
    if name.startswith("hf:"):
        from habacli.data.hf import load_hf

        return load_hf(name, split, image_size=image_size, channels=channels, progress=progress)
    if channels is not None and channels != builtin_spec(name).channels:
        raise ConfigError(
            f"{name} has {builtin_spec(name).channels} channel(s); --channels applies to "
            "imagefolder: and hf: datasets only"
        )
    return _builtin_split(builtin_spec(name), split, data_dir, image_size, progress)


def get_spec(
    name: str, *, data_dir: str | os.PathLike | None = None, image_size: int | None = None, channels: int | None = None
) -> DatasetSpec:
    """The spec of ``name`` at ``image_size``. Custom datasets (``imagefolder:``, ``hf:``) are read (and
    cached) to learn their classes and statistics; Tiny-ImageNet reads its class ids from the data."""
    _check_size(image_size)
    if is_custom(name):
        return load_split(name, "train", data_dir=data_dir, image_size=image_size, channels=channels).spec
    spec = builtin_spec(name)
    if spec.layout == "tinyimagenet":
        found = find_local(spec, data_dir)
        if found is not None:
            spec = _layout_spec(spec, found)
        else:
            for path in cache.cached_splits(spec.name):
                meta = cache.read_meta(path)
                if meta and "spec" in meta:
                    spec = dataclasses.replace(spec, class_names=tuple(meta["spec"]["class_names"]))
                    break
    return spec.with_size(image_size) if image_size else spec


def pixel_stats(images: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1] units (float64 sums, chunked)."""
    import numpy as np
    import torch

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
