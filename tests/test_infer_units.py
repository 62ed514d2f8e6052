"""INFER building blocks: crop/flip, BatchNorm statistics, KL at temperature, MixUp, instance expansion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from habacli.errors import ConfigError, UnknownNameError
from habacli.infer.augment import model_black, random_crop_flip, valid_range
from habacli.infer.labels import expand_instances, instance_labels
from habacli.infer.teachers import FAMILIES, TEACHER_ARCHS, build_teacher, resolve_archs
from habacli.infer.train import InferRecipe, mixup_batch, soft_kl_loss
from habacli.infer.ufc import BNStatistics, UFCConfig


def test_crop_is_a_shifted_window_with_black_padding():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    fill = torch.full((1, 1, 1, 1), -9.0)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        out = random_crop_flip(x, pad=2, flip=False, fill=fill, generator=g)
        assert out.shape == x.shape
        for i in range(2):
            padded = torch.full((1, 10, 10), -9.0)
            padded[:, 2:8, 2:8] = x[i]
            hits = [
                (dy, dx)
                for dy in range(5)
                for dx in range(5)
                if torch.equal(padded[:, dy : dy + 6, dx : dx + 6], out[i])
            ]
            assert hits
            seen.add(hits[0])
    assert len(seen) > 5  # offsets vary
    flipped = [random_crop_flip(x, pad=0, flip=True, fill=fill, generator=g) for _ in range(20)]
    assert any(torch.equal(f[0], x[0].flip(2)) for f in flipped) and any(torch.equal(f[0], x[0]) for f in flipped)


def test_model_space_range_and_black():
    lo, hi = valid_range((0.2861,), (0.3530,))
    assert float(lo) == pytest.approx(-0.2861 / 0.3530) and float(hi) == pytest.approx((1 - 0.2861) / 0.3530)
    assert torch.equal(model_black((0.2861,), (0.3530,)), lo)


def test_bn_statistics_hook_matches_manual_formula():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(10, 1, 8, 8)
    with BNStatistics(net, 10.0) as stats:
        net(x)
        got = stats.loss()
    with torch.no_grad():
        h1 = net[0](x)
        h2 = net[3](net[2](net[1](h1)))

    def term(h, bn):
        return torch.norm(bn.running_var - h.var(dim=(0, 2, 3), unbiased=False), 2) + torch.norm(
            bn.running_mean - h.mean(dim=(0, 2, 3)), 2
        )

    assert float(got.detach()) == pytest.approx(float(10 * term(h1, net[1]) + term(h2, net[4]).detach()), rel=1e-5)
    assert not net[1]._forward_hooks  # removed on exit


def test_kl_at_temperature_without_t_squared():
    z = torch.randn(5, 10)
    s = torch.randn(5, 10) * 10
    want = (torch.softmax(s / 30, 1) * (torch.log_softmax(s / 30, 1) - torch.log_softmax(z / 30, 1))).sum(1).mean()
    assert float(soft_kl_loss(z, s, 30.0)) == pytest.approx(float(want), rel=1e-5)
    assert float(soft_kl_loss(z, s, 30.0, squared=True)) == pytest.approx(900 * float(want), rel=1e-5)
    assert float(soft_kl_loss(s, s, 30.0)) == pytest.approx(0.0, abs=1e-6)


def test_mixup_interpolates_inputs_and_logits_linearly():
    x = torch.randn(4, 1, 2, 2)
    s = torch.randn(4, 3)
    perm = torch.tensor([1, 0, 3, 2])
    xm, sm = mixup_batch(x, s, 0.3, perm)
    assert torch.allclose(sm[0], 0.3 * s[0] + 0.7 * s[1]) and torch.allclose(xm[2], 0.3 * x[2] + 0.7 * x[3])


def test_expand_instances_order_and_clip():
    lo, hi = torch.full((1, 1, 1, 1), -1.0), torch.full((1, 1, 1, 1), 1.0)
    natural = torch.zeros(2, 3, 1, 2, 2)
    natural[1, 2] = 0.5
    ufc = torch.zeros(2, 2, 1, 2, 2)
    ufc[1, 1] = 0.8
    x = expand_instances(natural, ufc, lo, hi)
    assert x.shape == (2 * 3 * 3, 1, 2, 2)
    j = 6 + (1 * 2 + 1) * 3 + 2  # k=1, m=1, c=2: 0.5 + 0.8 clipped to 1
    assert torch.equal(x[j], torch.ones(1, 2, 2)) and torch.equal(x[5], natural[1, 2])
    assert instance_labels(2, 3, 2).tolist() == [0, 1, 2] * 6
    with pytest.raises(ConfigError, match=r"compensators must be \[K=2, M, 1, 2, 2\]"):
        expand_instances(natural, torch.zeros(2, 2, 1, 3, 3), lo, hi)


def test_teacher_registry_and_bad_config():
    assert len(FAMILIES["cpu"]) == 4 and len(FAMILIES["cifar"]) == 4
    assert all(TEACHER_ARCHS[a].verified for a in FAMILIES["cpu"])
    assert not any(TEACHER_ARCHS[a].verified for a in FAMILIES["cifar"])
    for arch in FAMILIES["cpu"]:
        net = build_teacher(arch, channels=1, num_classes=10, height=28, width=28)
        assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    a = build_teacher(
        "convbn_w32_d2", channels=1, num_classes=10, height=28, width=28, generator=torch.Generator().manual_seed(5)
    )
    b = build_teacher(
        "convbn_w32_d2", channels=1, num_classes=10, height=28, width=28, generator=torch.Generator().manual_seed(5)
    )
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(UnknownNameError, match="did you mean"):
        resolve_archs(["convbn_w32_d3"])
    with pytest.raises(ConfigError):
        UFCConfig(iterations=-1)
    with pytest.raises(ConfigError):
        InferRecipe(optimizer="sgd")
