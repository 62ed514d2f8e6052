"""DC and DSA (gradient matching): the distance, the loops, the config, and both objectives through the
real engine on real Fashion-MNIST (tiny settings: ConvNet width 32, 16 real images per class)."""

from __future__ import annotations

import math

import pytest
import torch

from habacli.artifact.codec import load_artifact
from habacli.distill.config import build_config
from habacli.distill.run import Run, distill
from habacli.errors import ConfigError
from habacli.objectives import dc as dc_module
from habacli.objectives import get_objective
from habacli.objectives._matching import (
    get_loops,
    gradient_distance,
    matched_parameters,
)
from habacli.objectives.dc import resolve_config

FMNIST = "fashion_mnist"
TINY = {
    "batch_real": 16,
    "model": "convnetw32",
    "checkpoint_every": 0,
    "eval_every": 0,
    "device": "cpu",
    "val_fraction": 0.05,
    "base_scale": 1,  # full-size bases: these tests count the synthetic images of a class
}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def _run(fashion_mnist_dir, objective: str, ipc: int, **overrides) -> Run:
    cls = get_objective(objective)
    cfg = build_config(
        FMNIST,
        objective,
        ipc,
        preset="quick",
        objective_defaults=cls.defaults,
        factorize=overrides.pop("factorize", True),
        overrides={**TINY, **overrides},
    )
    return Run(cfg, cls, data_dir=fashion_mnist_dir)


# ----------------------------------------------------------------------------- the distance


def test_distance_on_hand_made_gradients():
    torch.manual_seed(0)
    conv = torch.randn(4, 3, 3, 3)
    lin = torch.randn(5, 7)
    ln = torch.randn(6, 2, 2)  # a LayerNorm [C, H, W] gradient: rows = C
    bias = torch.randn(4)
    # identical gradients: distance ~0 (up to the 1e-6 in the denominator)
    assert float(gradient_distance([conv, lin, ln, bias], [conv, lin, ln, bias])) == pytest.approx(0.0, abs=1e-4)
    # 1-D gradients contribute nothing, whatever they are
    assert float(gradient_distance([bias], [-bias])) == 0.0
    assert float(gradient_distance([lin, bias], [lin, torch.randn(4)])) == pytest.approx(0.0, abs=1e-4)
    # orthogonal rows: each row contributes 1 -> the number of rows
    a, b = torch.zeros(3, 4), torch.zeros(3, 4)
    a[:, 0], b[:, 1] = 1.0, 2.0
    assert float(gradient_distance([a], [b])) == pytest.approx(3.0, abs=1e-5)
    # opposite rows contribute 2 each; a conv weight has out rows of in*k*k
    assert float(gradient_distance([conv], [-conv])) == pytest.approx(8.0, abs=1e-4)
    # rows are output units: permuting the entries inside each row changes the distance, scaling a row does not
    scaled = conv * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1)
    assert float(gradient_distance([conv], [scaled])) == pytest.approx(0.0, abs=1e-4)
    # a LayerNorm gradient is C rows of H*W
    ln2 = ln.clone()
    ln2[0] = -ln2[0]
    assert float(gradient_distance([ln2], [ln])) == pytest.approx(2.0, abs=1e-4)
    # mse and cos work on all gradients concatenated (biases included)
    assert float(gradient_distance([lin, bias], [lin, bias + 1], "mse")) == pytest.approx(4.0, rel=1e-5)
    assert float(gradient_distance([bias], [-bias], "cos")) == pytest.approx(2.0, abs=1e-5)
    with pytest.raises(ValueError):
        gradient_distance([lin], [lin], "l1")


def test_distance_is_differentiable_and_matches_a_manual_formula():
    gs = torch.randn(3, 5, requires_grad=True)
    gr = torch.randn(3, 5)
    d = gradient_distance([gs], [gr])
    with torch.no_grad():
        manual = sum(1 - (gs[i] @ gr[i]) / (gs[i].norm() * gr[i].norm() + 1e-6) for i in range(3))
    assert float(d.detach()) == pytest.approx(float(manual), rel=1e-6)
    d.backward()
    assert gs.grad is not None and float(gs.grad.abs().sum()) > 0


def test_matched_parameters_skip_1d_for_ours():
    from habacli.networks import get_network

    net = get_network("convnetw32", channels=1, num_classes=10, height=28, width=28)
    ours = matched_parameters(net, "ours")
    assert all(p.dim() > 1 for p in ours) and len(ours) == 4  # 3 conv weights + the classifier
    assert len(matched_parameters(net, "mse")) == len(list(net.parameters()))


def test_get_loops_table_and_rule():
    assert [get_loops(i) for i in (1, 10, 20, 30, 40, 50)] == [(1, 1), (10, 50), (20, 25), (30, 20), (40, 15), (50, 10)]
    assert get_loops(2) == (2, 50) and get_loops(25) == (25, 20) and get_loops(100) == (50, 10)
    with pytest.raises(ValueError):
        get_loops(0)


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"outer_loop": 0}, "outer_loop"),
        ({"inner_loop": -1}, "inner_loop"),
        ({"batch_real": 2.5}, "batch_real"),
        ({"lr_net": 0}, "lr_net"),
        ({"lr_net": "fast"}, "lr_net"),
        ({"distance": "l2"}, "distance"),
        ({"batch_train": True}, "batch_train"),
        ({"inner_set": "all"}, "inner_set"),
        ({"outer": 3}, "unknown"),
    ],
)
def test_bad_config_is_a_one_line_config_error(bad, needle):
    with pytest.raises(ConfigError) as e:
        resolve_config(bad, ipc=10)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_config_defaults_follow_ipc():
    assert resolve_config({}, ipc=10) == {
        "outer_loop": 10,
        "inner_loop": 50,
        "batch_real": 256,
        "lr_net": 0.01,
        "batch_train": 256,
        "distance": "ours",
        "inner_set": "full",
    }
    assert resolve_config({"outer_loop": 3, "inner_loop": None}, ipc=1)["outer_loop"] == 3


# ----------------------------------------------------------------------------- through the engine


@pytest.mark.parametrize("objective, factorize", [("dc", True), ("dsa", False)])
def test_end_to_end_writes_a_valid_artifact(tmp_path, fashion_mnist_dir, objective, factorize):
    out = tmp_path / f"{objective}.safetensors"
    res = distill(
        FMNIST,
        ipc=1,
        baseline=objective,
        out=out,
        factorize=factorize,
        hallucinators=2,
        iterations=2,
        seed=3,
        data_dir=fashion_mnist_dir,
        preset="quick",
        options=TINY,
    )
    art = load_artifact(out)
    k = 2 if factorize else 0
    assert art.objective == objective and art.num_hallucinators == k and art.labels.tolist() == list(range(10))
    assert tuple(art.bases.shape) == (10, 1, 28, 28) and torch.isfinite(art.bases).all()
    # the presets train HaBa's inner network on the sampled set (session 14); plain sets keep the default
    assert art.objective_config["objective_config"]["inner_set"] == ("sampled" if factorize else "full")
    assert res.iterations == 2 and math.isfinite(res.last_stats["loss_dd"]) and res.last_stats["loss_dd"] > 0
    images, _ = art.decode(pixel=True)
    assert images.shape == (10 * max(k, 1), 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_gradients_reach_bases_and_only_the_chosen_hallucinator(fashion_mnist_dir):
    """With lambda_cos = 0 the matching loss alone drives the step: every basis and the one hallucinator
    of the outer step get a gradient; the other hallucinators get none."""
    run = _run(fashion_mnist_dir, "dc", 2, hallucinators=3, lambda_cos=0.0, outer_loop=2, inner_loop=1)
    eng, syn = run.engine, run.engine.synthetic
    chosen, grads = [], []
    real_random_k, real_step = syn.random_k, eng.synth_step

    def random_k(gen):
        chosen.append(real_random_k(gen))
        return chosen[-1]

    def synth_step(loss):
        before = syn.bases.detach().clone()
        stats = real_step(loss)
        grads.append(
            (
                {k: v.grad.detach().clone() for k, v in syn.bank.params().items()},
                syn.bases.grad.detach().clone(),
                before,
            )
        )
        return stats

    syn.random_k, eng.synth_step = random_k, synth_step
    stats = run.objective.run_iteration(0)
    assert len(grads) == 2 == len(chosen) and math.isfinite(stats["inner_loss"])
    for k, (bank_grads, base_grad, _before) in zip(chosen, grads):
        assert bool((base_grad.flatten(1).abs().sum(1) > 0).all()), "every basis gets a gradient"
        for name, g in bank_grads.items():
            norms = g.flatten(1).abs().sum(1)
            assert float(norms[k]) > 0, name
            assert all(float(norms[j]) == 0 for j in range(3) if j != k), name
    assert not torch.equal(grads[0][2], syn.bases.detach())  # the bases moved


def test_dc_matching_distance_decreases(fashion_mnist_dir):
    """For a fixed network and real batch, DC synth steps lower the matching distance (plain, lr 0.1)."""
    from habacli.objectives._matching import real_gradients, synthetic_gradients

    run = _run(fashion_mnist_dir, "dc", 1, factorize=False, init="noise", lr_img=0.1)
    eng, syn = run.engine, run.engine.synthetic
    net = eng.make_network()
    params = matched_parameters(net)
    real = [eng.real.sample_class(c, 64, eng.generator) for c in range(10)]
    g_real = [real_gradients(net, params, real[c], c) for c in range(10)]

    def distance():
        x = syn.images(None, 0)
        return sum(gradient_distance(synthetic_gradients(net, params, x[c : c + 1], c), g_real[c]) for c in range(10))

    losses = [float(eng.synth_step(distance())["loss_dd"]) for _ in range(8)]
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.slow
def test_dc_loss_decreases_over_a_short_run(fashion_mnist_dir):
    """Fixed seed, plain DC from noise: the mean matching loss of the last iterations is below the first ones
    (a fresh random network every iteration, so this needs a few iterations to average out)."""
    run = _run(fashion_mnist_dir, "dc", 1, factorize=False, init="noise", seed=0)
    losses = [run.objective.run_iteration(i)["loss_dd"] for i in range(24)]
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.9 * first, (first, last)


def test_batchnorm_statistics_are_set_then_frozen():
    """DC's BN handling: a train-mode pass over 16 images per class updates the running statistics, then
    BN layers are in eval mode (matching forwards no longer change them) while the rest stays in train mode."""
    from habacli.networks import get_network
    from habacli.objectives._matching import has_batchnorm, refresh_batchnorm

    net = get_network("convnet_bn", channels=1, num_classes=3, height=28, width=28)
    g = torch.Generator().manual_seed(0)
    seen = []

    def sample(c, n):
        seen.append((c, n))
        return torch.randn(n, 1, 28, 28, generator=g) + c

    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert (
        has_batchnorm(net)
        and bn
        and not has_batchnorm(get_network("convnetw32", channels=1, num_classes=3, height=28, width=28))
    )
    before = bn[0].running_mean.clone()
    refresh_batchnorm(net, sample, 3)
    assert seen == [(0, 16), (1, 16), (2, 16)]
    assert not torch.equal(before, bn[0].running_mean)
    assert all(not m.training for m in bn) and net.training
    frozen = bn[0].running_mean.clone()
    net(torch.randn(4, 1, 28, 28))
    assert torch.equal(frozen, bn[0].running_mean)


class _SpyDSA:
    """Wraps a DSA: records siamese calls and per-sample calls."""

    def __init__(self, dsa):
        self.dsa, self.siamese_calls, self.sample_calls = dsa, [], []

    def siamese(self, xs, generator):
        out = self.dsa.siamese(xs, generator)
        self.siamese_calls.append(([x.shape[0] for x in xs], out))
        return out

    def __call__(self, x, generator):
        self.sample_calls.append(x.shape[0])
        return self.dsa(x, generator)


def _spied_dsa_run(fashion_mnist_dir, inner_set: str):
    """A DSA objective (IPC 2, K = 2, 2 outer x 3 inner epochs, batch 16) whose augmentation is a :class:`_SpyDSA`."""
    run = _run(
        fashion_mnist_dir, "dsa", 2, hallucinators=2, outer_loop=2, inner_loop=3, batch_train=16, inner_set=inner_set
    )
    obj = run.objective
    spy = _SpyDSA(obj.augment)
    obj.augment = spy
    return obj, spy


def test_dsa_siamese_is_shared_by_real_and_synthetic_batches(fashion_mnist_dir, monkeypatch):
    obj, spy = _spied_dsa_run(fashion_mnist_dir, "full")
    used_real, used_syn = [], []
    real_fn, syn_fn = dc_module.real_gradients, dc_module.synthetic_gradients
    monkeypatch.setattr(
        dc_module, "real_gradients", lambda net, p, x, c, ac=None: used_real.append(x) or real_fn(net, p, x, c, ac)
    )
    monkeypatch.setattr(
        dc_module, "synthetic_gradients", lambda net, p, x, c: used_syn.append(x) or syn_fn(net, p, x, c)
    )
    obj.run_iteration(0)
    # one siamese call per class per outer step, on [real batch, the class's synthetic batch] together
    assert len(spy.siamese_calls) == 2 * 10
    assert all(sizes == [16, 2] for sizes, _ in spy.siamese_calls)
    # and what was augmented together is exactly what the gradients were computed on (one gradient pair per call:
    # without this count an empty list would make the all() below true)
    assert len(used_real) == len(used_syn) == len(spy.siamese_calls)
    assert all(r is out[0] and s is out[1] for r, s, (_, out) in zip(used_real, used_syn, spy.siamese_calls))
    # the inner loop (between the 2 outer steps) augments per sample: 3 epochs x ceil(40 / 16) batches (the full
    # basis x hallucinator set; the presets' sampled set is tested below)
    assert spy.sample_calls == [16, 16, 8] * 3


def test_sampled_inner_set_trains_on_every_basis_once_per_epoch(fashion_mnist_dir, monkeypatch):
    """inner_set = "sampled": each inner epoch is every basis once under a hallucinator of its own draw (20
    images for 10 classes x 2 bases with K = 2, not the full 40), and each image is one of that basis's decoded
    images on real data."""
    obj, spy = _spied_dsa_run(fashion_mnist_dir, "sampled")
    drawn, decoded = [], []
    make = dc_module.sampled_expansion

    def spy_make(x_all, y_all, k):
        decoded.append((x_all.clone(), y_all.clone(), k))
        draw = make(x_all, y_all, k)

        def spy_draw(epoch, gen):
            out = draw(epoch, gen)
            drawn.append(out)
            return out

        return spy_draw

    monkeypatch.setattr(dc_module, "sampled_expansion", spy_make)
    obj.run_iteration(0)
    assert spy.sample_calls == [16, 4] * 3  # 3 epochs x ceil(20 / 16) batches
    ((x_all, y_all, k),) = decoded
    assert k == 2 and x_all.shape[0] == 40 and len(drawn) == 3
    per_basis = x_all.view(20, 2, *x_all.shape[1:])
    picks = []
    for x, y in drawn:
        assert x.shape[0] == 20 and torch.equal(y, y_all[::2])
        match = (x[:, None] == per_basis).flatten(2).all(-1)  # [basis, k]: which decoded image each row is
        assert bool(match.any(1).all())
        picks.append(match.float().argmax(1))
    assert len({tuple(p.tolist()) for p in picks}) > 1  # hallucinators are redrawn each epoch


def test_full_inner_set_is_the_default_and_unchanged_without_factorisation(fashion_mnist_dir):
    """inner_set = "sampled" changes nothing for a plain (K = 0) set: the same run bit for bit."""
    outs = []
    for inner_set in ("full", "sampled"):
        run = _run(
            fashion_mnist_dir, "dc", 1, factorize=False, outer_loop=2, inner_loop=2, batch_train=8, inner_set=inner_set
        )
        run.objective.run_iteration(0)
        outs.append(run.engine.synthetic.bases.detach().clone())
    assert torch.equal(outs[0], outs[1])


def test_siamese_applies_one_transform_to_both_batches(fashion_mnist_dir):
    """The op and parameters DSA's siamese call draws are the same for real and synthetic: feeding the same
    image as both gives the same output."""
    run = _run(fashion_mnist_dir, "dsa", 1, factorize=False)
    x = run.engine.real.sample_class(0, 4, run.engine.generator)
    for _ in range(12):  # several op families
        a, b = run.objective.augment.siamese([x, x[:1].clone()], run.engine.generator)
        assert torch.allclose(a[:1], b, atol=1e-6) and not torch.equal(a[1:], a[:1].expand_as(a[1:]))


def test_dc_never_augments_and_dsa_needs_augmentation(fashion_mnist_dir):
    run = _run(fashion_mnist_dir, "dc", 1, factorize=False, dsa=True)  # the engine has a DSA, DC ignores it
    spy = _SpyDSA(run.engine.dsa)
    run.engine.dsa = spy
    run.objective.run_iteration(0)
    assert run.objective.augment is None and spy.siamese_calls == [] and spy.sample_calls == []
    with pytest.raises(ConfigError, match="needs DSA"):
        _run(fashion_mnist_dir, "dsa", 1, factorize=False, dsa=False)


@pytest.mark.parametrize(
    "setting, needle",
    [("distance=l2", "distance must be one of"), ("outer_loop=0", "outer_loop must be an integer >= 1")],
)
def test_cli_bad_dc_option_is_one_line(capsys, tmp_path, fashion_mnist_dir, setting, needle):
    from habacli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "distill",
                FMNIST,
                "--ipc",
                "1",
                "--baseline",
                "dc",
                "--set",
                setting,
                "--data-dir",
                str(fashion_mnist_dir),
                "--out",
                str(tmp_path / "a.safetensors"),
                "--device",
                "cpu",
            ]
        )
    cap = capsys.readouterr()
    assert exc.value.code == 2 and needle in cap.err
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("off", None)])
def test_inner_loop_trains_under_the_runs_autocast(fashion_mnist_dir, monkeypatch, amp, dtype):
    """--amp bf16 covers DC's inner training loop too (most of an IPC-10 iteration: 95 -> 66 s, docs/benchmarks.md);
    without --amp the loop stays fp32. The network's logits are looked at inside the loop on real data."""
    run = _run(fashion_mnist_dir, "dc", 2, factorize=False, outer_loop=2, inner_loop=1, batch_train=16, amp=amp)
    seen = []
    net_forward = type(run.engine.make_network()).forward

    def spy(self, x):
        out = net_forward(self, x)
        seen.append((torch.is_grad_enabled(), out.dtype))
        return out

    monkeypatch.setattr(type(run.engine.make_network()), "forward", spy)
    inner = dc_module.train_network
    calls = []

    def timed_inner(*a, **k):
        calls.append(len(seen))
        out = inner(*a, **k)
        calls.append(len(seen))
        return out

    monkeypatch.setattr(dc_module, "train_network", timed_inner)
    run.objective.run_iteration(0)
    assert len(calls) == 2, calls  # one inner loop, between the two outer steps
    inner_dtypes = {d for _, d in seen[calls[0] : calls[1]]}
    assert inner_dtypes == {dtype or torch.float32}
