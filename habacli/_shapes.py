"""The hallucinator bank's parameter shapes and stored values, in one torch-free place (the artifact
format, formats/haba-artifact-v1.md section 3): ``networks.hallucinator`` builds banks of these shapes,
``distill.config`` budgets their values, ``artifact.header`` validates files against them."""

from __future__ import annotations

import math

#: How the FiLM-like ``scale`` and ``shift`` act: per mid channel and position (the paper's), or per mid
#: channel only (format 1.1: a compact hallucinator, 1 % of the values for 28 px images).
MODULATIONS: tuple[str, ...] = ("pixel", "channel")

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
) -> dict[str, tuple[int, ...]]:
    """The shape of every stacked parameter (mid channels = out channels unless given, as the official code;
    ``modulation="channel"`` keeps one scale and shift per channel)."""
    k, cm = kernel_size, out_channels if mid_channels is None else mid_channels
    h, w = (height - k + 1, width - k + 1) if modulation == "pixel" else (1, 1)
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
) -> int:
    """Stored values of ``num`` hallucinators (research/haba.md section 1.2: 5 568 each for 32x32 RGB;
    per-channel modulation keeps one scale and shift per channel)."""
    shapes = hallucinator_shapes(num, in_channels, out_channels, height, width, kernel_size, modulation)
    return sum(math.prod(s) for s in shapes.values())
