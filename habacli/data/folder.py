"""Image folders: Tiny-ImageNet, the MTT/HaBa ImageNet subsets (ImageNet train/val class folders) and
``imagefolder:PATH`` (one sub-folder per class; optional train/ and test|val|validation/ splits).

Files are decoded with Pillow on a thread pool (decoding is per file by nature; it happens once, then the
uint8 result is cached). Resizing: ``squash`` (MTT's ``Resize((128, 128))`` of the ImageNet subsets, aspect
ratio not kept) or ``crop`` (shorter side to the target, then a centre crop; used for imagefolder/hf).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from habacli.data import cache
from habacli.data.layouts import LAYOUTS, Files, Layout
from habacli.data.split import Split, cached_or_build, custom_spec, make_split
from habacli.errors import ConfigError, DataNotFoundError
from habacli.runtime.progress import ProgressFn

if TYPE_CHECKING:
    import numpy as np

    from habacli.data.spec import DatasetSpec

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
HOLDOUT_FRACTION, HOLDOUT_SEED = 0.2, 0


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted)."""
    out = []
    for dirpath, _, names in os.walk(folder):
        out += [Path(dirpath) / n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTS]
    return sorted(out)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def pil_to_array(im: Any, channels: int, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """A PIL image -> uint8 ``[C, H, W]`` at ``size`` (``squash`` or ``crop`` resizing)."""
    import numpy as np  # lazy: numpy
    from PIL import Image  # lazy: Pillow

    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != (size[1], size[0]):
        h, w = size
        if mode == "crop":
            s = max(h / im.height, w / im.width)
            rw, rh = max(w, round(im.width * s)), max(h, round(im.height * s))
            im = im.resize((rw, rh), Image.Resampling.BILINEAR)
            left, top = (rw - w) // 2, (rh - h) // 2
            im = im.crop((left, top, left + w, top + h))
        else:
            im = im.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_one(src: Any, channels: int, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """Decode a file path or encoded bytes."""
    from PIL import Image  # lazy: Pillow

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as im:
            return pil_to_array(im, channels, size, mode)
    except OSError as e:
        where = "an encoded image" if isinstance(src, (bytes, bytearray)) else str(src)
        raise DataNotFoundError(f"cannot decode {where}: {e}") from None


def decode_files(paths: list[Any], channels: int, size: tuple[int, int] | None, mode: str = "crop") -> np.ndarray:
    """Decode files (or encoded bytes) to uint8 ``[N, C, H, W]`` (all must end up the same size)."""
    import numpy as np  # lazy: numpy

    if not paths:
        return np.zeros((0, channels, *(size or (1, 1))), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(lambda p: _decode_one(p, channels, size, mode), paths, chunksize=64))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ConfigError(f"images have different sizes {sorted(shapes)[:3]}...; pass --image-size")
    return np.stack(arrays)


# --- Tiny-ImageNet -------------------------------------------------------------------------------


def _tiny_root(root: Path) -> Path | None:
    for d in (root / "tiny-imagenet-200", root):
        if (d / "train").is_dir() and (d / "val").is_dir():
            return d
    return None


def tiny_wnids(root: Path) -> tuple[str, ...]:
    """Tiny-ImageNet's class ids in ImageFolder order (sorted train folder names)."""
    d = _tiny_root(root)
    return tuple(p.name for p in _class_dirs(d / "train")) if d else ()


def _tiny_find(spec: DatasetSpec, root: Path) -> Files | None:
    d = _tiny_root(root)
    if d is None or len(_class_dirs(d / "train")) != spec.num_classes:
        return None
    train = images_in(d / "train")
    ann = d / "val" / "val_annotations.txt"
    if ann.is_file() and (d / "val" / "images").is_dir() and not _class_dirs(d / "val" / "images"):
        test = [ann, *images_in(d / "val" / "images")]  # the raw layout: flat images + annotations
    else:
        val = d / "val" / "images" if _class_dirs(d / "val" / "images") else d / "val"
        test = images_in(val)
    return {"train": train, "test": test} if train and test else None


def _tiny_probe(spec: DatasetSpec, root: Path) -> bool:
    d = _tiny_root(root)
    return d is not None and len(_class_dirs(d / "train")) == spec.num_classes


def _tiny_expect(spec: DatasetSpec, root: Path) -> str:
    return (
        f"unzip tiny-imagenet-200.zip into {root}/ (train/<wnid>/images/*.JPEG, val/images/ + "
        "val/val_annotations.txt; class-foldered val/ or val/images/ also work)"
    )


def _label_of(path: Path, index: dict[str, int], anchor: str) -> int:
    parts = path.parts
    i = len(parts) - 1 - parts[::-1].index(anchor)
    for part in parts[i + 1 :]:
        if part in index:
            return index[part]
    raise DataNotFoundError(f"{path}: no class folder under {anchor}/")


def _tiny_read(spec: DatasetSpec, files: list[Path], split: str, size: tuple[int, int] | None) -> tuple:
    import numpy as np  # lazy: numpy

    index = {w: i for i, w in enumerate(spec.class_ids)}
    if files and files[0].name == "val_annotations.txt":
        lines = [ln.split("\t") for ln in files[0].read_text().splitlines() if ln.strip()]
        by_file = {parts[0]: parts[1] for parts in lines if len(parts) > 1}
        files = files[1:]
        labels = [index[by_file[f.name]] for f in files]
    else:
        labels = [_label_of(f, index, "train" if split == "train" else "val") for f in files]
    return decode_files(files, 3, size or (64, 64), "squash"), np.asarray(labels, dtype=np.int64)


# --- ImageNet subsets (MTT/HaBa) ----------------------------------------------------------------


def _subset_find(spec: DatasetSpec, root: Path) -> Files | None:
    for d in (root, root / "imagenet", root / spec.name):
        if all((d / s / w).is_dir() for s in ("train", "val") for w in spec.class_ids):
            files = {
                s: [f for w in spec.class_ids for f in images_in(d / t / w)]
                for s, t in (("train", "train"), ("test", "val"))
            }
            if files["train"] and files["test"]:
                return files
    return None


def _subset_probe(spec: DatasetSpec, root: Path) -> bool:
    return any(
        all((d / s / w).is_dir() for s in ("train", "val") for w in spec.class_ids)
        for d in (root, root / "imagenet", root / spec.name)
    )


def _subset_expect(spec: DatasetSpec, root: Path) -> str:
    return (
        f"point --data-dir at an ImageNet-1k folder with train/<wnid>/ and class-foldered val/<wnid>/ "
        f"(torchvision ImageNet layout) holding {', '.join(spec.class_ids)}"
    )


def _subset_read(spec: DatasetSpec, files: list[Path], split: str, size: tuple[int, int] | None) -> tuple:
    import numpy as np  # lazy: numpy

    index = {w: i for i, w in enumerate(spec.class_ids)}
    labels = np.asarray(
        [
            index[f.parent.name]
            if f.parent.name in index
            else _label_of(f, index, "train" if split == "train" else "val")
            for f in files
        ],
        dtype=np.int64,
    )
    return decode_files(files, 3, size or (spec.height, spec.width), "squash"), labels


LAYOUTS.add("tinyimagenet", Layout("tinyimagenet", _tiny_find, _tiny_expect, _tiny_read, _tiny_probe))
LAYOUTS.add("imagenet_subset", Layout("imagenet_subset", _subset_find, _subset_expect, _subset_read, _subset_probe))


# --- imagefolder:PATH ----------------------------------------------------------------------------


def holdout_mask(labels: Any, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """Deterministic stratified test hold-out for data that ships without a test split."""
    import numpy as np  # lazy: numpy

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx) - 1, max(1, round(len(idx) * fraction))) if len(idx) >= 2 else 0
        mask[rng.permutation(idx)[:k]] = True
    return mask


def _folder_plan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]], str]:
    """Classes, per-split (file, label) lists and a note on how the test split was made."""
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val", "validation") if _class_dirs(root / n)), None)
    base = train_dir if _class_dirs(train_dir) else root
    per_class = {p.name: images_in(p) for p in _class_dirs(base)}
    classes = sorted(c for c, fs in per_class.items() if fs)
    if len(classes) < 2:
        raise DataNotFoundError(f"{base} needs one sub-folder per class with images in it (found {len(classes)})")
    index = {c: i for i, c in enumerate(classes)}
    train = [(f, index[c]) for c in classes for f in per_class[c]]
    if base == train_dir and test_dir is not None:
        test = [(f, index[p.name]) for p in _class_dirs(test_dir) if p.name in index for f in images_in(p)]
        return classes, {"train": train, "test": test}, f"test = {test_dir.name}/"
    mask = holdout_mask([lab for _, lab in train])
    return (
        classes,
        {"train": [t for t, m in zip(train, mask) if not m], "test": [t for t, m in zip(train, mask) if m]},
        f"test = a stratified {HOLDOUT_FRACTION:.0%} hold-out (seed {HOLDOUT_SEED}); train = the rest",
    )


def target_size(name: str, sizes: set[tuple[int, int]], image_size: int | None) -> tuple[int, int]:
    """The (height, width) images are decoded to: ``image_size`` squared, else the one size they share."""
    if image_size:
        return (int(image_size), int(image_size))
    if len(sizes) == 1:
        return next(iter(sizes))
    raise ConfigError(f"{name}: images have {len(sizes)} different sizes; pass --image-size")


def _detect(files: list[Path], sample: int = 256) -> tuple[int, set[tuple[int, int]]]:
    """Channels (1 if every sampled image is grey) and the sizes seen, from up to ``sample`` headers
    spread over the list (a size missed here still stops decoding with a clear error)."""
    from PIL import Image  # lazy: Pillow

    gray, sizes = True, set()
    step = max(1, len(files) // sample)
    for f in files[::step]:
        with Image.open(f) as im:
            gray &= im.mode in GRAY_MODES
            sizes.add((im.height, im.width))
    return (1 if gray else 3), sizes


def load_imagefolder(
    name: str,
    split: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    progress: ProgressFn | None = None,
) -> Split:
    """``imagefolder:PATH`` -> :class:`Split`; classes are the sorted sub-folder names."""
    root = Path(name.split(":", 1)[1]).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            f"{name}: no such folder (expected PATH/<class>/*.png, optionally with PATH/train/ and PATH/test/)"
        )
    classes, plan, how = _folder_plan(root)
    all_files = [f for s in plan.values() for f, _ in s]
    payload = {
        "kind": "imagefolder",
        "files": cache.files_fingerprint(all_files),
        "size": image_size,
        "channels": channels,
    }

    def build_split(which: str) -> Split:
        det_c, sizes = _detect([f for f, _ in plan["train"]])
        c = channels or det_c
        size = target_size(name, sizes, image_size)
        pairs = plan[which]
        images = decode_files([f for f, _ in pairs], c, size, "crop")
        import numpy as np  # lazy: numpy

        labels = np.asarray([lab for _, lab in pairs], dtype=np.int64)
        if which == "train":
            spec = custom_spec(
                name,
                images,
                classes,
                license="unknown (local folder)",
                sources=(str(root.resolve()),),
                notes=f"imagefolder: {how}",
            )
        else:
            spec = cached_or_build(name, "train", payload, lambda: build_split("train"), progress).spec
        return make_split(spec, images, labels, None, str(root.resolve()))

    return cached_or_build(name, split, payload, lambda: build_split(split), progress)
