"""Real images on the device, indexed by class: the distillation loop samples them directly (no DataLoader).

Without ZCA the images stay uint8 on the device (4x smaller than float) and are normalised on the fly
(``x * scale + shift``, one fused multiply-add). With ZCA a model-space float copy is computed once,
because whitening every sampled batch would cost a ``D x D`` matmul per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from habacli.data.spec import DatasetSpec
from habacli.data.whiten import whiten_images
from habacli.errors import ConfigError

if TYPE_CHECKING:
    from habacli.data.split import Split
    from habacli.transforms.zca import ZCA

_CHUNK = 4096


def stratified_val_mask(labels: Tensor, num_classes: int, fraction: float, seed: int) -> Tensor:
    """A boolean mask choosing ``round(fraction * n_c)`` random images of every class ``c``
    (at least one when ``fraction > 0`` and the class has two or more; never the whole class)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    labels = labels.cpu()
    n = labels.shape[0]
    if fraction == 0.0 or n == 0:
        return torch.zeros(n, dtype=torch.bool)
    g = torch.Generator().manual_seed(int(seed))
    counts = torch.bincount(labels, minlength=num_classes)
    want = (counts.double() * fraction).round().long()
    want = torch.maximum(want, (counts >= 2).long()).minimum((counts - 1).clamp_min(0))
    # sort by (class, random key): the rank inside the class decides membership
    order = torch.argsort(labels.double() + torch.rand(n, generator=g, dtype=torch.float64) * 0.5, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - starts[labels[order]]
    return rank < want[labels]


class RealData:
    """Class-indexed real images on ``device``; every accessor returns model-space float tensors."""

    def __init__(
        self,
        spec: DatasetSpec,
        device: torch.device | str,
        images: Tensor | None,
        labels: Tensor,
        zca: ZCA | None = None,
        val: RealData | None = None,
        *,
        model: Tensor | None = None,
    ):
        self.spec = spec
        self.device = torch.device(device)
        self.num_classes = spec.num_classes
        self.zca = zca
        self.val = val
        c = spec.channels
        if zca is not None:  # MTT: no mean/std normalisation under ZCA
            self.normalize_mean, self.normalize_std = (0.0,) * c, (1.0,) * c
        else:
            self.normalize_mean, self.normalize_std = tuple(spec.mean), tuple(spec.std)
        mean = torch.tensor(self.normalize_mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        std = torch.tensor(self.normalize_std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std
        self.labels = labels.to(self.device, torch.long)
        counts = torch.bincount(labels.cpu(), minlength=self.num_classes)
        self._counts = counts.tolist()
        self._offsets = [0, *torch.cumsum(counts, 0).tolist()]
        self._order = torch.argsort(labels.cpu(), stable=True).to(self.device)
        self._u8: Tensor | None = None
        self._model: Tensor | None = None
        if zca is not None:
            if model is None:
                model = whiten_images(images, zca, device=self.device)
            self._model = model.to(self.device)
        else:
            if images is None or images.dtype != torch.uint8:
                raise ConfigError("RealData without ZCA needs uint8 images")
            self._u8 = images.to(self.device)

    @classmethod
    def build(
        cls,
        split: Split,
        *,
        device: torch.device | str = "cpu",
        zca: ZCA | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> RealData:
        """Put ``split`` on ``device``; carve a seeded, stratified validation set when ``val_fraction > 0``."""
        if split.images.dtype != torch.uint8:
            raise ConfigError(f"RealData needs uint8 images, got {split.images.dtype}")
        mask = stratified_val_mask(split.labels, split.spec.num_classes, val_fraction, seed)
        model = None
        if zca is not None:
            model = whiten_images(split.images, zca, device=device)
        if not bool(mask.any()):
            return cls(split.spec, device, None if zca else split.images, split.labels, zca, model=model)
        parts = []
        for m in (mask, ~mask):
            idx = m.nonzero().squeeze(1)  # index_select copies whole rows: much faster than a boolean index
            sub_model = model.index_select(0, idx.to(model.device)) if model is not None else None
            sub_images = None if zca is not None else split.images.index_select(0, idx)
            parts.append(cls(split.spec, device, sub_images, split.labels.index_select(0, idx), zca, model=sub_model))
        val, train = parts
        train.val = val
        return train

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def class_counts(self) -> list[int]:
        """Images per class."""
        return list(self._counts)

    def to_model(self, x: Tensor) -> Tensor:
        """Pixel space (uint8 0..255, or float in [0, 1]) -> model space float32."""
        x = x.to(self.device)
        if x.dtype == torch.uint8:
            out = x.float() * self._scale + self._shift
        else:
            out = (x.float() * 255.0) * self._scale + self._shift
        return self.zca.apply(out) if self.zca is not None else out

    def class_indices(self, c: int) -> Tensor:
        """Indices (into this RealData) of every image of class ``c``."""
        if not 0 <= c < self.num_classes:
            raise ConfigError(f"class {c} out of range 0..{self.num_classes - 1}")
        return self._order[self._offsets[c] : self._offsets[c + 1]]

    def images_model(self, idx: Tensor) -> Tensor:
        """Model-space images at ``idx``."""
        idx = idx.to(self.device)
        return self._model[idx] if self._model is not None else self.to_model(self._u8[idx])

    def sample_class(self, c: int, n: int, generator: torch.Generator) -> Tensor:
        """``n`` random images of class ``c`` (without replacement while ``n`` <= class size; beyond it,
        further random permutations are appended) -> ``[n, C, H, W]`` model space."""
        pool = self.class_indices(c)
        count = pool.shape[0]
        if count == 0:
            raise ConfigError(f"class {c} ({self.spec.class_names[c]!r}) has no images")
        perms = [
            torch.randperm(count, generator=generator, device=generator.device) for _ in range(max(1, -(-n // count)))
        ]
        pick = torch.cat(perms)[:n].to(self.device)
        return self.images_model(pool[pick])

    def init_bases(
        self, per_class: int, generator: torch.Generator, *, single_channel: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Real images for initialising bases: ``per_class`` per class, class-major, model space.
        ``single_channel`` averages the channels (HaBa's 1-channel bases)."""
        if per_class < 1:
            raise ConfigError(f"per_class must be >= 1, got {per_class}")
        x = torch.cat([self.sample_class(c, per_class, generator) for c in range(self.num_classes)])
        if single_channel:
            x = x.mean(dim=1, keepdim=True)
        y = torch.arange(self.num_classes, device=self.device).repeat_interleave(per_class)
        return x, y

    def all_model(self) -> tuple[Tensor, Tensor]:
        """Every image in model space with its label (for test passes and expert training)."""
        if self._model is not None:
            return self._model, self.labels
        n = len(self)
        x = (
            torch.cat([self.to_model(self._u8[i : i + _CHUNK]) for i in range(0, n, _CHUNK)])
            if n
            else torch.empty(self._u8.shape, dtype=torch.float32, device=self.device)
        )
        return x, self.labels

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Model-space ``(x, y)`` batches over all images; shuffled when a generator is given."""
        n = len(self)
        order = (
            torch.randperm(n, generator=generator, device=generator.device).to(self.device)
            if generator is not None
            else torch.arange(n, device=self.device)
        )
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            yield self.images_model(idx), self.labels[idx]
