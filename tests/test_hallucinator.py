"""The hallucinator bank against a reference nn.Conv2d / nn.ConvTranspose2d composition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from habacli.errors import ConfigError
from habacli.networks import hallucinator as hal
from habacli.networks.hallucinator import HallucinatorBank, decode_all


def _reference_modules(seed: int, num: int, cin: int, cout: int) -> list[tuple[nn.Conv2d, nn.ConvTranspose2d]]:
    """The official per-hallucinator modules, created in order after the same seed."""
    torch.manual_seed(seed)
    mods = []
    for _ in range(num):
        enc = nn.Conv2d(cin, cout, 3, stride=1, padding=0, bias=True)
        dec = nn.ConvTranspose2d(cout, cout, 3, stride=1, bias=True)
        mods.append((enc, dec))
    return mods


@pytest.mark.parametrize("cin,cout,size", [(3, 3, 32), (1, 3, 32), (1, 1, 28), (3, 3, 17)])
def test_init_equals_pytorch_default_modules(cin: int, cout: int, size: int) -> None:
    torch.manual_seed(7)
    bank = HallucinatorBank(4, cin, cout, size, size)
    mods = _reference_modules(7, 4, cin, cout)
    for k, (enc, dec) in enumerate(mods):
        assert torch.equal(bank.enc_weight[k], enc.weight)
        assert torch.equal(bank.enc_bias[k], enc.bias)
        assert torch.equal(bank.dec_weight[k], dec.weight)
        assert torch.equal(bank.dec_bias[k], dec.bias)
    assert torch.equal(bank.scale, torch.ones(4, cout, size - 2, size - 2))
    assert torch.equal(bank.shift, torch.zeros(4, cout, size - 2, size - 2))


def test_generator_makes_init_reproducible() -> None:
    a = HallucinatorBank(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    b = HallucinatorBank(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    c = HallucinatorBank(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a.params()[n], b.params()[n]) for n in hal.PARAM_NAMES)
    assert not torch.equal(a.enc_weight, c.enc_weight)


@pytest.mark.parametrize("block_max", [0, 10_000], ids=["grouped", "block-diagonal"])
@pytest.mark.parametrize("cin,cout,size", [(3, 3, 32), (1, 3, 32), (1, 1, 28), (3, 3, 64)])
def test_all_equals_per_k_and_reference(monkeypatch, block_max: int, cin: int, cout: int, size: int) -> None:
    monkeypatch.setattr(hal, "BLOCK_DIAGONAL_MAX_CHANNELS", block_max)
    torch.manual_seed(0)
    bank = HallucinatorBank(5, cin, cout, size, size)
    with torch.no_grad():  # make scale/shift non-trivial so they are really exercised
        bank.scale.normal_(1.0, 0.5)
        bank.shift.normal_(0.0, 0.5)
    mods = _reference_modules(0, 5, cin, cout)
    x = torch.randn(6, cin, size, size)
    out = bank.all(x)
    assert out.shape == (5, 6, cout, size, size)
    for k, (enc, dec) in enumerate(mods):
        ref = dec(enc(x) * bank.scale[k] + bank.shift[k])
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bank(x, k), ref, rtol=1e-5, atol=1e-5)


def test_pairs_selects_one_hallucinator_per_sample() -> None:
    torch.manual_seed(1)
    bank = HallucinatorBank(5, 3, 3, 32, 32)
    with torch.no_grad():
        bank.shift.normal_()
    x = torch.randn(9, 3, 32, 32)
    k = torch.tensor([0, 4, 2, 2, 1, 3, 0, 4, 1])
    got = bank.pairs(x, k)
    torch.testing.assert_close(got, bank.all(x)[k, torch.arange(9)], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        bank.pairs(x, k[:3])


def test_gradients_reach_every_parameter_and_the_input() -> None:
    torch.manual_seed(2)
    bank = HallucinatorBank(3, 1, 3, 28, 28)
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    (bank.all(x) ** 2).sum().backward()
    for name, p in bank.params().items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        # every hallucinator's slice gets a gradient
        assert (p.grad.reshape(3, -1).abs().sum(1) > 0).all(), name
    assert x.grad is not None and x.grad.abs().sum() > 0
    x.grad = None
    bank.zero_grad()
    bank.pairs(x, torch.tensor([0, 1, 2, 0])).sum().backward()
    assert x.grad.abs().sum() > 0 and bank.dec_bias.grad.abs().sum() > 0


def test_parameter_count_matches_official_architecture() -> None:
    # haba.md 1.2: 5 568 per hallucinator with RGB bases at 32x32, 5 514 with 1-channel bases.
    assert HallucinatorBank(5, 3, 3, 32, 32).num_parameters() == 5 * 5568
    assert HallucinatorBank(5, 1, 3, 32, 32).num_parameters() == 5 * 5514
    shapes = hal.param_shapes(2, 1, 1, 28, 28)
    assert shapes["scale"] == (2, 1, 26, 26) and shapes["dec_weight"] == (2, 1, 1, 3, 3)


def test_decode_all_is_basis_major_and_identity_without_hallucinators() -> None:
    torch.manual_seed(3)
    bank = HallucinatorBank(4, 3, 3, 32, 32)
    bases = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        flat = decode_all(bases, bank.params())
        per_k = bank.all(bases)
    assert flat.shape == (20, 3, 32, 32)
    for i in range(5):
        for k in range(4):
            assert torch.equal(flat[i * 4 + k], per_k[k, i])
    assert decode_all(bases, {}) is bases
    empty = HallucinatorBank(0, 3, 3, 32, 32)
    assert decode_all(bases, empty.params()) is bases
    assert empty.all(bases).shape == (0, 5, 3, 32, 32)


def test_from_params_round_trip() -> None:
    torch.manual_seed(4)
    bank = HallucinatorBank(2, 1, 3, 32, 32)
    clone = hal.HallucinatorBank.from_params({k: v.detach() for k, v in bank.params().items()})
    assert (clone.num, clone.in_channels, clone.out_channels, clone.height) == (2, 1, 3, 32)
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(clone.all(x), bank.all(x))


@pytest.mark.parametrize("args", [(-1, 3, 3, 32, 32), (2, 0, 3, 32, 32), (2, 3, 3, 2, 32)])
def test_bad_configuration_raises_config_error(args: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError):
        HallucinatorBank(*args)


def test_out_of_range_index() -> None:
    bank = HallucinatorBank(2, 3, 3, 8, 8)
    with pytest.raises(IndexError):
        bank(torch.zeros(1, 3, 8, 8), 2)


# ------------------------------------------------------------------ the opt-in near-identity init


def _fashion_batch(fm_dir, n: int = 200) -> torch.Tensor:
    """``n`` real Fashion-MNIST test images, standardised as the model space is (std 1 overall)."""
    from habacli.data import load_split

    x = load_split("fashion_mnist", "test", data_dir=fm_dir).images[:n].float() / 255
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize("cin,cout", [(1, 1), (1, 3), (3, 3)])
def test_identity_init_without_noise_copies_the_basis_inside_the_border(cin: int, cout: int) -> None:
    bank = hal.near_identity_(HallucinatorBank(3, cin, cout, 12, 12), noise=0.0)
    x = torch.randn(4, cin, 12, 12)
    out = bank.all(x)
    want = x[:, [i % cin for i in range(cout)]]  # a 1-channel basis is copied to every channel
    torch.testing.assert_close(out[..., 1:-1, 1:-1], want[None, ..., 1:-1, 1:-1].expand_as(out[..., 1:-1, 1:-1]))
    assert torch.count_nonzero(out[..., 0, :]) == 0  # the border is the (zeroed) decoder bias


def test_identity_init_keeps_the_draws_and_the_rng_stream() -> None:
    g_off, g_id = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    official = HallucinatorBank(5, 3, 3, 32, 32, generator=g_off)
    identity = HallucinatorBank(5, 3, 3, 32, 32, generator=g_id, init="identity")
    assert torch.equal(g_off.get_state(), g_id.get_state())  # bases drawn later are unchanged
    delta = identity.enc_weight - hal.IDENTITY_NOISE * official.enc_weight
    torch.testing.assert_close(delta[:, :, :, 1, 1], torch.eye(3).expand(5, 3, 3))
    assert delta[:, :, :, [0, 2]].abs().max() < 1e-6 and delta[:, :, :, :, [0, 2]].abs().max() < 1e-6
    torch.testing.assert_close(identity.dec_bias, hal.IDENTITY_NOISE * official.dec_bias)
    assert torch.equal(identity.scale, official.scale) and torch.equal(identity.shift, official.shift)


def test_identity_init_keeps_the_contrast_of_real_images(fashion_mnist_dir) -> None:
    x = _fashion_batch(fashion_mnist_dir)
    for seed in range(3):
        official = HallucinatorBank(5, 1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        identity = HallucinatorBank(5, 1, 1, 28, 28, generator=torch.Generator().manual_seed(seed), init="identity")
        with torch.no_grad():
            off, ident = official.all(x), identity.all(x)
        # the official init leaves a random-filtered, faint image; near-identity keeps the basis
        assert off.std() < 0.5
        assert ident.std() > 0.85
        corr = torch.corrcoef(
            torch.stack([ident[..., 1:-1, 1:-1].flatten(), x[None].expand_as(ident)[..., 1:-1, 1:-1].flatten()])
        )[0, 1]
        assert corr > 0.95


def test_unknown_init_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="identity"):
        HallucinatorBank(2, 3, 3, 8, 8, init="zeros")


@pytest.mark.parametrize("cin,cout", [(1, 1), (1, 3), (3, 3)])
def test_per_channel_modulation_is_the_broadcast_of_per_pixel(cin: int, cout: int) -> None:
    """A per-channel bank computes what a per-pixel bank with constant maps computes, in every form
    (one, all, pairs), with the same draws; it rebuilds from its parameters given the image size."""
    g = torch.Generator().manual_seed(3)
    compact = HallucinatorBank(3, cin, cout, 20, 20, generator=torch.Generator().manual_seed(5), modulation="channel")
    with torch.no_grad():
        compact.scale.copy_(1 + 0.5 * torch.randn(compact.scale.shape, generator=g))
        compact.shift.copy_(0.3 * torch.randn(compact.shift.shape, generator=g))
    full = HallucinatorBank(3, cin, cout, 20, 20, generator=torch.Generator().manual_seed(5))
    assert tuple(compact.scale.shape) == (3, cout, 1, 1) and torch.equal(compact.enc_weight, full.enc_weight)
    with torch.no_grad():
        full.scale.copy_(compact.scale.expand_as(full.scale))
        full.shift.copy_(compact.shift.expand_as(full.shift))
    x = torch.randn(6, cin, 20, 20, generator=g)
    k = torch.tensor([0, 2, 1, 1, 0, 2])
    assert torch.allclose(compact.all(x), full.all(x), atol=1e-5)
    assert torch.allclose(compact.pairs(x, k), full.pairs(x, k), atol=1e-5)
    assert torch.allclose(compact(x, 1), full(x, 1), atol=1e-5)
    shapes = hal.param_shapes(3, cin, cout, 20, 20, modulation="channel")
    assert compact.num_parameters() == sum(torch.Size(s).numel() for s in shapes.values())
    rebuilt = HallucinatorBank.from_params(compact.params(), height=20, width=20)
    assert rebuilt.modulation == "channel" and torch.allclose(rebuilt.all(x), compact.all(x))
    with pytest.raises(ConfigError, match="modulation"):
        HallucinatorBank(1, 1, 1, 8, 8, modulation="global")


def test_upsample_bases_is_bilinear_with_half_pixel_centres() -> None:
    """Format 1.1 step 0 on a hand-checkable case: a 2x2 basis to 4x4 (edges clamp, inner taps 1/4, 3/4)."""
    b = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    up = hal.upsample_bases(b, 4, 4)
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 1.0, 3.0, 4.0]))
    assert torch.allclose(up[0, 0, :, 0], torch.tensor([0.0, 2.0, 6.0, 8.0]))
    assert hal.upsample_bases(up, 4, 4) is up


# ------------------------------------------------------------------ format 1.3: same padding


@pytest.mark.parametrize("modulation", ["pixel", "channel"])
@pytest.mark.parametrize("cin,cout,size", [(1, 1, 8), (1, 3, 12), (3, 3, 32)])
def test_same_padding_equals_padded_reference_modules(modulation: str, cin: int, cout: int, size: int) -> None:
    """padding="same" is Conv2d(padding=1) -> scale/shift -> ConvTranspose2d(padding=1), in all three forms."""
    torch.manual_seed(3)
    bank = HallucinatorBank(4, cin, cout, size, size, padding="same", modulation=modulation)
    with torch.no_grad():
        bank.scale.normal_(1.0, 0.5)
        bank.shift.normal_(0.0, 0.5)
    assert bank.pad == 1 and bank.scale.shape[-2:] == ((size, size) if modulation == "pixel" else (1, 1))
    x = torch.randn(5, cin, size, size)
    out = bank.all(x)
    for k in range(4):
        enc = nn.Conv2d(cin, cout, 3, padding=1)
        dec = nn.ConvTranspose2d(cout, cout, 3, padding=1)
        with torch.no_grad():
            enc.weight.copy_(bank.enc_weight[k])
            enc.bias.copy_(bank.enc_bias[k])
            dec.weight.copy_(bank.dec_weight[k])
            dec.bias.copy_(bank.dec_bias[k])
            ref = dec(enc(x) * bank.scale[k] + bank.shift[k])
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bank(x, k), ref, rtol=1e-5, atol=1e-5)
    pick = torch.tensor([3, 0, 2, 1, 3])
    torch.testing.assert_close(bank.pairs(x, pick), out[pick, torch.arange(5)], rtol=1e-5, atol=1e-5)
    again = HallucinatorBank.from_params(bank.params(), height=size, width=size, padding="same")
    assert again.modulation == modulation and again.pad == 1
    torch.testing.assert_close(again.all(x), out)


def test_same_padding_identity_keeps_the_border_that_valid_loses() -> None:
    """With a centre-delta init, a same-padded hallucinator is the identity on the whole image (the border
    included); the paper's valid network replaces the outer ring by its bias."""
    x = torch.randn(4, 1, 8, 8)
    same = hal.near_identity_(HallucinatorBank(2, 1, 1, 8, 8, padding="same"), noise=0.0)
    valid = hal.near_identity_(HallucinatorBank(2, 1, 1, 8, 8), noise=0.0)
    assert torch.equal(same.all(x), x[None].expand(2, -1, -1, -1, -1))
    ring = torch.ones(8, 8, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    assert torch.count_nonzero(valid.all(x)[..., ring]) == 0  # 28 of 64 pixels of an 8x8 image lost


def test_same_padding_needs_an_odd_kernel_and_a_known_name() -> None:
    with pytest.raises(ConfigError, match="odd"):
        HallucinatorBank(2, 1, 1, 8, 8, kernel_size=2, padding="same")
    with pytest.raises(ConfigError, match="padding"):
        HallucinatorBank(2, 1, 1, 8, 8, padding="reflect")
