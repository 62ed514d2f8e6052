"""INFER budget: K = int(IPC / (M/C + 1)), the instance pairing and the storage counts."""

from __future__ import annotations

import pytest

from habacli.errors import ConfigError
from habacli.infer.budget import InferBudgetError, infer_budget, subsets_for


@pytest.mark.parametrize(
    "ipc, classes, teachers, k, stored, per_class",
    [
        (10, 10, 4, 7, 98, 35),  # CIFAR-10 IPC10 (ecosystem.md §1.3)
        (50, 10, 4, 35, 490, 175),
        (10, 100, 4, 9, 936, 45),
        (50, 100, 4, 48, 4992, 240),
        (100, 100, 4, 96, 9984, 480),
        (10, 1000, 3, 9, 9027, 36),  # ImageNet-1k, M = 3
        (50, 1000, 3, 49, 49147, 196),
    ],
)
def test_worked_numbers(ipc, classes, teachers, k, stored, per_class):
    b = infer_budget(ipc, classes, teachers)
    assert b.subsets == k
    assert b.stored_images == stored <= ipc * classes
    assert b.instances_per_class == per_class
    assert b.instances == per_class * classes


def test_exact_form_matches_official_float_formula_or_fits_one_more_subset():
    for classes in (10, 100, 1000):
        for teachers in range(1, 9):
            for ipc in range(2, 201):
                official = int(ipc / (teachers / classes + 1))
                if official == 0:
                    continue
                k = subsets_for(ipc, classes, teachers)
                assert k * (classes + teachers) <= ipc * classes  # always within budget
                if k != official:  # the float formula rounds 29.999... down: ours fits the budget exactly
                    assert k == official + 1 and k * (classes + teachers) == ipc * classes
    assert subsets_for(33, 10, 1) == 30 and int(33 / (1 / 10 + 1)) == 29


def test_k_zero_is_a_typed_one_line_error():
    with pytest.raises(InferBudgetError) as e:
        infer_budget(1, 10, 4)
    msg = str(e.value)
    assert isinstance(e.value, ConfigError) and "\n" not in msg
    assert "IPC 1" in msg and "K = int(1 / (4/10 + 1)) = 0" in msg and "IPC >= 2" in msg
    assert infer_budget(2, 10, 4).subsets == 1


@pytest.mark.parametrize("args", [(0, 10, 4), (10, 0, 4), (10, 10, 0), (2.5, 10, 4), (True, 10, 4)])
def test_bad_numbers(args):
    with pytest.raises(ConfigError):
        infer_budget(*args)


def test_pairing_natural_first_then_k_m_c():
    b = infer_budget(10, 10, 4)  # K = 7
    pairs = b.pairs()
    assert len(pairs) == 350
    assert [p.natural for p in pairs[:70]] == [True] * 70 and not any(p.natural for p in pairs[70:])
    assert (pairs[13].k, pairs[13].c) == (1, 3)
    p = b.pair(70 + (2 * 4 + 3) * 10 + 5)
    assert (p.k, p.m, p.c) == (2, 3, 5)
    for p in pairs:
        assert b.index(p.k, p.c, p.m) == p.index
    # every class appears K*(M+1) times; every (k, m) pairs with each class exactly once
    assert all(sum(p.c == c for p in pairs) == 35 for c in range(10))
    assert len({(p.k, p.m, p.c) for p in pairs if not p.natural}) == 7 * 4 * 10
    with pytest.raises(ConfigError):
        b.pair(350)
    with pytest.raises(ConfigError):
        b.index(7, 0, None)


def test_storage_counts_soft_labels_and_compensators():
    s = infer_budget(10, 10, 4).storage(1, 28, 28)
    assert s["natural"] == 70 * 784 and s["compensators"] == 28 * 784 and s["soft_labels"] == 350 * 10
    assert s["total"] == 98 * 784 + 3500 and s["baseline"] == 100 * 784
    assert s["ratio"] == pytest.approx(s["total"] / s["baseline"])
    assert infer_budget(10, 10, 4).storage(1, 28, 28, soft_labels=False)["total"] == 98 * 784
