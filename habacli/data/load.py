"""``load_split`` and ``get_spec``: find the data (local layout, system folder or the Hub), decode it once,
and serve it from haba's safetensors cache afterwards."""

from __future__ import annotations

import dataclasses
import os

from habacli.data import cache, hf
from habacli.data.folder import load_imagefolder, tiny_wnids
from habacli.data.locate import Found, expected_files, find_local
from habacli.data.spec import DatasetSpec, builtin_spec, is_custom
from habacli.data.split import SPLITS, Split, cached_or_build, make_split
from habacli.errors import ConfigError, DataNotFoundError
from habacli.runtime.progress import ProgressFn

__all__ = ["Split", "get_spec", "load_split"]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use 'train' or 'test'")


def _check_size(image_size: int | None) -> None:
    if image_size is not None and not (4 <= int(image_size) <= 1024):
        raise ConfigError(f"--image-size must be between 4 and 1024, got {image_size}")


def _builtin_split(
    spec: DatasetSpec,
    split: str,
    data_dir: str | os.PathLike | None,
    image_size: int | None,
    progress: ProgressFn | None,
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
    payload = {"hub": spec.hub_id, "config": spec.hub_config, "revision": spec.hub_revision, "size": size}
    return cached_or_build(
        spec.name, split, payload, lambda: hf.load_builtin(spec, split, size, local_hint=expect), progress
    )


def _layout_spec(spec: DatasetSpec, found: Found) -> DatasetSpec:
    """Specs whose class names come from the data (Tiny-ImageNet's WordNet ids)."""
    if spec.layout == "tinyimagenet":
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
    progress: ProgressFn | None = None,
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
        return load_imagefolder(name, split, image_size=image_size, channels=channels, progress=progress)
    if name.startswith("hf:"):
        return hf.load_hf(name, split, image_size=image_size, channels=channels, progress=progress)
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
