"""HaBa's factorisation: the synthetic set, the contrastive losses, and the engine's update rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from habacli.distill.config import build_config, hallucinator_values, plan_budget
from habacli.distill.factorization import (
    SyntheticSet,
    adversary_loss,
    cos_loss,
    sim_loss,
    supcon_loss,
)
from habacli.distill.run import Run
from habacli.errors import ConfigError
from habacli.networks.hallucinator import HallucinatorBank, decode_all
from habacli.objectives import get_objective


def _set(k: int = 3, classes: int = 4, n: int = 2, c: int = 1) -> SyntheticSet:
    g = torch.Generator().manual_seed(0)
    bases = torch.randn(classes * n, c, 12, 12, generator=g)
    bank = HallucinatorBank(k, c, 3, 12, 12, generator=g) if k else None
    return SyntheticSet(bases, classes, bank)


def test_synthetic_set_layout_and_images():
    syn = _set()
    assert syn.num_bases == 8 and syn.bases_per_class == 2 and syn.num_hallucinators == 3
    assert syn.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert syn.class_indices(2).tolist() == [4, 5]
    x = syn.images(None, 1)
    assert x.shape == (8, 3, 12, 12) and x.requires_grad
    assert torch.allclose(syn.images(syn.class_indices(3), 1), x[6:8])
    assert torch.allclose(syn.class_batch(3, 1), x[6:8])
    with pytest.raises(ValueError):
        syn.images(None, None)
    with pytest.raises(IndexError):
        syn.images(None, 3)
    xa, ya = syn.expand_all()  # basis-major: image i*K + k is basis i under hallucinator k
    assert xa.shape == (24, 3, 12, 12) and ya.tolist() == [c for c in range(4) for _ in range(6)]
    assert torch.allclose(xa[2 * 3 + 1], x[2], atol=1e-6)
    assert torch.allclose(xa, decode_all(syn.bases.detach(), syn.bank.params()))


def test_plain_set_is_the_bases():
    syn = _set(k=0, c=3)
    assert syn.num_hallucinators == 0 and syn.hallucinator_parameters() == []
    assert torch.equal(syn.images(torch.tensor([1, 3])), syn.bases[[1, 3]])
    assert torch.equal(syn.images(), syn.bases)
    assert syn.random_k(torch.Generator()) == 0
    x, y = syn.expand_all()
    assert torch.equal(x, syn.bases.detach()) and y.tolist() == syn.labels.tolist()


def test_random_pair_is_distinct_and_uniform():
    syn, g = _set(k=5), torch.Generator().manual_seed(1)
    pairs = [syn.random_pair(g) for _ in range(400)]
    assert all(a != b for a, b in pairs)
    firsts = torch.bincount(torch.tensor([a for a, _ in pairs]), minlength=5)
    assert firsts.min() > 40  # every hallucinator gets picked
    with pytest.raises(ValueError):
        _set(k=1).random_pair(g)


def test_cos_and_sim_losses():
    z = torch.rand(6, 10) + 0.1
    assert cos_loss(z, z).item() == pytest.approx(1.0, abs=1e-6)
    assert sim_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert cos_loss(a, b).item() == pytest.approx(0.5) and sim_loss(a, b).item() == pytest.approx(0.5)
    assert cos_loss(a, -a).item() == pytest.approx(0.0, abs=1e-7)


def _supcon_reference(f: torch.Tensor, y: torch.Tensor, t: float, bt: float) -> float:
    """Khosla et al.'s loss written the slow, obvious way (contrast mode all)."""
    n, v, _ = f.shape
    feats = [f[i, j] for j in range(v) for i in range(n)]
    labels = [int(y[i]) for j in range(v) for i in range(n)]
    total = 0.0
    for a, fa in enumerate(feats):
        denom = sum(math.exp(float(fa @ fb) / t) for b, fb in enumerate(feats) if b != a)
        pos = [b for b in range(len(feats)) if b != a and labels[b] == labels[a]]
        total += -(t / bt) * sum(float(fa @ feats[b]) / t - math.log(denom) for b in pos) / len(pos)
    return total / len(feats)


def test_supcon_matches_the_definition():
    g = torch.Generator().manual_seed(3)
    f = F.normalize(torch.randn(6, 2, 8, generator=g, dtype=torch.float64), dim=-1)
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    got = supcon_loss(f, y, temperature=0.07, base_temperature=0.07).item()
    assert got == pytest.approx(_supcon_reference(f, y, 0.07, 0.07), rel=1e-9)
    got5 = supcon_loss(f, y, temperature=0.5, base_temperature=0.07).item()
    assert got5 == pytest.approx(_supcon_reference(f, y, 0.5, 0.07), rel=1e-9)


def test_adversary_loss_combines_its_terms():
    g = torch.Generator().manual_seed(4)
    z, logits, y = torch.rand(8, 5, generator=g), torch.randn(8, 3, generator=g), torch.tensor([0, 1, 2, 1])
    parts = adversary_loss(
        z, logits, y, lambda_cls=1.0, lambda_sim=0.1, lambda_con=0.1, temperature=0.07, base_temperature=0.07
    )
    want = F.cross_entropy(logits, torch.cat([y, y])) + 0.1 * sim_loss(z[:4], z[4:]) + 0.1 * parts["con"]
    assert parts["loss"].item() == pytest.approx(want.item(), rel=1e-6)


def test_budget_rules():
    pixel = {"budget": "matched", "hallucinator_modulation": "pixel"}  # the preset's auto would pick per-channel
    cfg = build_config("fashion_mnist", "dm", 1, preset="quick", overrides=pixel)
    assert hallucinator_values(1, 3, 3, 32, 32) == 5568  # research/haba.md 1.2
    assert hallucinator_values(1, 1, 3, 32, 32) == 5514
    with pytest.raises(ConfigError, match="matched"):
        plan_budget(cfg, num_classes=10, channels=1, height=28, width=28)
    valid = {"budget": "matched", "base_scale": 1, "hallucinator_padding": "valid"}  # the paper's network
    cfg10 = build_config("fashion_mnist", "dm", 10, preset="quick", overrides=valid)
    b = plan_budget(cfg10, num_classes=10, channels=1, height=28, width=28)
    assert b.bases_per_class == 9 and b.total_values <= b.baseline_values and b.hallucinator_values == 6860
    # the DM+HaBa presets: auto half-resolution bases and same-padded hallucinators (28x28 maps, 7,940 values):
    # 35 bases of 14x14 per class fit where 9 of 28x28 did
    preset10 = build_config("fashion_mnist", "dm", 10, preset="quick", overrides=pixel)
    b = plan_budget(preset10, num_classes=10, channels=1, height=28, width=28)
    assert preset10.base_scale == 0 and preset10.hallucinator_padding == "same"
    assert b.hallucinator_values == 5 * (9 + 1 + 2 * 28 * 28 + 9 + 1) == 7940
    assert b.bases_per_class == (78400 - 7940) // (10 * 14 * 14) == 35 and b.total_values <= b.baseline_values
    auto = build_config("fashion_mnist", "dm", 10, preset="quick", overrides={"budget": "matched"})
    assert auto.hallucinator_modulation == "auto"  # per-channel maps (22 values each) buy 4 more bases per class
    assert plan_budget(auto, num_classes=10, channels=1, height=28, width=28).bases_per_class == 39
    paper_cfg = build_config("cifar10", "dm", 1, preset="paper", overrides={"hallucinator_padding": "valid"})
    paper = plan_budget(paper_cfg, num_classes=10, channels=3, height=32, width=32)
    assert paper.total_values == 30720 + 27840 and paper.bases_per_class == 4  # 4 bases of 16x16, no ZCA


# ------------------------------------------------------------------------- the engine on real data


@pytest.fixture(scope="module")
def run(fashion_mnist_dir):
    torch.set_num_threads(2)
    cls = get_objective("dm")
    cfg = build_config(
        "fashion_mnist",
        "dm",
        1,
        preset="quick",
        objective_defaults=cls.defaults,
        overrides={"hallucinators": 3, "batch_real": 16, "eval_every": 0, "device": "cpu", "checkpoint_every": 0},
    )
    return Run(cfg, cls, data_dir=fashion_mnist_dir)


def _snapshot(module_params):
    return [p.detach().clone() for p in module_params]


def test_synth_step_reaches_bases_and_every_hallucinator_part(run, monkeypatch):
    eng = run.engine
    monkeypatch.setattr(eng, "adversary_step", dict)
    stats = run.objective.run_iteration(0)
    assert {"loss_dd", "loss_cos"} <= set(stats) and math.isfinite(stats["loss_dd"])
    assert eng.synthetic.bases.grad is not None and eng.synthetic.bases.grad.abs().sum() > 0
    for name, p in eng.synthetic.bank.params().items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # L_cos used the adversary without training it
    assert all(p.grad is None for p in eng.adversary.parameters())


def test_adversary_step_changes_only_the_adversary(run):
    eng = run.engine
    syn_before = _snapshot([eng.synthetic.bases, *eng.synthetic.hallucinator_parameters()])
    adv_before = _snapshot(eng.adversary.parameters())
    stats = eng.adversary_step()
    assert math.isfinite(stats["loss_adv"])
    for before, p in zip(syn_before, [eng.synthetic.bases, *eng.synthetic.hallucinator_parameters()]):
        assert torch.equal(before, p.detach())
    # every weight moves (conv biases in front of instance norm get an exactly-zero gradient)
    changed = [not torch.equal(b, p.detach()) for b, p in zip(adv_before, eng.adversary.parameters()) if p.dim() > 1]
    assert changed and all(changed)


def test_synth_step_changes_the_synthetic_set(run):
    eng = run.engine
    before = _snapshot([eng.synthetic.bases, *eng.synthetic.hallucinator_parameters()])
    run.objective.run_iteration(1)
    after = [eng.synthetic.bases, *eng.synthetic.hallucinator_parameters()]
    assert all(not torch.equal(b, a.detach()) for b, a in zip(before, after))
