"""``fit_zca``: MTT's ZCA (kornia-style, eps 0.1) fitted on a train split in pixel space, cached."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from habacli.data import cache
from habacli.data.load import load_split
from habacli.runtime.progress import ProgressFn, note

if TYPE_CHECKING:
    import torch

    from habacli.transforms.zca import ZCA

_CHUNK = 4096


def _content_key(*tensors: Any, extra: Any = None) -> str:
    """A content hash of CPU tensors (no copies for contiguous ones) plus ``extra``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(extra).encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.view(-1).view(torch_uint8()).numpy().data if t.numel() else b"")
    return h.hexdigest()


def torch_uint8() -> Any:
    import torch  # lazy: torch

    return torch.uint8


def fit_zca(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    eps: float = 0.1,
    image_size: int | None = None,
    progress: ProgressFn | None = None,
) -> ZCA:
    """Fit ZCA on the train split of ``name`` (pixel space [0, 1], flattened ``C*H*W``).

    The result is cached under ``cache_dir()/zca`` keyed by the images' content and ``eps``, so a
    second call costs one load of the cached split plus a hash.
    """
    from habacli.transforms.zca import ZCA  # lazy: torch

    split = load_split(name, "train", data_dir=data_dir, image_size=image_size, progress=progress)
    path = cache.zca_path(f"{cache.slug(split.spec.name)}-{_content_key(split.images, split.labels, extra=float(eps))}")
    hit = cache.load_tensors(path)
    if hit is not None:
        return ZCA.from_tensors(hit[0])
    note(progress, "data", f"fitting ZCA on {name} train ({len(split)} images, eps {eps})")
    zca = ZCA.fit(split.images, eps=eps)
    try:
        cache.save_tensors(path, zca.to_tensors(), {"dataset": split.spec.name, "eps": eps})
    except OSError:
        pass
    return zca


def whiten_images(images: torch.Tensor, zca: ZCA, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """The model-space copy ``zca.apply(images / 255)`` (float32, same shape) on ``device``.

    On the CPU the ``N x D x D`` product is the slow part of start-up, so the result is cached (keyed
    by the images' and the transform's content); on an accelerator it is recomputed (milliseconds).
    """
    import torch  # lazy: torch

    device = torch.device(device)

    def compute() -> torch.Tensor:
        x = images.to(device)
        if x.shape[0] == 0:
            return torch.empty(x.shape, dtype=torch.float32, device=device)
        return torch.cat([zca.apply(x[i : i + _CHUNK].float() / 255.0).float() for i in range(0, x.shape[0], _CHUNK)])

    if device.type != "cpu":
        return compute()
    key = _content_key(images, zca.mean, zca.eigenvectors, zca.eigenvalues, extra=float(zca.eps))
    path = cache.zca_path(f"whitened-{key}")
    hit = cache.load_tensors(path)
    if hit is not None and "images" in hit[0]:
        return hit[0]["images"]
    out = compute()
    try:
        cache.save_tensors(path, {"images": out}, {"kind": "zca-whitened images"})
    except OSError:
        pass
    return out
