"""`haba evaluate`: the protocol (schedule, reproducibility, curves), HaBa's sampled expansion, the
test-set transform (train-fitted ZCA), the random baseline on real Fashion-MNIST, and the CLI's
one-line errors. Networks are kept small (``convnetw32``) so the default suite stays fast."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from habacli.artifact.codec import HabaArtifact, save_artifact
from habacli.cli import main
from habacli.data import fit_zca, get_spec, load_split
from habacli.errors import ConfigError, UnknownNameError
from habacli.evaluate import protocol
from habacli.evaluate.protocol import train_and_test
from habacli.evaluate.run import (
    distilled_network,
    evaluate,
    evaluate_random,
    model_lrs,
    model_space_test,
    sampled_expansion,
)
from habacli.networks.hallucinator import HallucinatorBank

SMALL = "convnetw32"


@pytest.fixture(scope="module")
def fmnist(fashion_mnist_dir):
    spec = get_spec("fashion_mnist", data_dir=fashion_mnist_dir)
    return (
        spec,
        load_split("fashion_mnist", "train", data_dir=fashion_mnist_dir),
        load_split("fashion_mnist", "test", data_dir=fashion_mnist_dir),
    )


def normalize(u8: torch.Tensor, spec) -> torch.Tensor:
    m = torch.tensor(spec.mean).view(1, -1, 1, 1)
    s = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (u8.float() / 255 - m) / s


def per_class(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [
            (labels == c).nonzero().flatten()[torch.randperm(int((labels == c).sum()), generator=g)[:n]]
            for c in range(10)
        ]
    )


def haba_artifact(spec, train, *, k: int = 2, per: int = 2, lr: float | None = 0.02) -> HabaArtifact:
    """Real Fashion-MNIST images as bases (normalised) and K hallucinators at init."""
    idx = per_class(train.labels, per)
    bank = HallucinatorBank(k, 1, 1, 28, 28, generator=torch.Generator().manual_seed(1)) if k else None
    return HabaArtifact.build(
        normalize(train.images[idx], spec),
        train.labels[idx],
        bank,
        spec,
        spec.mean,
        spec.std,
        objective="dm",
        objective_config={},
        ipc=per,
        seed=0,
        learned_lr=lr,
    )


@pytest.fixture
def short_test_set(monkeypatch):
    """Score on the first 1000 real test images (the transform itself is unchanged and is checked
    on the full split in test_zca_artifact_whitens_test_with_train_fit): keeps the suite fast."""
    import habacli.evaluate.run as ev

    real = ev.model_space_test

    def first_1000(*args, **kwargs):
        x, y = real(*args, **kwargs)
        return x[:1000], y[:1000]

    monkeypatch.setattr(ev, "model_space_test", first_1000)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


# ----------------------------------------------------------------------------- protocol
def test_train_and_test_reproducible_with_schedule(fmnist, monkeypatch):
    spec, train, test = fmnist
    idx = per_class(train.labels, 5)
    xtr, ytr = normalize(train.images[idx], spec), train.labels[idx].long()
    xte, yte = normalize(test.images[:600], spec), test.labels[:600].long()
    lrs = []
    real_sgd = protocol._sgd
    monkeypatch.setattr(protocol, "_sgd", lambda net, lr: lrs.append(lr) or real_sgd(net, lr))
    kw = {"spec": spec, "epochs": 4, "lr": 0.01, "seed": 3, "device": "cpu", "test_every": 2}
    a = train_and_test(SMALL, (xtr, ytr), (xte, yte), **kw)
    assert a.accuracy > 0.3, a.accuracy  # 5 real images per class beat chance (0.1) by far
    assert len(a.train_loss_curve) == 5  # range(epochs + 1), as the reference
    assert lrs == [0.01, pytest.approx(0.001)]  # rebuilt once, after epoch epochs // 2 + 1
    assert [e for e, _ in a.test_curve] == [2, 4, 5] and a.test_curve[-1][1] == a.accuracy
    b = train_and_test(SMALL, (xtr, ytr), (xte, yte), **kw)
    assert a.accuracy == b.accuracy and a.train_loss_curve == b.train_loss_curve
    c = train_and_test(SMALL, (xtr, ytr), (xte, yte), **{**kw, "seed": 4})
    assert c.train_loss_curve != a.train_loss_curve


def test_train_and_test_rejects_bad_values(fmnist):
    spec, train, _ = fmnist
    x, y = normalize(train.images[:4], spec), train.labels[:4].long()
    with pytest.raises(ConfigError, match="--amp"):
        train_and_test(SMALL, (x, y), (x, y), spec=spec, epochs=0, lr=0.01, seed=0, device="cpu", amp="fp8")
    with pytest.raises(UnknownNameError, match="did you mean 'convnet'"):
        train_and_test("convnett", (x, y), (x, y), spec=spec, epochs=0, lr=0.01, seed=0, device="cpu")


def test_standardize_batches_option_is_affine_invariant(fmnist):
    """HaBa's per-batch standardisation (opt-in): an affine change of the inputs changes nothing."""
    from habacli.networks import get_network

    spec, _, test = fmnist
    x, y = normalize(test.images[:300], spec), test.labels[:300].long()
    net = get_network(SMALL, channels=1, num_classes=10, height=28, width=28)
    a = protocol.test_accuracy(net, x, y, standardize_batches=True)
    assert a == protocol.test_accuracy(net, 3 * x + 5, y, standardize_batches=True)


def test_sampled_expansion_draws_one_hallucinator_per_basis():
    n, k = 6, 3
    x_all = torch.arange(n * k, dtype=torch.float32).view(n * k, 1, 1, 1)  # value = basis*K + hallucinator
    y_all = torch.arange(n).repeat_interleave(k)
    draw = sampled_expansion(x_all, y_all, k)
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros(n, k)
    for ep in range(300):
        x, y = draw(ep, g)
        flat = x.view(-1).long()
        assert torch.equal(flat // k, torch.arange(n)) and torch.equal(y, torch.arange(n))
        seen[torch.arange(n), flat % k] += 1
    assert (seen.sum(1) == 300).all() and (seen > 60).all()  # ~uniform (expected 100 each)


# ----------------------------------------------------------------------------- evaluate()
def test_evaluate_artifact_reproducible(fmnist, fashion_mnist_dir, tmp_path, short_test_set):
    spec, train, _ = fmnist
    art = haba_artifact(spec, train)
    art.extra = {"distill": {"model": SMALL}}  # the learned lr is SMALL's
    path = save_artifact(art, tmp_path / "a.safetensors")
    kw = {"models": SMALL, "runs": 2, "epochs": 2, "seed": 5, "device": "cpu", "data_dir": fashion_mnist_dir}
    r = evaluate(path, **kw)
    m = r.models[SMALL]
    # two epochs on 20 images: above chance (0.1) by > 3 sigma of a 1000-image test (~0.0095)
    assert len(m.accuracies) == 2 and all(a > 0.13 for a in m.accuracies), m.accuracies
    assert m.mean == pytest.approx(np.mean(m.accuracies)) and m.std == pytest.approx(np.std(m.accuracies))
    s = r.settings
    assert (s["lr"], s["lr_source"], s["expansion"], s["images_per_epoch"], s["num_images"]) == (
        0.02,
        "learned",
        "sampled",
        20,
        40,
    )
    assert s["test_images"] == 1000 and s["epochs_run"] == 3 and not s["zca"]
    again = evaluate(art, **kw)  # the loaded artifact and the file give the same numbers
    assert again.models[SMALL].accuracies == m.accuracies
    full = evaluate(art, **{**kw, "runs": 1}, expansion="full", lr=0.05)
    assert full.settings["images_per_epoch"] == 40 and full.settings["lr_source"] == "--lr"
    json.dumps(r.to_dict(curves=True))


def test_learned_lr_trains_only_the_network_it_was_learned_on(fmnist, fashion_mnist_dir, short_test_set, monkeypatch):
    """An MTT-style learned lr is the student lr of the distillation's own network: other networks train
    at the default 0.01 (the learned 0.028 of a Fashion-MNIST MTT set leaves VGG-11 at 18 %), --lr wins."""
    spec, train, _ = fmnist
    art = haba_artifact(spec, train, lr=0.02)
    art.extra = {"distill": {"model": SMALL}}
    lrs = []
    real_sgd = protocol._sgd
    monkeypatch.setattr(protocol, "_sgd", lambda net, lr: lrs.append(lr) or real_sgd(net, lr))
    kw = {"runs": 1, "epochs": 0, "seed": 0, "device": "cpu", "data_dir": fashion_mnist_dir}
    r = evaluate(art, models=f"{SMALL},convnetd1", **kw)
    assert lrs == [0.02, 0.01]  # what the optimisers were built with, in model order
    s = r.settings
    assert s["lr_by_model"] == {SMALL: 0.02, "convnetd1": 0.01}
    assert s["lr_source_by_model"] == {SMALL: "learned", "convnetd1": "default"}
    assert (s["lr"], s["lr_source"]) == (0.02, "learned") and any("learned on" in n for n in r.notes)
    lrs.clear()
    assert evaluate(art, models="convnetd1", lr=0.05, **kw).settings["lr_by_model"] == {"convnetd1": 0.05}
    assert lrs == [0.05]
    # no record of the distillation's network: the dataset's reference ConvNet is assumed
    art.extra = {}
    assert model_lrs(["convnet", SMALL], art, spec, None) == {"convnet": (0.02, "learned"), SMALL: (0.01, "default")}
    art.objective_config = {"model": SMALL}
    assert distilled_network(art, spec) == SMALL
    art.learned_lr = None
    assert model_lrs([SMALL], art, spec, None) == {SMALL: (0.01, "default")}


def test_zca_artifact_whitens_test_with_train_fit(fmnist, fashion_mnist_dir):
    spec, train, test = fmnist
    zca = fit_zca("fashion_mnist", data_dir=fashion_mnist_dir)
    idx = per_class(train.labels, 1)
    bases = zca.apply(train.images[idx].float() / 255)
    art = HabaArtifact.build(
        bases,
        train.labels[idx],
        HallucinatorBank(2, 1, 1, 28, 28),
        spec,
        (0.0,),
        (1.0,),
        zca,
        objective="mtt",
        objective_config={},
        ipc=1,
        seed=0,
        learned_lr=0.01,
    )
    x, y = model_space_test(spec, mean=(0.0,), std=(1.0,), zca=zca, device="cpu", data_dir=fashion_mnist_dir)
    ref = zca.apply(test.images[:50].float() / 255)
    assert torch.allclose(x[:50], ref, atol=1e-4) and torch.equal(y, test.labels.long())
    r = evaluate(art, models=SMALL, runs=1, epochs=1, device="cpu", data_dir=fashion_mnist_dir)
    assert r.settings["zca"] and r.notes == [] and r.models[SMALL].mean > 0.13, r.models[SMALL].mean  # chance 0.1


def test_random_baseline_beats_chance(fashion_mnist_dir, short_test_set):
    r = evaluate_random(
        "fashion_mnist", 10, models=SMALL, runs=1, epochs=30, seed=0, device="cpu", data_dir=fashion_mnist_dir
    )
    acc = r.models[SMALL].accuracies[0]
    assert acc > 0.5, acc  # chance is 0.1; measured 0.669 on the full test set (30 epochs, seed 0)
    assert r.settings["num_images"] == 100 and r.settings["baseline"] == "random"


def test_random_baseline_in_zca_space(fashion_mnist_dir, short_test_set):
    """--zca whitens the random images and the test set with the train-fitted ZCA (as MTT's sets are):
    the draw is the same images as without ZCA, and the networks still learn from them."""
    from habacli import api
    from habacli.distill.config import preset_zca

    kw = {"models": SMALL, "runs": 1, "epochs": 8, "seed": 0, "device": "cpu", "data_dir": fashion_mnist_dir}
    r = evaluate_random("fashion_mnist", 10, zca=True, **kw)
    assert r.settings["zca"] is True and r.models[SMALL].accuracies[0] > 0.3, r.models[SMALL].accuracies
    plain = api.evaluate_random("fashion_mnist", 10, **kw)  # the preset: no ZCA for Fashion-MNIST
    assert plain.settings["zca"] is False and plain.models[SMALL].accuracies != r.models[SMALL].accuracies
    assert preset_zca("cifar10", 1) and preset_zca("cifar10", 10) and not preset_zca("cifar10", 50)
    assert not preset_zca("fashion_mnist", 10)


def test_random_baseline_draws_are_seeded(fashion_mnist_dir, short_test_set):
    kw = {"models": SMALL, "runs": 2, "epochs": 0, "device": "cpu", "data_dir": fashion_mnist_dir}
    a = evaluate_random("fashion_mnist", 1, seed=1, **kw).models[SMALL].accuracies
    b = evaluate_random("fashion_mnist", 1, seed=1, **kw).models[SMALL].accuracies
    assert a == b and not math.isnan(a[0])
    with pytest.raises(ConfigError, match="--ipc"):
        evaluate_random("fashion_mnist", 7000, **kw)


def test_split_val_scores_on_the_held_out_train_images(fmnist, fashion_mnist_dir):
    """--split val: the networks are scored on exactly the images distill held out (same fraction and seed,
    read from the artifact), never on test; an artifact without that record is refused in one line."""
    from habacli.data.real import stratified_val_mask
    from habacli.evaluate.run import artifact_heldout

    spec, train, _ = fmnist
    art = haba_artifact(spec, train)
    art.extra = {"validation": {"val_fraction": 0.1}, "distill": {"model": SMALL}}
    art.seed = 3
    assert artifact_heldout(art) == (0.1, 3)
    x, y = model_space_test(
        spec, mean=spec.mean, std=spec.std, zca=None, device="cpu", data_dir=fashion_mnist_dir, heldout=(0.1, 3)
    )
    mask = stratified_val_mask(train.labels, 10, 0.1, 3)
    assert x.shape[0] == 6000 == int(mask.sum()) and torch.equal(y, train.labels[mask].long())
    assert torch.allclose(x, normalize(train.images[mask], spec), atol=1e-6)
    r = evaluate(art, models=SMALL, runs=1, epochs=1, device="cpu", data_dir=fashion_mnist_dir, split="val")
    assert r.settings["split"] == "val" and r.settings["test_images"] == 6000 and r.models[SMALL].mean > 0.13
    art.extra = {}
    with pytest.raises(ConfigError, match="records none"):
        evaluate(art, models=SMALL, runs=1, epochs=1, device="cpu", data_dir=fashion_mnist_dir, split="val")
    with pytest.raises(UnknownNameError, match="split"):
        evaluate(art, models=SMALL, runs=1, epochs=1, device="cpu", data_dir=fashion_mnist_dir, split="train")


def test_random_baseline_on_val_never_draws_a_held_out_image(fashion_mnist_dir, monkeypatch):
    """The random baseline under --split val draws only from the train images distill trains on."""
    import habacli.evaluate.run as ev
    from habacli.data.real import stratified_val_mask

    drawn: list[torch.Tensor] = []
    real_runs = ev.train_runs

    def spy(name, sets, *args, **kwargs):
        drawn.extend(x for x, _ in sets)
        return real_runs(name, sets, *args, **kwargs)

    monkeypatch.setattr(ev, "train_runs", spy)
    r = evaluate_random(
        "fashion_mnist", 50, models=SMALL, runs=1, epochs=0, device="cpu", data_dir=fashion_mnist_dir, split="val"
    )
    assert r.settings["split"] == "val" and r.settings["test_images"] == 6000
    train = load_split("fashion_mnist", "train", data_dir=fashion_mnist_dir)
    spec = get_spec("fashion_mnist", data_dir=fashion_mnist_dir)
    held = normalize(train.images[stratified_val_mask(train.labels, 10, 0.1, 0)], spec).flatten(1)
    x = drawn[0].flatten(1)
    assert x.shape[0] == 500
    # no drawn image equals a held-out image (pairwise distance > 0)
    assert float(torch.cdist(x, held).min()) > 1e-3


# ----------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line(fmnist, tmp_path, capsys):
    spec, train, _ = fmnist
    art = haba_artifact(spec, train, k=0, per=1, lr=None)
    fm = save_artifact(art, tmp_path / "fm.safetensors")
    c10 = get_spec("cifar10")
    g = torch.Generator().manual_seed(0)
    cifar = HabaArtifact.build(
        torch.randn(10, 3, 32, 32, generator=g),
        torch.arange(10),
        None,
        c10,
        c10.mean,
        c10.std,
        objective="dm",
        objective_config={},
        ipc=1,
        seed=0,
    )
    cf = save_artifact(cifar, tmp_path / "c10.safetensors")
    empty = tmp_path / "no-data"
    empty.mkdir()
    cases = [
        (["evaluate", str(cf), "--data-dir", str(empty), "--runs", "1", "--epochs", "1"], "cifar10 not found"),
        (["evaluate", str(fm), "--models", "convnet,resnet81"], "did you mean 'resnet18'"),
        (["evaluate", str(fm), "--runs", "0"], "--runs must be >= 1"),
        (["evaluate", str(fm), "--amp", "fp16"], "--amp"),
        (["evaluate", str(fm), "--expansion", "partial"], "unknown expansion"),
        (["evaluate", "fashion_mnist", "--baseline", "random"], "needs --ipc"),
        (["evaluate", str(fm), "--zca"], "only apply to --baseline random"),
        (["evaluate", "fashion_mnst", "--baseline", "random", "--ipc", "1"], "did you mean 'fashion_mnist'"),
        (["evaluate", str(tmp_path / "missing.safetensors")], "no such file"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
        assert "Traceback" not in err and out == ""


def test_cli_json_and_curve(fmnist, fashion_mnist_dir, tmp_path, capsys, short_test_set):
    spec, train, _ = fmnist
    path = save_artifact(haba_artifact(spec, train, per=1), tmp_path / "a.safetensors")
    curve = tmp_path / "curve.png"
    code, out, err = run_cli(
        [
            "evaluate",
            str(path),
            "--models",
            SMALL,
            "--runs",
            "2",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--data-dir",
            str(fashion_mnist_dir),
            "--json",
            "--curve",
            str(curve),
            "--test-every",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)
    m = doc["models"][SMALL]
    assert len(m["accuracies"]) == 2 and 0 <= m["mean"] <= 1 and doc["settings"]["std"].startswith("population")
    from PIL import Image

    assert Image.open(curve).size[0] > 500


@pytest.mark.slow
def test_compiled_training_matches_eager_closely(fmnist):
    """--compile trains the same network: same init, same data order, losses equal up to fp32
    reassociation (inductor fuses the norm/ReLU/pool kernels)."""
    spec, train, test = fmnist
    idx = per_class(train.labels, 3)
    xtr, ytr = normalize(train.images[idx], spec), train.labels[idx].long()
    xte, yte = normalize(test.images[:300], spec), test.labels[:300].long()
    kw = {"spec": spec, "epochs": 3, "lr": 0.01, "seed": 5, "device": "cpu"}
    eager = train_and_test(SMALL, (xtr, ytr), (xte, yte), **kw)
    compiled = train_and_test(SMALL, (xtr, ytr), (xte, yte), compile=True, **kw)
    assert compiled.train_loss_curve == pytest.approx(eager.train_loss_curve, rel=1e-3)
    assert abs(compiled.accuracy - eager.accuracy) <= 0.02


def test_bf16_test_pass_agrees_with_fp32(fmnist):
    """--amp bf16 also autocasts the test pass (NCHW on the CPU): on 2,000 real test images a trained
    network scores within a point of its fp32 pass, and bf16 training end to end still learns."""
    import torch.nn.functional as F

    from habacli.networks import get_network

    spec, train, test = fmnist
    idx = per_class(train.labels, 20)
    xtr, ytr = normalize(train.images[idx], spec), train.labels[idx].long()
    xte, yte = normalize(test.images[:2000], spec), test.labels[:2000].long()
    net = get_network(SMALL, generator=torch.Generator().manual_seed(0), **protocol.spec_shape(spec))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(30):
        loss = F.cross_entropy(net(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fp32 = protocol.test_accuracy(net, xte, yte)
    assert fp32 > 0.5
    assert abs(protocol.test_accuracy(net, xte, yte, amp="bf16") - fp32) <= 0.01
    # NHWC batches (the CUDA layout; haba's own instance norm on the CPU) score the same
    assert abs(protocol.test_accuracy(net, xte, yte, channels_last=True) - fp32) <= 0.001
    assert abs(protocol.test_accuracy(net, xte, yte, channels_last=True, amp="bf16") - fp32) <= 0.01
    res = train_and_test(SMALL, (xtr, ytr), (xte, yte), spec=spec, epochs=10, lr=0.01, seed=0, device="cpu", amp="bf16")
    assert res.accuracy > 0.5


def test_test_pass_is_nchw_on_the_cpu_and_nhwc_on_cuda():
    for amp in (None, "bf16"):
        assert not protocol.nhwc_test_pass(torch.device("cpu"), amp)
        assert protocol.nhwc_test_pass(torch.device("cuda"), amp)
