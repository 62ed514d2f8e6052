"""Batched evaluation runs (habacli/evaluate/batched.py, habacli/networks/wide.py) against the sequential
loop on real Fashion-MNIST: the same per-run accuracies and losses, the same progress, the fallbacks.

Tolerance: the batched path runs the same arithmetic per run (its own init, data order, DSA and
hallucinator draws from its own generator), but as one grouped convolution and one batched matmul
instead of R separate ones, so oneDNN sums in another order: the per-run losses agree to ~1e-7
relative after a few epochs (measured 1.1e-7..2.1e-7 here). The tests allow 1e-4 relative on every
epoch's loss (a mismatched draw, init or gradient shows up at 1e-2 or more from the first epoch) and
at most 3 of the 2,000 test images changing class per run (a prediction flips only where its two
best logits tie to ~1e-6; none flipped in a ConvNetW32 check on all 10,000 test images, 3 runs x 6 epochs).
"""

from __future__ import annotations

import pytest
import torch

from habacli.data import get_spec, load_split
from habacli.errors import ConfigError
from habacli.evaluate import batched
from habacli.evaluate.batched import _groups, batchable, group_size, train_runs
from habacli.evaluate.run import sampled_expansion
from habacli.networks import get_network
from habacli.networks.wide import widen
from habacli.transforms.augment import dsa_for

SMALL = "convnetw32"
RUNS = 3
TEST_IMAGES = 2000  # the first 2,000 of the real test set (the whole set: same result, 5x the time)
ACC_TOL = 3 / TEST_IMAGES
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def fmnist(fashion_mnist_dir):
    spec = get_spec("fashion_mnist", data_dir=fashion_mnist_dir)
    train = load_split("fashion_mnist", "train", data_dir=fashion_mnist_dir)
    test = load_split("fashion_mnist", "test", data_dir=fashion_mnist_dir)
    m = torch.tensor(spec.mean).view(1, -1, 1, 1)
    s = torch.tensor(spec.std).view(1, -1, 1, 1)

    def norm(u8: torch.Tensor) -> torch.Tensor:
        return (u8.float() / 255 - m) / s

    return spec, train, norm, (norm(test.images[:TEST_IMAGES]), test.labels[:TEST_IMAGES].long())


def _per_class(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [
            (labels == c).nonzero().flatten()[torch.randperm(int((labels == c).sum()), generator=g)[:n]]
            for c in range(10)
        ]
    )


def _assert_same(seq, bat) -> None:
    assert len(seq) == len(bat) == RUNS
    for a, b in zip(seq, bat, strict=True):
        assert abs(a.accuracy - b.accuracy) <= ACC_TOL, (a.accuracy, b.accuracy)
        assert len(a.train_loss_curve) == len(b.train_loss_curve)
        for la, lb in zip(a.train_loss_curve, b.train_loss_curve, strict=True):
            assert lb == pytest.approx(la, rel=LOSS_RTOL)
        assert [e for e, _ in a.test_curve] == [e for e, _ in b.test_curve]
        for (_, ca), (_, cb) in zip(a.test_curve, b.test_curve, strict=True):
            assert abs(ca - cb) <= ACC_TOL
    # the runs differ from each other (their own seeds), far beyond the tolerance
    assert len({round(r.train_loss_curve[-1], 4) for r in seq}) == RUNS


def test_batched_equals_sequential_sampled_expansion_ipc1(fmnist):
    """IPC 1 HaBa-style set: 10 bases x 2 hallucinators (real images), sampled expansion, DSA, ConvNet-3."""
    spec, train, norm, test = fmnist
    idx = _per_class(train.labels, 2, seed=0)  # basis-major: basis i's two "hallucinations" are rows 2i, 2i+1
    expand = sampled_expansion(norm(train.images[idx]), train.labels[idx].long(), 2)
    kw = dict(spec=spec, epochs=3, lr=0.01, seeds=[0, 1, 2], device="cpu", dsa=dsa_for(spec), images_per_epoch=10)
    events: dict[bool, list] = {False: [], True: []}
    seq = train_runs("convnet", [expand] * RUNS, test, batched=False, progress=events[False].append, **kw)
    bat = train_runs("convnet", [expand] * RUNS, test, batched=True, progress=events[True].append, **kw)
    _assert_same(seq, bat)
    for evs in events.values():  # progress over runs x epochs, ending at the total
        assert evs[-1].done == evs[-1].total == RUNS * 4
        assert all(e.description == "convnet" for e in evs)
    assert events[True][0].message == "runs 1-3/3" and events[False][0].message == "run 1/3"


def test_batched_equals_sequential_real_images_per_run(fmnist):
    """10 real images per class, a different draw per run (the random baseline), test curve every 2 epochs."""
    spec, train, norm, test = fmnist
    sets = []
    for r in range(RUNS):
        idx = _per_class(train.labels, 10, seed=100 + r)
        sets.append((norm(train.images[idx]), train.labels[idx].long()))
    kw = dict(spec=spec, epochs=3, lr=0.01, seeds=[5, 6, 7], device="cpu", dsa=dsa_for(spec), test_every=2)
    seq = train_runs(SMALL, sets, test, batched=False, batch_size=64, **kw)
    bat = train_runs(SMALL, sets, test, batched=True, batch_size=64, **kw)  # 2 batches per epoch, last one short
    _assert_same(seq, bat)


def test_batched_bf16_close_to_sequential(fmnist):
    """``--amp bf16``: the batched step runs under autocast too (bf16 rounding: looser bounds)."""
    spec, train, norm, test = fmnist
    idx = _per_class(train.labels, 1, seed=3)
    data = (norm(train.images[idx]), train.labels[idx].long())
    x_test, y_test = test
    kw = dict(spec=spec, epochs=2, lr=0.01, seeds=[0, 1, 2], device="cpu", dsa=dsa_for(spec), amp="bf16")
    seq = train_runs(SMALL, [data] * RUNS, (x_test, y_test), batched=False, **kw)
    bat = train_runs(SMALL, [data] * RUNS, (x_test, y_test), batched=True, **kw)
    for a, b in zip(seq, bat, strict=True):
        assert abs(a.accuracy - b.accuracy) <= 0.02
        assert b.train_loss_curve[0] == pytest.approx(a.train_loss_curve[0], rel=2e-2)


def test_which_networks_batch():
    spec = get_spec("fashion_mnist")
    for name in ("convnet", "convnetw32", "convnetd4", "convnet_nn", "convnet_gn", "convnet_as", "convnet_mp"):
        assert batchable(name, spec), name
    for name in ("convnet_bn", "convnet_ln", "resnet18", "vgg11", "alexnet"):
        assert not batchable(name, spec), name


def test_wide_forward_matches_each_network_and_leaves_the_global_rng():
    nets = [
        get_network(
            "convnet_gn", channels=1, num_classes=10, height=28, width=28, generator=torch.Generator().manual_seed(s)
        )
        for s in range(3)
    ]
    state = torch.get_rng_state()
    wide = widen(nets)
    assert wide is not None and torch.equal(torch.get_rng_state(), state)
    xs = [torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(10 + r)) for r in range(3)]
    out = wide(torch.stack(xs, dim=1).flatten(1, 2))
    for r in range(3):
        torch.testing.assert_close(out[r], nets[r](xs[r]), rtol=1e-4, atol=1e-5)


def test_default_is_batched_on_cuda_and_on_the_cpu_when_asked(monkeypatch):
    monkeypatch.delenv("HABA_EVAL_GROUP", raising=False)
    assert batched.default_batched(torch.device("cuda")) and not batched.default_batched(torch.device("cpu"))
    monkeypatch.setenv("HABA_EVAL_GROUP", "5")
    assert batched.default_batched(torch.device("cpu"))
    monkeypatch.setenv("HABA_EVAL_GROUP", "1")
    assert not batched.default_batched(torch.device("cpu"))


def test_groups_and_the_env_override(monkeypatch):
    assert [list(g) for g in _groups(5, 5)] == [[0, 1, 2, 3, 4]]
    assert [len(g) for g in _groups(5, 3)] == [2, 3]
    assert [len(g) for g in _groups(10, 1)] == [1] * 10
    spec = get_spec("fashion_mnist")
    monkeypatch.setenv("HABA_EVAL_GROUP", "2")
    assert group_size("convnet", spec, 5, 10, torch.device("cpu")) == 2
    monkeypatch.setenv("HABA_EVAL_GROUP", "0")
    with pytest.raises(ConfigError):
        group_size("convnet", spec, 5, 10, torch.device("cpu"))
    monkeypatch.delenv("HABA_EVAL_GROUP")
    monkeypatch.setattr(batched, "_available_bytes", lambda _d: 8 << 30)
    assert group_size("convnet", spec, 10, 10, torch.device("cpu")) == 10  # IPC 1: all ten fit in 4 GiB
    monkeypatch.setattr(batched, "_available_bytes", lambda _d: 1 << 30)
    assert 1 <= group_size("convnet", spec, 10, 256, torch.device("cpu")) < 10  # a full batch of 256: split


def test_evaluate_random_batched_on_request_equals_sequential(fashion_mnist_dir, monkeypatch):
    """The plumbing: `haba evaluate`'s random baseline with HABA_EVAL_GROUP=2 trains its 2 runs batched."""
    from habacli.evaluate.run import evaluate_random

    kw = dict(models=SMALL, runs=2, epochs=1, seed=3, device="cpu", data_dir=fashion_mnist_dir)
    monkeypatch.delenv("HABA_EVAL_GROUP", raising=False)
    seq_events: list = []
    seq = evaluate_random("fashion_mnist", 2, progress=seq_events.append, **kw)
    monkeypatch.setenv("HABA_EVAL_GROUP", "2")
    bat_events: list = []
    bat = evaluate_random("fashion_mnist", 2, progress=bat_events.append, **kw)
    a, b = seq.models[SMALL], bat.models[SMALL]
    for x, y in zip(a.accuracies, b.accuracies, strict=True):
        assert abs(x - y) <= 3 / 10_000
    for ca, cb in zip(a.train_loss_curves, b.train_loss_curves, strict=True):
        assert cb == pytest.approx(ca, rel=LOSS_RTOL)
    assert seq_events[0].message == f"{SMALL} run 1/2" and bat_events[0].message == f"{SMALL} runs 1-2/2"
    assert (bat_events[-1].done, bat_events[-1].total) == (seq_events[-1].done, seq_events[-1].total) == (4, 4)
