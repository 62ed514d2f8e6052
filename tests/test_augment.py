"""DSA on real Fashion-MNIST images: ranges of every op, per-sample vs siamese, seeding, gradients."""

from __future__ import annotations

import gzip
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from habacli.errors import ConfigError, UnknownNameError
from habacli.transforms.augment import DEFAULT_STRATEGY, DSA, OPS, DSARanges, dsa_for

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@pytest.fixture(scope="module")
def real(fashion_mnist_dir) -> torch.Tensor:
    """16 real Fashion-MNIST test images, padded to 32x32 and replicated to RGB, in [0, 1]."""
    with gzip.open(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        f.read(16)
        data = bytearray(f.read(16 * 28 * 28))
    x = torch.frombuffer(data, dtype=torch.uint8).view(16, 1, 28, 28).float() / 255
    return F.pad(x, (2, 2, 2, 2)).expand(16, 3, 32, 32).contiguous()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_strategy_and_registry():
    d = DSA()
    assert d.families == FAMILIES and d.strategy == DEFAULT_STRATEGY and d.mode == "S"
    assert set(OPS.names()) == set(FAMILIES)
    assert d.config()["ratio_crop_pad"] == 0.125


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_pixels(real, family):
    dsa = DSA(family)
    for call in (lambda x: dsa(x, _gen(0)), lambda x: dsa.siamese([x], _gen(0))[0]):
        x = real[:4].clone().requires_grad_(True)
        y = call(x)
        assert y.shape == x.shape
        (y * torch.randn_like(y)).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_applies_one_transform_to_everything(real, family):
    dsa = DSA(family)
    same = real[3:4].expand(8, 3, 32, 32)  # 8 copies of one image
    a, b, c = dsa.siamese([same, same.clone(), real[3:4]], _gen(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for i in range(8):  # every sample got the same parameters, batch of one included
        torch.testing.assert_close(a[i], c[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_sample_parameters_differ(real, family):
    same = real[5:6].expand(16, 3, 32, 32)
    y = DSA(family)(same, _gen(1))
    distinct = {tuple(v.flatten()[::7].tolist()) for v in y}
    assert len(distinct) >= 2


def test_same_seed_same_output_and_global_rng_is_irrelevant(real):
    dsa = DSA()
    torch.manual_seed(0)
    g = _gen(3)
    first = [dsa(real, g) for _ in range(6)] + dsa.siamese([real, real[:2]], g)
    torch.manual_seed(123)  # the global RNG plays no part
    g = _gen(3)
    again = [dsa(real, g) for _ in range(6)] + dsa.siamese([real, real[:2]], g)
    for x, y in zip(first, again):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    for fam in FAMILIES:  # a different seed gives different parameters
        d = DSA(fam)
        assert not torch.equal(d(real, _gen(4)), d(real, _gen(5))), fam


def test_mode_s_picks_each_family_about_equally():
    dsa = DSA()
    g = _gen(0)
    counts = {f: 0 for f in FAMILIES}
    for _ in range(1200):
        (name,) = dsa._chosen(g)
        counts[name] += 1
    assert all(150 < c < 250 for c in counts.values()), counts
    assert DSA(mode="M")._chosen(g) == FAMILIES


def test_flip_only_flips(real):
    y = DSA("flip")(real, _gen(2))
    flipped = [torch.equal(y[i], real[i].flip(2)) for i in range(16)]
    kept = [torch.equal(y[i], real[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def _translate(x: torch.Tensor, tx: int, ty: int) -> torch.Tensor:
    """out[i, j] = x[i + tx, j + ty], zero outside (the reference's crop semantics)."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    i0, i1 = max(0, -tx), min(h, h - tx)
    j0, j1 = max(0, -ty), min(w, w - ty)
    out[..., i0:i1, j0:j1] = x[..., i0 + tx : i1 + tx, j0 + ty : j1 + ty]
    return out


def test_crop_is_a_bounded_zero_filled_translation(real):
    g = _gen(11)
    draws = OPS.get("crop").sample(16, 32, 32, DSARanges(), g)
    assert draws["tx"].abs().max() <= 4 and draws["ty"].abs().max() <= 4  # round(0.125 * 32)
    y = OPS.get("crop").apply(real, draws, DSARanges())
    for i in range(16):
        torch.testing.assert_close(y[i], _translate(real[i], int(draws["tx"][i]), int(draws["ty"][i])), rtol=0, atol=0)
    # over many draws, the whole range [-4, 4] is used and nothing outside it
    many = OPS.get("crop").sample(4000, 28, 28, DSARanges(), g)["tx"]
    assert set(many.tolist()) == set(range(-4, 5))  # int(28 * 0.125 + 0.5) = 4


def test_cutout_zeroes_one_clamped_square(real):
    g = _gen(12)
    draws = OPS.get("cutout").sample(16, 32, 32, DSARanges(), g)
    y = OPS.get("cutout").apply(real, draws, DSARanges())
    for i in range(16):
        ox, oy = int(draws["ox"][i]), int(draws["oy"][i])
        x0, y0 = max(0, ox - 8), max(0, oy - 8)
        x1, y1 = min(32, ox - 8 + 16), min(32, oy - 8 + 16)
        expected = real[i].clone()
        expected[:, x0:x1, y0:y1] = 0
        torch.testing.assert_close(y[i], expected, rtol=0, atol=0)
    ox = OPS.get("cutout").sample(5000, 32, 32, DSARanges(), g)["ox"]
    assert ox.min() == 0 and ox.max() == 32  # randint[0, H + (1 - 16 % 2)) as in the reference


def test_color_scale_rotate_draw_in_their_ranges():
    g, r = _gen(13), DSARanges()
    c = OPS.get("color").sample(5000, 32, 32, r, g)
    assert all(0 <= v.min() and v.max() < 1 for v in c.values())
    s = OPS.get("scale").sample(5000, 32, 32, r, g)
    for v in (s["sx"], s["sy"]):
        assert v.min() >= 1 / 1.2 - 1e-6 and v.max() <= 1.2 + 1e-6
        assert v.min() < 0.85 and v.max() > 1.18
    a = OPS.get("rotate").sample(5000, 32, 32, r, g)["angle"]
    assert a.abs().max() <= math.radians(15) + 1e-6 and a.abs().max() > math.radians(14.5)


def _color_reference(x: torch.Tensor, d: dict, r: DSARanges) -> torch.Tensor:
    """The reference's three steps, literally: brightness, saturation, contrast."""
    x = x + (d["brightness"].view(-1, 1, 1, 1) - 0.5) * r.brightness
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (d["saturation"].view(-1, 1, 1, 1) * r.saturation) + m
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (d["contrast"].view(-1, 1, 1, 1) + r.contrast) + m


def test_color_equals_the_reference_sequence(real):
    r = DSARanges()
    rgb = real * torch.tensor([1.0, 0.7, 0.4]).view(1, 3, 1, 1)  # make saturation matter
    for x in (rgb, real[:, :1]):
        d = OPS.get("color").sample(x.shape[0], 32, 32, r, _gen(21))
        torch.testing.assert_close(OPS.get("color").apply(x, d, r), _color_reference(x, d, r), atol=1e-5, rtol=1e-5)
    fixed = {"brightness": torch.tensor([0.75]), "saturation": torch.tensor([0.25]), "contrast": torch.tensor([0.9])}
    torch.testing.assert_close(OPS.get("color").apply(rgb[:1], fixed, r), _color_reference(rgb[:1], fixed, r))


def test_affine_ops_identity_and_rotation_direction(real):
    x = real[:2]
    one = torch.ones(1)
    torch.testing.assert_close(OPS.get("scale").apply(x, {"sx": one, "sy": one}, DSARanges()), x, atol=1e-5, rtol=0)
    quarter = OPS.get("rotate").apply(x, {"angle": torch.tensor([math.pi / 2])}, DSARanges())
    # theta = [[cos, -sin], [sin, cos]] samples input (x_in, y_in) = (-y_out, x_out): a 90-degree turn
    torch.testing.assert_close(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["scale", "rotate", "crop", "cutout"])
def test_batched_ops_equal_per_sample_application(real, family):
    op, r = OPS.get(family), DSARanges()
    draws = op.sample(6, 32, 32, r, _gen(14))
    batched = op.apply(real[:6], draws, r)
    for i in range(6):
        one = op.apply(real[i : i + 1], {k: v[i : i + 1] for k, v in draws.items()}, r)
        torch.testing.assert_close(batched[i : i + 1], one, atol=1e-6, rtol=0)


def test_batch_of_one_and_channels_last(real):
    dsa = DSA()
    g = _gen(15)
    for _ in range(12):
        assert dsa(real[:1], g).shape == (1, 3, 32, 32)
        a, b = dsa.siamese([real[:1], real[:1].clone()], g)
        assert torch.equal(a, b)
    cl = real.contiguous(memory_format=torch.channels_last)
    for fam in FAMILIES:
        torch.testing.assert_close(DSA(fam)(cl, _gen(16)), DSA(fam)(real, _gen(16)), atol=1e-6, rtol=0)


def test_dsa_for_drops_flip_for_digits():
    assert "flip" not in dsa_for(SimpleNamespace(flip=False)).families
    assert dsa_for(SimpleNamespace(flip=True)).families == FAMILIES
    assert dsa_for(SimpleNamespace(flip=False), "flip").strategy == "none"


def test_none_strategy_and_bad_input(real):
    assert torch.equal(DSA("none")(real, _gen(0)), real)
    with pytest.raises(UnknownNameError, match="crop"):
        DSA("color_crp")
    with pytest.raises(ConfigError):
        DSA(ratio_scale=0.5)
    with pytest.raises(ConfigError):
        DSA(prob_flp=0.5)
    with pytest.raises(ConfigError):
        DSA(mode="X")
    with pytest.raises(ConfigError):
        DSA().siamese([real, real[:, :, :16]], _gen(0))
