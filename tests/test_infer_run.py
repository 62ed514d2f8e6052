"""A short INFER run on the real Fashion-MNIST: teachers, UFCs, soft labels, student training."""

from __future__ import annotations

import os

import pytest
import torch

from habacli.errors import ConfigError
from habacli.infer import (
    InferRecipe,
    InferSet,
    TeacherError,
    UFCConfig,
    distill_infer,
    load_teacher,
    load_teachers,
    train_student,
    train_teachers,
    train_ufc,
)
from habacli.infer.budget import infer_budget
from habacli.infer.teachers import teacher_path
from habacli.infer.ufc import BNStatistics, ufc_objective

ARCHS = ("convbn_w32_d2", "convbn_w64_d2_lrelu")
SHAPE = (1, 10, 28, 28)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine's 2 cores are shared: one intra-op thread is ~4x faster than two there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teachers_dir(one_thread, tmp_path_factory, fashion_mnist_dir):
    d = tmp_path_factory.mktemp("teachers")
    calls = []
    recs = train_teachers(
        "fashion_mnist",
        d,
        archs=ARCHS,
        epochs=1,
        train_limit=3000,
        batch_size=64,
        seed=0,
        progress=lambda ev: calls.append((ev.kind, ev.description, ev.done, ev.total)),
    )
    assert [r.trained_now for r in recs] == [True, True]
    epochs = [c for c in calls if c[0] == "epoch"]
    assert [c[1:] for c in epochs] == [(f"teacher {a}", 1, 1) for a in ARCHS] and calls[-1][0] == "done"
    return d


@pytest.fixture(scope="module")
def infer_set(teachers_dir):
    return distill_infer("fashion_mnist", 10, teachers_dir=teachers_dir, iterations=20, seed=3)


def test_teachers_learn_and_are_stored_with_metadata(teachers_dir):
    for arch in ARCHS:
        path = teacher_path(teachers_dir, "fashion_mnist", arch)
        model, meta = load_teacher(path, dataset="fashion_mnist", arch=arch, shape=SHAPE)
        assert meta["arch"] == arch and meta["epochs"] == 1 and meta["train_images"] == 3000
        assert 0.4 < meta["test_accuracy"] <= 1.0  # 1 epoch on 3000 images: far above chance (0.1)
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert bn and not torch.equal(bn[0].running_var, torch.ones_like(bn[0].running_var))  # stats stored
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not [p for p in os.listdir(teachers_dir / "fashion_mnist") if p.endswith(".tmp")]


def test_teachers_resume_skips_finished_and_rejects_other_settings(teachers_dir):
    path = teacher_path(teachers_dir, "fashion_mnist", ARCHS[0])
    before = path.stat().st_mtime_ns
    recs = train_teachers("fashion_mnist", teachers_dir, archs=ARCHS, epochs=1, train_limit=3000, batch_size=64, seed=0)
    assert [r.trained_now for r in recs] == [False, False] and path.stat().st_mtime_ns == before
    with pytest.raises(TeacherError, match="epochs=1"):
        train_teachers("fashion_mnist", teachers_dir, archs=ARCHS, epochs=2, train_limit=3000, batch_size=64, seed=0)


def test_teacher_loading_errors_are_one_line(teachers_dir, tmp_path):
    path = teacher_path(teachers_dir, "fashion_mnist", ARCHS[0])
    cases = [{"dataset": "mnist"}, {"arch": "convbn_w64_d3"}, {"shape": (3, 10, 32, 32)}]
    for kw in cases:
        with pytest.raises(TeacherError) as e:
            load_teacher(path, **kw)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TeacherError, match="not a haba teacher file"):
        load_teacher(bad)
    with pytest.raises(TeacherError, match="no teachers"):
        load_teachers(tmp_path, "fashion_mnist")


def test_distill_shapes_pairing_and_storage(infer_set, teachers_dir):
    s = infer_set
    b = infer_budget(10, 10, 2)
    assert b.subsets == 8 and s.subsets == 8 and s.num_teachers == 2
    assert s.natural.shape == (8, 10, 1, 28, 28) and s.ufc.shape == (8, 2, 1, 28, 28)
    assert s.soft_labels.shape == (b.instances, 10) == (240, 10)
    assert s.temperature == 30.0 and s.teachers == list(ARCHS)
    x, y = s.instances()
    assert x.shape == (240, 1, 28, 28) and y.tolist() == [p.c for p in s.pairing]
    lo, hi = s.valid_range()
    assert float(x.min()) >= float(lo.min()) - 1e-6 and float(x.max()) <= float(hi.max()) + 1e-6
    # natural images are real training images in model space: 8 distinct images per class
    assert len({tuple(s.natural[k, 0].flatten()[:50].tolist()) for k in range(8)}) == 8
    assert torch.count_nonzero(s.ufc) > 0
    # the soft labels are the ensemble's averaged logits on the clipped instances
    models, _ = load_teachers(teachers_dir, "fashion_mnist", archs=ARCHS)
    with torch.no_grad():
        want = (models[0](x) + models[1](x)) / 2
    assert torch.allclose(s.soft_labels, want, atol=1e-5)
    st = s.storage()
    assert st["compensators"] == 16 * 784 and st["soft_labels"] == 2400 and st["total"] == 96 * 784 + 2400


def test_distill_is_deterministic_for_a_seed(infer_set, teachers_dir):
    again = distill_infer("fashion_mnist", 10, teachers_dir=teachers_dir, iterations=20, seed=3)
    assert torch.equal(again.natural, infer_set.natural) and torch.equal(again.ufc, infer_set.ufc)
    assert torch.equal(again.soft_labels, infer_set.soft_labels)
    other = distill_infer("fashion_mnist", 10, teachers_dir=teachers_dir, teachers=ARCHS[:1], iterations=1, seed=4)
    assert not torch.equal(other.natural[:1], infer_set.natural[:1])


def test_resume_per_ufc_reproduces_the_uninterrupted_run(infer_set, teachers_dir):
    finished = {}
    distill_infer(
        "fashion_mnist",
        10,
        teachers_dir=teachers_dir,
        iterations=20,
        seed=3,
        on_ufc=lambda k, m, u, info: finished.__setitem__((k, m), u.clone()),
    )
    assert len(finished) == 16
    keep = {key: v for key, v in finished.items() if key[0] < 3}  # "killed" after subset 2
    seen = []
    resumed = distill_infer(
        "fashion_mnist",
        10,
        teachers_dir=teachers_dir,
        iterations=20,
        seed=3,
        done=keep,
        on_ufc=lambda k, m, u, info: seen.append((k, m)),
        progress=lambda ev: None,
    )
    assert seen == [(k, m) for k in range(3, 8) for m in range(2)]
    assert torch.equal(resumed.ufc, infer_set.ufc)


def test_ufc_training_lowers_the_teacher_objective(infer_set, teachers_dir):
    models, _ = load_teachers(teachers_dir, "fashion_mnist", archs=ARCHS)
    lo, hi = infer_set.valid_range()
    natural = infer_set.natural[0]
    y = torch.arange(10)
    cfg = UFCConfig(iterations=60)
    u, info = train_ufc(models[0], natural, config=cfg, lo=lo, hi=hi, seed=1)
    assert info["loss_after"] < 0.9 * info["loss_before"]
    with BNStatistics(models[0]) as stats, torch.no_grad():
        before, _, _ = ufc_objective(models[0], stats, natural.clamp(lo, hi), y, r_bn=1.0)
        after, _, _ = ufc_objective(models[0], stats, (natural + u).clamp(lo, hi), y, r_bn=1.0)
    assert float(after) == pytest.approx(info["loss_after"], rel=1e-5) and float(after) < float(before)
    # the distilled set's own UFCs (20 iterations) also lower the objective, for every subset and teacher
    for key, rec in infer_set.info["ufc"].items():
        assert rec["loss_after"] < rec["loss_before"], key


def test_bad_shapes_are_one_line_errors(infer_set):
    s = infer_set
    with pytest.raises(ConfigError, match=r"compensators must be \[K=8, M, 1, 28, 28\]") as e:
        InferSet(s.natural, s.ufc[:, :, :, :27], s.soft_labels, 30.0, s.mean, s.std)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="soft labels must be 10 wide") as e:
        InferSet(s.natural, s.ufc, s.soft_labels[:, :9], 30.0, s.mean, s.std)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="one row per instance"):
        InferSet(s.natural, s.ufc, s.soft_labels[:-1], 30.0, s.mean, s.std)
    with pytest.raises(ConfigError, match="NaN"):
        InferSet(s.natural, s.ufc * float("nan"), s.soft_labels, 30.0, s.mean, s.std)
    with pytest.raises(ConfigError, match="temperature"):
        InferSet(s.natural, s.ufc, s.soft_labels, 0.0, s.mean, s.std)


def test_student_training_under_the_infer_recipe(infer_set):
    from habacli.data import RealData, load_split

    xt, yt = RealData.build(load_split("fashion_mnist", "test")).all_model()
    xt, yt = xt[:2000], yt[:2000]
    x, y = infer_set.instances()
    recipe = InferRecipe(epochs=4)
    r1 = train_student(
        x,
        y,
        infer_set.soft_labels,
        test=(xt, yt),
        mean=infer_set.mean,
        std=infer_set.std,
        recipe=recipe,
        generator=torch.Generator().manual_seed(0),
    )
    assert r1.accuracy > 0.35 and len(r1.losses) == 4  # 10 classes: chance is 0.1
    r2 = train_student(
        x,
        y,
        infer_set.soft_labels,
        test=(xt, yt),
        mean=infer_set.mean,
        std=infer_set.std,
        recipe=recipe,
        generator=torch.Generator().manual_seed(0),
    )
    assert r2.accuracy == r1.accuracy and r2.losses == r1.losses
    ablation = infer_set.without_ufc()
    xa, _ = ablation.instances()
    assert xa.shape[0] == 80 and torch.equal(ablation.soft_labels, infer_set.soft_labels[:80])
    with pytest.raises(ConfigError, match="soft labels must be"):
        train_student(
            x,
            y,
            infer_set.soft_labels[:80],
            test=(xt, yt),
            mean=infer_set.mean,
            std=infer_set.std,
            recipe=recipe,
            generator=torch.Generator().manual_seed(0),
        )


def test_set_and_ufc_state_round_trip_exactly(infer_set, teachers_dir, tmp_path):
    from habacli.infer.store import (
        load_infer_set,
        load_ufc_state,
        save_infer_set,
        save_ufc_state,
    )

    save_infer_set(tmp_path / "set.safetensors", infer_set)
    back = load_infer_set(tmp_path / "set.safetensors")
    assert torch.equal(back.natural, infer_set.natural) and torch.equal(back.ufc, infer_set.ufc)
    assert torch.equal(back.soft_labels, infer_set.soft_labels) and back.temperature == 30.0
    assert back.teachers == infer_set.teachers and back.storage() == infer_set.storage()
    from habacli.infer._io import read_meta, save_tensors_atomic

    meta = read_meta(tmp_path / "set.safetensors")
    save_tensors_atomic(
        tmp_path / "bad.safetensors",
        {"natural": infer_set.natural, "ufc": infer_set.ufc, "soft_labels": infer_set.soft_labels[:, :9]},
        meta,
    )
    with pytest.raises(ConfigError, match="bad.safetensors: soft labels must be 10 wide") as e:
        load_infer_set(tmp_path / "bad.safetensors")
    assert "\n" not in str(e.value)
    run = {"dataset": "fashion_mnist", "ipc": 10, "seed": 3, "iterations": 20}
    done = {(k, m): infer_set.ufc[k, m : m + 1] for k in range(2) for m in range(2)}
    save_ufc_state(tmp_path / "state.safetensors", done, run)
    got = load_ufc_state(tmp_path / "state.safetensors", expect=run)
    assert got.keys() == done.keys() and all(torch.equal(got[key], done[key]) for key in done)
    with pytest.raises(ConfigError, match="seed=3"):
        load_ufc_state(tmp_path / "state.safetensors", expect={**run, "seed": 4})
    resumed = distill_infer("fashion_mnist", 10, teachers_dir=teachers_dir, iterations=20, seed=3, done=got)
    assert torch.equal(resumed.ufc, infer_set.ufc)
