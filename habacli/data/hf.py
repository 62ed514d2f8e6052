"""Data through the Hugging Face ``datasets`` library: the Hub copies of the built-in datasets, and
``hf:ORG/NAME[:config]`` / ``hf:LOCAL_PATH`` for any image-classification dataset.

``datasets`` keeps its own cache and honours ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``; haba adds its
uint8 safetensors cache on top, so the Arrow data is converted once. Images are decoded from their
encoded bytes on a thread pool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from habacli.data import cache
from habacli.data.folder import GRAY_MODES, HOLDOUT_FRACTION, HOLDOUT_SEED, decode_files, holdout_mask, target_size
from habacli.data.split import Split, cached_or_build, custom_spec, make_split
from habacli.errors import DataNotFoundError
from habacli.runtime.progress import ProgressFn

if TYPE_CHECKING:
    import numpy as np

    from habacli.data.spec import DatasetSpec

TEST_SPLITS = ("test", "validation", "valid", "val")
REACH_TIMEOUT = 3.0  # seconds for the TCP probe of the Hub endpoint before a datasets download
_WNID = re.compile(r"^n\d{8}$")


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:300]}"


def _reachable(url: str, timeout: float = REACH_TIMEOUT) -> bool:
    """Whether ``url``'s host resolves and a TCP connection to it opens, all within ``timeout`` seconds.

    The name lookup runs in a daemon thread: ``getaddrinfo`` has no timeout of its own, and a resolver
    that hangs (rather than fails) would otherwise hold the probe for as long as it likes.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    found: list = []
    lookup = threading.Thread(target=_resolve, args=(parts.hostname or "", port, found), daemon=True)
    deadline = time.monotonic() + timeout
    lookup.start()
    lookup.join(timeout)
    if lookup.is_alive():
        return False
    for family, kind, proto, _, address in found:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


def _resolve(host: str, port: int, out: list) -> None:
    try:
        out.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        pass


@contextlib.contextmanager
def _offline_unless_reachable(path: str) -> Iterator[str | None]:
    """Run ``datasets`` offline (its own cache only) when the Hub endpoint cannot be reached.

    Without this, an offline machine waits through huggingface_hub's retries (about 25 s of
    back-off and a screen of warnings) before the same error. Yields the unreachable endpoint, or
    None when nothing was changed (already offline, a local path, or the Hub answered).
    """
    import datasets.config  # lazy: the datasets library
    from huggingface_hub import constants  # lazy: huggingface_hub

    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE or Path(path).exists() or _reachable(endpoint):
        yield None
        return
    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield endpoint
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def _load(path: str, config: str | None, revision: str | None, what: str, hint: str = "") -> Any:
    """``datasets.load_dataset`` -> DatasetDict, with failures turned into one-line DataNotFoundError."""
    import datasets  # lazy: the datasets library

    datasets.disable_progress_bars()
    with _offline_unless_reachable(path) as unreachable:
        try:
            return datasets.load_dataset(path, config, revision=revision)
        except Exception as e:  # noqa: BLE001 - offline, missing, gated, malformed: all end the same way
            why = _one_line(e)
            if unreachable:
                why = f"the Hub at {unreachable} cannot be reached, and offline: {why}"
            raise DataNotFoundError(
                f"{what}: could not load {path!r} with the datasets library ({why}){hint}"
            ) from None


def _columns(ds: Any, image_column: str | None, label_column: str | None) -> tuple[str, str, list[str] | None]:
    """Find the image column and the label column (preferring ClassLabel features)."""
    import datasets  # lazy: the datasets library

    feats = ds.features
    image = (
        image_column
        if image_column in feats
        else next((k for k, f in feats.items() if isinstance(f, datasets.Image)), None)
    )
    if image is None:
        raise DataNotFoundError(f"no image column among {list(feats)}")
    candidates = [label_column] if label_column in feats else []
    candidates += [k for k in ("label", "labels", "fine_label", "class_id", "target") if k in feats]
    candidates += [k for k, f in feats.items() if isinstance(f, datasets.ClassLabel)]
    label = next((k for k in candidates if k and k != image), None)
    if label is None:
        raise DataNotFoundError(f"no label column among {list(feats)}")
    names = feats[label].names if isinstance(feats[label], datasets.ClassLabel) else None
    return image, label, names


def _arrays(
    ds: Any, image: str, label: str, channels: int, size: tuple[int, int] | None, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    import datasets  # lazy: the datasets library
    import numpy as np  # lazy: numpy

    raw = ds.cast_column(image, datasets.Image(decode=False))
    cols = raw.select_columns([image, label]).to_dict()
    srcs = [r["bytes"] if r.get("bytes") else r["path"] for r in cols[image]]
    return decode_files(srcs, channels, size, mode), np.asarray(cols[label], dtype=np.int64)


def _detect(ds: Any, image: str, n: int = 64) -> tuple[int, set[tuple[int, int]]]:
    gray, sizes = True, set()
    for im in ds.select(range(min(n, len(ds))))[image]:
        gray &= im.mode in GRAY_MODES
        sizes.add((im.height, im.width))
    return (1 if gray else 3), sizes


def _test_split(dd: Any, preferred: str | None = None) -> str | None:
    for s in ((preferred,) if preferred else ()) + TEST_SPLITS:
        if s in dd:
            return s
    return None


# --- built-in datasets' Hub copies ----------------------------------------------------------------


def _label_map(spec: DatasetSpec, names: list[str] | None) -> tuple[DatasetSpec, np.ndarray | None]:
    """Map the Hub's label ids to haba's class order (WordNet ids, then names); None = identity."""
    import numpy as np  # lazy: numpy

    if not names:
        return spec, None
    if spec.layout == "tinyimagenet" and all(_WNID.match(n) for n in names):
        order = tuple(sorted(names))
        spec = dataclasses.replace(spec, class_names=order, class_ids=order)
    for keys in (spec.class_ids, spec.class_names):
        if not keys:
            continue
        index = {k.lower(): i for i, k in enumerate(keys)}
        if len(names) == len(keys) and all(n.lower() in index for n in names):
            return spec, np.asarray([index[n.lower()] for n in names], dtype=np.int64)
    if spec.class_ids and len(names) == len(spec.class_ids):
        # unnamed ImageNet-subset labels follow sorted WordNet ids (ImageFolder / fastai convention)
        return spec, np.asarray([spec.class_ids.index(w) for w in sorted(spec.class_ids)], dtype=np.int64)
    return spec, None


def load_builtin(spec: DatasetSpec, split: str, size: tuple[int, int] | None, *, local_hint: str = "") -> Split:
    """Load ``split`` of a registered dataset from its Hub copy (``spec.hub_id``)."""
    hint = f"; to use local files instead: {local_hint}, then pass --data-dir DIR" if local_hint else ""
    dd = _load(spec.hub_id, spec.hub_config, spec.hub_revision, spec.name, hint)
    want = spec.hub_splits[0] if split == "train" else spec.hub_splits[1]
    if want not in dd:
        raise DataNotFoundError(f"{spec.hub_id} has no split {want!r} (has {', '.join(dd)})")
    ds = dd[want]
    image, label, names = _columns(ds, spec.image_column, spec.label_column)
    spec, remap = _label_map(spec, names)
    mode = "squash" if spec.layout == "imagenet_subset" else "crop"
    x, y = _arrays(ds, image, label, spec.channels, size or (spec.height, spec.width), mode)
    if remap is not None:
        y = remap[y]
    return make_split(spec, x, y, None, f"hub:{spec.hub_id}")


# --- hf:ORG/NAME[:config] and hf:LOCAL_PATH -------------------------------------------------------


def parse_hf_name(name: str) -> tuple[str, str | None, bool]:
    """``hf:ORG/NAME[:config]`` -> (path or id, config, is_local)."""
    rest = name[3:]
    if not rest:
        raise DataNotFoundError("hf: needs a Hub id or a local path, e.g. hf:uoft-cs/cifar10")
    if Path(rest).expanduser().exists():
        return str(Path(rest).expanduser()), None, True
    if ":" in rest:
        path, config = rest.rsplit(":", 1)
        if Path(path).expanduser().exists():
            return str(Path(path).expanduser()), config or None, True
        return path, config or None, False
    return rest, None, False


def _fingerprint(path: str) -> list[Any]:
    p = Path(path)
    if p.is_file():
        return cache.files_fingerprint([p])
    files = [
        Path(d) / f
        for d, _, fs in os.walk(p)
        if "/." not in d.replace(os.sep, "/")
        for f in fs
        if not f.startswith(".")
    ]
    return cache.files_fingerprint(files)


def load_hf(
    name: str,
    split: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    progress: ProgressFn | None = None,
) -> Split:
    """``hf:ORG/NAME[:config]`` (Hub, through the datasets cache) or ``hf:PATH`` (local parquet, imagefolder,
    ...). Test split: ``test``, else ``validation``/``valid``/``val``, else a stratified 20% hold-out."""
    path, config, local = parse_hf_name(name)
    payload: dict[str, Any] = {"kind": "hf", "path": path, "config": config, "size": image_size, "channels": channels}
    if local:
        payload["files"] = _fingerprint(path)

    def build(which: str) -> Split:
        import numpy as np  # lazy: numpy

        dd = _load(path, config, None, name)
        if "train" not in dd:
            raise DataNotFoundError(f"{name}: no 'train' split (has {', '.join(dd)})")
        train = dd["train"]
        image, label, names = _columns(train, None, None)
        det_c, sizes = _detect(train, image)
        c = channels or det_c
        size = target_size(name, sizes, image_size)
        test_name = _test_split(dd)
        if which == "train" or test_name is None:
            x, y = _arrays(train, image, label, c, size, "crop")
            if test_name is None:
                mask = holdout_mask(y)
                x, y = (x[mask], y[mask]) if which == "test" else (x[~mask], y[~mask])
        else:
            x, y = _arrays(dd[test_name], image, label, c, size, "crop")
        num = len(names) if names else int(np.max(y)) + 1 if y.size else 0
        class_names = names or [str(i) for i in range(num)]
        how = (
            f"test = split {test_name!r}"
            if test_name
            else f"test = a stratified {HOLDOUT_FRACTION:.0%} hold-out of train (seed {HOLDOUT_SEED})"
        )
        if which == "train":
            spec = custom_spec(
                name,
                x,
                class_names,
                license="see the dataset card" if not local else "unknown",
                sources=(path,),
                notes=f"hf: {how}",
                hub_id=None if local else path,
                hub_config=config,
                image_column=image,
                label_column=label,
                hub_splits=("train", test_name or "train"),
            )
        else:
            spec = cached_or_build(name, "train", payload, lambda: build("train"), progress).spec
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataNotFoundError(f"{name}: labels outside 0..{spec.num_classes - 1}")
        return make_split(spec, x, y, None, path if local else f"hub:{path}")

    return cached_or_build(name, split, payload, lambda: build(split), progress)
