"""HaBa's factorisation: the synthetic set (bases + hallucinators), the adversary and its losses.

research/haba.md section 1-2 is the spec:

- bases ``[C * n, c_b, H, W]`` in model space, class-major (label of basis ``i`` is ``i // n``);
- K hallucinators shared by all classes (:class:`~habacli.networks.hallucinator.HallucinatorBank`);
- the adversary F: the run's ConvNet (features ``z = F.embed(x)`` + its linear head);
- the min side: ``L_cos = mean((cos(z1, z2) + 1) / 2)`` for two hallucinations of the same bases;
- the max side: ``CE + lambda_sim * mean((1 - cos) / 2) + lambda_con * SupCon`` (temperature 0.07,
  base temperature 0.07, contrast mode "all", positives = same class) on L2-normalised features.

Pure tensors and modules; no I/O, no optimisers (the engine owns those).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from habacli.errors import ConfigError
from habacli.networks.hallucinator import HallucinatorBank, apply_one, decode_all, upsample_bases


class SyntheticSet(nn.Module):
    """Bases (a parameter) plus an optional hallucinator bank; implements the objectives' ``SyntheticView``.

    With ``bank=None`` (K = 0) this is a plain synthetic image set and ``images`` returns the bases.
    """

    labels: Tensor  # int64 [num_bases], class-major (a registered buffer)

    def __init__(
        self,
        bases: Tensor,
        num_classes: int,
        bank: HallucinatorBank | None = None,
        size: tuple[int, int] | None = None,
    ):
        super().__init__()
        #: The images' (H, W); bases of another size are low-resolution and upsampled first (format 1.1).
        self.size = tuple(bases.shape[-2:]) if size is None else (int(size[0]), int(size[1]))
        n_total = bases.shape[0]
        if num_classes < 1 or n_total % num_classes:
            raise ConfigError(f"{n_total} bases cannot be split evenly over {num_classes} classes")
        self.num_classes = int(num_classes)
        self.bases_per_class = n_total // num_classes
        self.bases = nn.Parameter(bases.detach().clone().contiguous())
        self.bank = bank if bank is not None and bank.num > 0 else None
        self.num_hallucinators = 0 if self.bank is None else self.bank.num
        self.register_buffer(
            "labels",
            torch.arange(num_classes, device=bases.device).repeat_interleave(self.bases_per_class),
            persistent=False,
        )

    def upsampled(self, bases: Tensor) -> Tensor:
        """``bases`` at the images' size (bilinear for low-resolution bases; differentiable)."""
        return upsample_bases(bases, *self.size)

    @property
    def num_bases(self) -> int:
        return int(self.bases.shape[0])

    def hallucinator_parameters(self) -> list[nn.Parameter]:
        """The bank's stacked parameters (empty for K = 0)."""
        return [] if self.bank is None else list(self.bank.parameters())

    def hallucinator_state(self) -> dict[str, Tensor]:
        """Detached copies of the stacked hallucinator parameters (artifact keys)."""
        return {} if self.bank is None else {k: v.detach().clone() for k, v in self.bank.params().items()}

    def images(self, idx: Tensor | None = None, k: int | None = None) -> Tensor:
        """Differentiable model-space images of bases ``idx`` (all when None) under hallucinator ``k``."""
        b = self.upsampled(self.bases if idx is None else self.bases[idx])
        if self.bank is None:
            return b
        if k is None:
            raise ValueError("a hallucinator index k is required when the set is factorised")
        if not 0 <= int(k) < self.num_hallucinators:
            raise IndexError(f"hallucinator index {k} out of range for K = {self.num_hallucinators}")
        return apply_one(b, self.bank.params(), int(k), pad=self.bank.pad)

    def class_indices(self, c: int) -> Tensor:
        """Indices of the bases of class ``c`` (class-major layout)."""
        n = self.bases_per_class
        return torch.arange(c * n, (c + 1) * n, device=self.bases.device)

    def class_batch(self, c: int, k: int | None = None) -> Tensor:
        """The images of class ``c`` under hallucinator ``k``."""
        n = self.bases_per_class
        b = self.upsampled(self.bases[c * n : (c + 1) * n])
        if self.bank is None:
            return b
        return apply_one(b, self.bank.params(), int(k if k is not None else 0), pad=self.bank.pad)

    def random_k(self, generator: torch.Generator) -> int:
        """A uniformly random hallucinator index (0 when K = 0)."""
        if self.num_hallucinators <= 1:
            return 0
        return int(torch.randint(self.num_hallucinators, (1,), generator=generator).item())

    def random_pair(self, generator: torch.Generator) -> tuple[int, int]:
        """Two distinct hallucinators (the first two of a random permutation, as the official code)."""
        if self.num_hallucinators < 2:
            raise ValueError("two distinct hallucinators need K >= 2")
        perm = torch.randperm(self.num_hallucinators, generator=generator)
        return int(perm[0]), int(perm[1])

    @torch.no_grad()
    def expand_all(self) -> tuple[Tensor, Tensor]:
        """Every basis x hallucinator image (basis-major, model space, no grad) with labels."""
        if self.bank is None:
            return self.upsampled(self.bases.detach()).clone(), self.labels.clone()
        x = decode_all(
            self.upsampled(self.bases.detach()),
            {k: v.detach() for k, v in self.bank.params().items()},
            pad=self.bank.pad,
        )
        return x, self.labels.repeat_interleave(self.num_hallucinators)


def cos_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """The bases' and hallucinators' loss: ``mean((cos(z1, z2) + 1) / 2)`` (minimised)."""
    return ((F.cosine_similarity(z1.flatten(1), z2.flatten(1), dim=1) + 1) / 2).mean()


def sim_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """The adversary's similarity term: ``mean((1 - cos(z1, z2)) / 2)`` (minimised)."""
    return ((1 - F.cosine_similarity(z1.flatten(1), z2.flatten(1), dim=1)) / 2).mean()


def supcon_loss(
    features: Tensor, labels: Tensor, *, temperature: float = 0.07, base_temperature: float = 0.07
) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), contrast mode "all".

    ``features [N, V, D]`` (V views, L2-normalised by the caller), ``labels [N]``: every sample of
    the same class (including the other views of itself) is a positive; self-contrast is excluded.
    """
    n, v = features.shape[:2]
    feats = features.transpose(0, 1).reshape(n * v, -1)  # view-major, as torch.cat(unbind(dim=1))
    logits = feats @ feats.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    lab = labels.repeat(v)
    pos = (lab[:, None] == lab[None, :]).to(logits.dtype)
    not_self = 1.0 - torch.eye(n * v, device=logits.device, dtype=logits.dtype)
    pos = pos * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    mean_log_prob_pos = (pos * log_prob).sum(1) / pos.sum(1).clamp_min(1.0)
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


def adversary_loss(
    z: Tensor,
    logits: Tensor,
    labels: Tensor,
    *,
    lambda_cls: float,
    lambda_sim: float,
    lambda_con: float,
    temperature: float,
    base_temperature: float,
) -> dict[str, Tensor]:
    """The adversary's objective on a two-view batch ``z = [z1; z2]`` with ``labels`` of one view.

    Returns ``{"loss", "cls", "sim", "con"}``.
    """
    n = labels.shape[0]
    z1, z2 = z[:n], z[n:]
    cls = F.cross_entropy(logits, torch.cat([labels, labels]))
    sim = sim_loss(z1, z2)
    views = torch.stack([F.normalize(z1.flatten(1), dim=1), F.normalize(z2.flatten(1), dim=1)], dim=1)
    con = supcon_loss(views, labels, temperature=temperature, base_temperature=base_temperature)
    loss = lambda_cls * cls + lambda_sim * sim + lambda_con * con
    return {"loss": loss, "cls": cls, "sim": sim, "con": con}
