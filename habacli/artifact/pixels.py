"""What an artifact's decoded images are, as files and pictures see them: uint8 pixels (the format
spec's rounding), class names by label, and the image shape. Shared by :mod:`~habacli.artifact.expand`
and :mod:`~habacli.artifact.grid`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Pixel-space float in [0, 1] -> uint8 as the format spec (section 4, step 5):
    ``floor(255 p + 0.5)``, clamped."""
    import torch  # lazy: importing habacli.artifact stays torch-free

    return x.mul(255.0).add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)


def class_names(artifact: Any) -> list[str]:
    """The artifact's class names by label (``'0'``, ``'1'``... when the spec has none)."""
    spec = artifact.spec if isinstance(artifact.spec, dict) else artifact.spec.to_dict()
    n = int(spec.get("num_classes") or (int(artifact.labels.max()) + 1 if artifact.labels.numel() else 0))
    names = list(spec.get("class_names") or [])
    return [str(x) for x in names] if len(names) == n else [str(i) for i in range(n)]


def image_shape(artifact: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of the decoded images (the dataset's channels; bases may have fewer)."""
    spec = artifact.spec if isinstance(artifact.spec, dict) else artifact.spec.to_dict()
    return int(spec["channels"]), int(spec["height"]), int(spec["width"])
