"""The hallucinator bank's parameter shapes and stored values, in one torch-free place (the artifact
format, formats/haba-artifact-v1.md section 3): ``networks.hallucinator`` builds banks of these shapes,
``distill.config`` budgets their values, ``artifact.header`` validates files against them."""

from __future__ import annotations

import math

#: How the FiLM-like ``scale`` and ``shift`` act: per mid channel and position (the paper's), or per mid
#: channel only (format 1.1: a compact hallucinator, 1 % of the values for 28 px images).
MODULATIONS: tuple[str, ...] = ("pixel", "channel")

#: Hallucinator paddings: "valid" (the paper's network, no padding) or "same" (format 1.3, zero padding
#: (s - 1) / 2 in the encoder and the decoder, so a hallucinator can be the identity up to the image border).
PADDINGS: tuple[str, ...] = ("valid", "same")

#: The architecture names of the artifact format, by padding.
ARCHITECTURES: dict[str, str] = {"valid": "haba-style-translator", "same": "haba-style-translator-same"}


def padding_size(padding: str, kernel_size: int) -> int:
    """The zero padding pi of a ``padding`` ("valid" 0, "same" (s - 1) / 2; "same" needs an odd kernel)."""
    if padding not in PADDINGS:
        raise ValueError(f"unknown hallucinator padding {padding!r} (known: {', '.join(PADDINGS)})")
    if padding == "valid":
        return 0
    if kernel_size % 2 == 0:
        raise ValueError(f"'same' hallucinator padding needs an odd kernel size, got {kernel_size}")
    return kernel_size // 2


#: The stacked parameters of a bank of K hallucinators, in file order.
PARAM_NAMES: tuple[str, ...] = ("enc_weight", "enc_bias", "scale", "shift", "dec_weight", "dec_bias")


def hallucinator_shapes(
    num: int,
    in_channels: int,
    out_channels: int,
    height: int,
    width: int,
    kernel_size: int = 3,
    modulation: str = "pixel",
    *,
    mid_channels: int | None = None,
    padding: str = "valid",
) -> dict[str, tuple[int, ...]]:
    """The shape of every stacked parameter (mid channels = out channels unless given, as the official code;
    ``modulation="channel"`` keeps one scale and shift per channel; ``padding="same"`` maps of the image size)."""
    k, cm = kernel_size, out_channels if mid_channels is None else mid_channels
    pad = 2 * padding_size(padding, k)
    h, w = (height - k + 1 + pad, width - k + 1 + pad) if modulation == "pixel" else (1, 1)
    return {
        "enc_weight": (num, cm, in_channels, k, k),
        "enc_bias": (num, cm),
        "scale": (num, cm, h, w),
        "shift": (num, cm, h, w),
        "dec_weight": (num, cm, out_channels, k, k),
        "dec_bias": (num, out_channels),
    }


def hallucinator_values(
    num: int,
    in_channels: int,
    out_channels: int,
    height: int,
    width: int,
    kernel_size: int = 3,
    modulation: str = "pixel",
    padding: str = "valid",
) -> int:
    """Stored values of ``num`` hallucinators (research/haba.md section 1.2: 5 568 each for 32x32 RGB;
    per-channel modulation keeps one scale and shift per channel)."""
    shapes = hallucinator_shapes(
        num, in_channels, out_channels, height, width, kernel_size, modulation, padding=padding
    )
    return sum(math.prod(s) for s in shapes.values())
