"""Contact sheets of an artifact: one row per class, one column per basis x hallucinator.

Columns run basis-major (basis 0 under hallucinators 0..K-1, then basis 1, ...). When a class has
more bases x hallucinators than ``max_columns``, only its first ``max_columns // K`` bases are
shown (with every hallucinator), and :func:`grid_layout` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from habacli.artifact.pixels import class_names, image_shape, to_uint8
from habacli.errors import ConfigError

DEFAULT_MAX_COLUMNS = 50
PADDING = 2
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class GridLayout:
    """Which bases and hallucinators a contact sheet shows."""

    num_classes: int
    bases_per_class: int  # most bases of any class
    bases_shown: int  # per class (the first ones)
    hallucinators: int  # K (0 for a plain set: the bases are shown)
    hallucinators_shown: int
    columns: int
    max_columns: int

    @property
    def truncated(self) -> bool:
        """True when some bases or hallucinators are left out."""
        return self.bases_shown < self.bases_per_class or self.hallucinators_shown < self.hallucinators

    @property
    def note(self) -> str | None:
        """A sentence saying what was left out, or None."""
        if not self.truncated:
            return None
        if self.hallucinators_shown < self.hallucinators:
            return (
                f"grid shows basis 0 of each class under the first {self.hallucinators_shown} of "
                f"{self.hallucinators} hallucinators (column cap {self.max_columns})"
            )
        return (
            f"grid shows the first {self.bases_shown} of {self.bases_per_class} bases per class "
            f"(x {max(self.hallucinators, 1)} hallucinator(s); column cap {self.max_columns})"
        )


def grid_layout(artifact: Any, *, max_columns: int = DEFAULT_MAX_COLUMNS) -> GridLayout:
    """Decide the columns of :func:`render_grid` for ``artifact`` under ``max_columns``."""
    import torch  # lazy: torch

    if max_columns < 1:
        raise ConfigError(f"the grid needs at least 1 column, got {max_columns}")
    num_classes = len(class_names(artifact))
    counts = torch.bincount(artifact.labels.detach().cpu().long(), minlength=num_classes)
    per_class = int(counts.max()) if counts.numel() else 0
    k = int(artifact.num_hallucinators)
    k_eff = max(k, 1)
    if k_eff > max_columns:
        bases_shown, k_shown = min(1, per_class), max_columns
    else:
        bases_shown, k_shown = min(per_class, max_columns // k_eff), k
    return GridLayout(
        num_classes, per_class, bases_shown, k, k_shown, max(bases_shown * max(k_shown, 1), 1), max_columns
    )


def render_grid(
    artifact: Any,
    *,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    labels: bool = True,
    scale: int | None = None,
    device: str = "cpu",
) -> Any:
    """A contact-sheet ``PIL.Image.Image`` of ``artifact`` (rows: classes, columns: bases x
    hallucinators, capped at ``max_columns``), with class names in a left margin if ``labels``.

    Images are enlarged by ``scale`` (nearest neighbour; default: 2 below 64 px, else 1); a wider
    gap separates one basis's hallucinations from the next basis's."""
    import torch  # lazy: torch
    from PIL import Image, ImageDraw, ImageFont  # lazy: Pillow

    lay = grid_layout(artifact, max_columns=max_columns)
    names = class_names(artifact)
    y_all = artifact.labels.detach().cpu().long()
    k = lay.hallucinators
    # Flat expansion indices (basis*K + hallucinator) of every cell, and each cell's position.
    flat: list[Any] = []
    cells: list[Any] = []
    for c in range(lay.num_classes):
        idx = (y_all == c).nonzero().flatten()[: lay.bases_shown]
        if k == 0:
            cols = idx
        else:
            hs = torch.arange(lay.hallucinators_shown)
            cols = (idx[:, None] * k + hs[None, :]).reshape(-1)
        flat.append(cols)
        cells.extend((c, j) for j in range(int(cols.numel())))
    flat_t = torch.cat(flat) if flat else torch.empty(0, dtype=torch.long)
    ch, h, w = image_shape(artifact)
    if flat_t.numel():
        with torch.no_grad():
            images, _ = artifact.decode(device=device, pixel=True, indices=flat_t)
        u8 = to_uint8(images.float()).cpu()
    else:
        u8 = torch.empty((0, ch, h, w), dtype=torch.uint8)
    if ch == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    elif ch != 3:
        u8 = u8[:, :3]
    scale = max(1, 64 // max(h, 1)) if scale is None else max(1, int(scale))
    scale = min(scale, 2) if scale > 1 and h < 64 else scale
    if scale > 1:
        u8 = u8.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    h, w = h * scale, w * scale
    group = max(lay.hallucinators_shown, 1)  # columns per basis
    font = ImageFont.load_default()
    margin = 0
    if labels and names:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        margin = int(max(probe.textlength(n, font=font) for n in names)) + 3 * PADDING
    rows = max(lay.num_classes, 1)
    gap = 3 * PADDING if group > 1 else 0  # extra space between bases

    def left(j: int) -> int:
        return margin + PADDING + j * (w + PADDING) + (j // group) * gap

    sheet = Image.new("RGB", (left(lay.columns - 1) + w + PADDING, rows * (h + PADDING) + PADDING), BACKGROUND)
    # Paste the whole decoded set in one tensor -> numpy conversion (no per-pixel Python work).
    arr = u8.permute(0, 2, 3, 1).contiguous().numpy()
    for i, (c, j) in enumerate(cells):
        sheet.paste(Image.fromarray(arr[i], mode="RGB"), (left(j), PADDING + c * (h + PADDING)))
    if margin:
        draw = ImageDraw.Draw(sheet)
        for c, name in enumerate(names):
            top = PADDING + c * (h + PADDING)
            bbox = draw.textbbox((0, 0), name, font=font)
            draw.text((PADDING, top + max(0, (h - (bbox[3] - bbox[1])) // 2)), name, fill=TEXT, font=font)
    return sheet
