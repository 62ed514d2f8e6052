"""MTT trajectory matching: exact constant-memory gradient, the objective end to end, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from habacli.errors import ExpertsError

FMNIST = "fashion_mnist"


@pytest.fixture(scope="module")
def experts(session_dir: Path, fashion_mnist_dir: Path) -> Path:
    """2 experts x 2 epochs on 256 Fashion-MNIST images (the same buffer as test_experts.py's)."""
    from habacli.experts import train_experts

    out = session_dir / "experts-fmnist-2x2"
    train_experts(FMNIST, num=2, epochs=2, out=out, subset=256, seed=0, device="cpu", data_dir=fashion_mnist_dir)
    return out


@pytest.fixture(scope="module")
def one_expert(experts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A buffer holding only expert 0 (fixed trajectory for the loss-decrease test)."""
    from habacli.experts import rebuild_manifest

    out = tmp_path_factory.mktemp("one-expert")
    shutil.copy(experts / "expert_00000.safetensors", out)
    rebuild_manifest(out)
    return out


def _real_bases(fashion_mnist_dir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from habacli.data import RealData, load_split

    real = RealData.build(load_split(FMNIST, "train", data_dir=fashion_mnist_dir), device="cpu")
    g = torch.Generator().manual_seed(0)
    bases, labels = real.init_bases(n, g)
    return bases.double(), labels


def test_constant_memory_gradient_equals_unrolled(fashion_mnist_dir: Path) -> None:
    """Exact TESLA-style gradient == full unroll for bases, hallucinator params and alpha (float64),
    with the real ConvNet, a real hallucinator bank, real per-sample DSA and Fashion-MNIST bases."""
    from habacli.data import get_spec
    from habacli.experts.layout import ParamLayout
    from habacli.networks import get_network
    from habacli.networks.hallucinator import HallucinatorBank, apply_one
    from habacli.objectives.mtt import surrogate_loss
    from habacli.objectives.tesla import (
        StudentStep,
        constant_memory_match,
        unrolled_match,
    )
    from habacli.transforms.augment import dsa_for

    spec = get_spec(FMNIST)
    g = torch.Generator().manual_seed(3)
    net = get_network("convnet", channels=1, num_classes=10, height=28, width=28, generator=g).double()
    for p in net.parameters():
        p.requires_grad_(False)
    layout = ParamLayout.of(net)
    theta0 = layout.flatten(net).double()
    theta_star = theta0 + 0.01 * torch.randn(layout.size, generator=g, dtype=torch.float64)
    bases_init, labels = _real_bases(fashion_mnist_dir, 1)  # 10 bases, one per class
    bases = bases_init.clone().requires_grad_(True)
    bank = HallucinatorBank(2, 1, 1, 28, 28, generator=g).double()
    hal = {k: v.detach().clone().requires_grad_(True) for k, v in bank.params().items()}
    alpha = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    dsa = dsa_for(spec)

    def images(idx: torch.Tensor | None, k: int) -> torch.Tensor:
        return apply_one(bases if idx is None else bases[idx], hal, k)

    plan = []
    for i in range(3):
        idx = torch.randperm(10, generator=g)[:4]
        k = i % 2
        state = g.get_state()
        dsa(torch.zeros(4, 1, 28, 28, dtype=torch.float64), g)

        def augment(x: torch.Tensor, state: torch.Tensor = state) -> torch.Tensor:
            r = torch.Generator()
            r.set_state(state)
            return dsa(x, r)

        plan.append((StudentStep(lambda idx=idx, k=k: images(idx, k), augment, labels[idx]), idx, k))
    steps = [s for s, _, _ in plan]
    leaves = [bases, alpha, *hal.values()]
    loss = unrolled_match(net, layout, theta0, theta_star, alpha, steps)
    want = torch.autograd.grad(loss, leaves)
    m = constant_memory_match(net, layout, theta0, theta_star, alpha, steps)
    sur = surrogate_loss(m.loss, [(idx, k, gi) for (_, idx, k), gi in zip(plan, m.images)], alpha, m.alpha, images, 10)
    got = torch.autograd.grad(sur, leaves)
    assert float(sur.detach()) == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, a, b in zip(["bases", "alpha", *hal], want, got):
        assert float(a.abs().max()) > 0, name
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-10 * float(a.abs().max()), msg=name)


def _distill(tmp: Path, data_dir: Path, experts: Path, **options):
    from habacli.distill.run import distill

    opts = {
        "experts": str(experts),
        "syn_steps": 2,
        "max_start_epoch": 1,
        "expert_epochs": 1,
        "eval_every": 0,
        "lr_img": 100.0,
        "lr_lr": 1e-5,
        "lr_teacher": 0.01,
        "checkpoint_every": 0,
    }
    opts.update(options)
    events = []
    result = distill(
        FMNIST,
        ipc=1,
        baseline="mtt",
        out=tmp / "mtt.haba.safetensors",
        iterations=opts.pop("iterations", 5),
        seed=0,
        device="cpu",
        data_dir=data_dir,
        options=opts,
        progress=events.append,
    )
    return result, [e.stats for e in events if e.kind == "iteration"]


def test_mtt_end_to_end_loss_decreases_and_saves_alpha(
    tmp_path: Path, fashion_mnist_dir: Path, one_expert: Path
) -> None:
    """5 HaBa+MTT iterations on one fixed expert and start epoch: L_MTT falls, alpha moves and is saved."""
    from habacli.artifact.codec import load_artifact

    result, stats = _distill(tmp_path, fashion_mnist_dir, one_expert, iterations=5, lr_lr=1e-6)
    losses = [s["loss_mtt"] for s in stats]
    assert len(losses) == 5 and all(s["start_epoch"] == 0 for s in stats)
    assert losses[-1] < losses[0], losses
    alpha = stats[-1]["syn_lr"]
    assert alpha != pytest.approx(0.01, rel=1e-6) and alpha >= 1e-3
    art = load_artifact(result.artifact_path)
    assert art.objective == "mtt"
    assert art.learned_lr == pytest.approx(alpha, rel=1e-6)
    assert art.num_hallucinators == 5


def test_bf16_student_steps_track_the_fp32_meta_gradient(fashion_mnist_dir: Path, experts: Path) -> None:
    """--amp bf16 runs the student steps under autocast: on a real expert segment and real bases the
    meta-gradient keeps its direction (cosine > 0.99) and the loss moves by well under 1 %."""
    from habacli.experts import open_buffer
    from habacli.experts.layout import ParamLayout
    from habacli.networks import get_network
    from habacli.objectives.tesla import StudentStep, unrolled_match

    net = get_network(
        "convnet", channels=1, num_classes=10, height=28, width=28, generator=torch.Generator().manual_seed(0)
    )
    for p in net.parameters():
        p.requires_grad_(False)
    layout = ParamLayout.of(net)
    buffer = open_buffer(experts, dataset=FMNIST, model="convnet", zca=False, min_epochs=2, layout=layout)
    theta0, theta_star = buffer.rows(0, [0, 2], device="cpu")
    bases, labels = _real_bases(fashion_mnist_dir, 2)
    results = {}
    for mode in ("fp32", "bf16"):
        x = bases.float().clone().requires_grad_(True)
        alpha = torch.tensor(0.01, requires_grad=True)
        autocast = lambda mode=mode: torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16")
        steps = [StudentStep(lambda: x, lambda t: t, labels) for _ in range(4)]  # noqa: B023 - used at once
        loss = unrolled_match(net, layout, theta0, theta_star, alpha, steps, autocast)
        results[mode] = (float(loss.detach()), *torch.autograd.grad(loss, (x, alpha)))
    (l32, g32, a32), (l16, g16, a16) = results["fp32"], results["bf16"]
    assert not torch.equal(g32, g16)  # bf16 really ran
    assert l16 == pytest.approx(l32, rel=5e-3)
    assert float(torch.nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim=0)) > 0.99
    assert float(a16) == pytest.approx(float(a32), rel=2e-2)


def test_amp_bf16_reaches_mtt_student_steps(tmp_path: Path, fashion_mnist_dir: Path, one_expert: Path) -> None:
    """`--amp bf16` changes MTT's loss slightly: the student steps ran in bf16."""
    (tmp_path / "fp32").mkdir()
    (tmp_path / "bf16").mkdir()
    _, fp32 = _distill(tmp_path / "fp32", fashion_mnist_dir, one_expert, iterations=1)
    _, bf16 = _distill(tmp_path / "bf16", fashion_mnist_dir, one_expert, iterations=1, amp="bf16")
    a, b = fp32[0]["loss_mtt"], bf16[0]["loss_mtt"]
    assert a != b and b == pytest.approx(a, rel=1e-2)


def test_compile_fuses_the_instance_norm_double_backward_with_the_same_path(
    tmp_path: Path, fashion_mnist_dir: Path, one_expert: Path
) -> None:
    """`--compile` runs MTT's instance-norm double backward as one compiled kernel: the seeded run
    follows the eager path (float32 rounding only), and the kernel was built without a fallback."""
    import warnings

    from habacli.networks import instancenorm

    (tmp_path / "eager").mkdir()
    (tmp_path / "fused").mkdir()
    _, eager = _distill(tmp_path / "eager", fashion_mnist_dir, one_expert, iterations=2)
    assert instancenorm._fused_state["enabled"] is False  # the context does not leak
    instancenorm._fused_state["kernel"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, fused = _distill(tmp_path / "fused", fashion_mnist_dir, one_expert, iterations=2, compile=True)
    assert not [w for w in caught if "fused instance-norm" in str(w.message)]  # no fallback
    assert instancenorm._fused_state["kernel"] not in (None, False)  # built and kept
    for a, b in zip(eager, fused):
        assert b["loss_mtt"] == pytest.approx(a["loss_mtt"], rel=1e-4)
        assert b["syn_lr"] == pytest.approx(a["syn_lr"], rel=1e-4)


@pytest.mark.slow  # two more distill runs; the float64 test above is the exact check
def test_constant_memory_mode_matches_unrolled_run(tmp_path: Path, fashion_mnist_dir: Path, experts: Path) -> None:
    """The same seeded run in both memory modes follows the same path (float32 rounding only)."""
    _, a = _distill(tmp_path / "u", fashion_mnist_dir, experts, iterations=2, memory="unrolled")
    _, b = _distill(tmp_path / "c", fashion_mnist_dir, experts, iterations=2, memory="constant")
    for sa, sb in zip(a, b):
        assert sb["start_epoch"] == sa["start_epoch"]
        assert sb["loss_mtt"] == pytest.approx(sa["loss_mtt"], rel=1e-3)
        assert sb["syn_lr"] == pytest.approx(sa["syn_lr"], rel=1e-3)


def test_experts_of_exactly_the_needed_length(tmp_path: Path, fashion_mnist_dir: Path, experts: Path) -> None:
    """start is drawn from 0..max_start_epoch-1, so 2-epoch experts serve max_start_epoch 2 + expert_epochs 1
    (rows 0..2), and every start the run draws is one it can read."""
    result, stats = _distill(tmp_path, fashion_mnist_dir, experts, iterations=6, max_start_epoch=2, expert_epochs=1)
    starts = {int(s["start_epoch"]) for s in stats}
    assert starts <= {0, 1} and len(starts) == 2
    with pytest.raises(ExpertsError, match="trajectories have 2 epochs but this run needs 3"):
        _distill(tmp_path / "more", fashion_mnist_dir, experts, iterations=1, max_start_epoch=3, expert_epochs=1)


def test_missing_and_mismatched_experts(tmp_path: Path, fashion_mnist_dir: Path, experts: Path) -> None:
    from habacli.experts import open_buffer
    from habacli.experts.layout import ParamLayout
    from habacli.networks import get_network

    with pytest.raises(ExpertsError, match="haba experts fashion_mnist --model convnet --num 100 --epochs 1 --no-zca"):
        _distill(tmp_path, fashion_mnist_dir, tmp_path / "nothing-here", iterations=1)
    with pytest.raises(ExpertsError, match="needs 4"):
        _distill(tmp_path, fashion_mnist_dir, experts, iterations=1, max_start_epoch=3, expert_epochs=2)
    with pytest.raises(ExpertsError, match="dataset 'fashion_mnist', not 'mnist'"):
        open_buffer(experts, dataset="mnist", model="convnet", zca=False, min_epochs=1)
    with pytest.raises(ExpertsError, match="ZCA"):
        open_buffer(experts, dataset=FMNIST, model="convnet", zca=True, min_epochs=1)
    wide = ParamLayout.of(get_network("convnetw64", channels=1, num_classes=10, height=28, width=28))
    with pytest.raises(ExpertsError, match="parameters but the student network has"):
        open_buffer(experts, dataset=FMNIST, model="convnet", zca=False, min_epochs=1, layout=wide)


def test_corrupted_shard_is_a_one_line_cli_error(tmp_path: Path, fashion_mnist_dir: Path, experts: Path) -> None:
    """A flipped byte in an expert's payload: the checksum catches it, the CLI prints one line, exit 2."""
    bad = tmp_path / "bad"
    shutil.copytree(experts, bad)
    f = bad / "expert_00000.safetensors"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    from habacli.experts import open_buffer

    buf = open_buffer(bad, dataset=FMNIST, model="convnet", zca=False, min_epochs=2)
    with pytest.raises(ExpertsError, match="checksum mismatch"):
        buf.rows(0, [0, 1])
    cfg = tmp_path / "mtt.toml"
    cfg.write_text(
        f'experts = "{bad}"\nsyn_steps = 1\nmax_start_epoch = 1\nexpert_epochs = 1\n'
        "eval_every = 0\ncheckpoint_every = 0\n"
    )
    # two experts, one corrupted: the first two iterations visit both
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "habacli",
            "distill",
            FMNIST,
            "--ipc",
            "1",
            "--baseline",
            "mtt",
            "--iterations",
            "2",
            "--config",
            str(cfg),
            "--device",
            "cpu",
            "--data-dir",
            str(fashion_mnist_dir),
            "--out",
            str(tmp_path / "o.safetensors"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow  # three distill runs
def test_resume_is_exact(tmp_path: Path, fashion_mnist_dir: Path, experts: Path) -> None:
    """2 iterations == 1 iteration + resume + 1 (expert cursor, alpha and its momentum restored)."""
    from habacli.artifact.codec import load_artifact
    from habacli.distill.run import distill

    opts = {
        "experts": str(experts),
        "syn_steps": 2,
        "max_start_epoch": 1,
        "expert_epochs": 1,
        "eval_every": 0,
        "lr_img": 100.0,
        "lr_lr": 1e-5,
        "lr_teacher": 0.01,
        "checkpoint_every": 1,
    }

    def run(out: Path, iterations: int, resume: bool = False):
        return distill(
            FMNIST,
            ipc=1,
            baseline="mtt",
            out=out,
            iterations=iterations,
            seed=0,
            device="cpu",
            data_dir=fashion_mnist_dir,
            options=dict(opts),
            resume=resume,
        )

    full = load_artifact(run(tmp_path / "full.safetensors", 2).artifact_path)
    run(tmp_path / "split.safetensors", 1)
    split = load_artifact(run(tmp_path / "split.safetensors", 2, resume=True).artifact_path)
    assert torch.equal(full.bases, split.bases)
    assert full.learned_lr == split.learned_lr
    for k, v in full.hallucinators.items():
        assert torch.equal(v, split.hallucinators[k]), k


@pytest.mark.parametrize("free_gib, expected", [(None, "unrolled"), (64.0, "unrolled"), (0.001, "constant")])
def test_memory_auto_falls_back_to_constant_when_the_graph_would_not_fit(
    tmp_path: Path, fashion_mnist_dir: Path, experts: Path, monkeypatch, free_gib, expected
) -> None:
    """--mtt-memory auto (the default) measures the unrolled graph's bytes per image and step on the run's own
    network and images, keeps the unrolled graph where it fits and takes the constant-memory path, with a
    one-line warning, where it would not (an unrolled HaBa+MTT at matched IPC 10 was OOM-killed at 24 GB)."""
    import warnings

    from habacli.objectives import mtt as mtt_module
    from habacli.objectives.tesla import StudentStep, unrolled_bytes_per_image_step

    free = None if free_gib is None else int(free_gib * 2**30)
    monkeypatch.setattr(mtt_module, "available_memory", lambda device: free)
    chosen = []
    real_choose = mtt_module.MTT._choose_memory
    monkeypatch.setattr(
        mtt_module.MTT, "_choose_memory", lambda self, *a: chosen.append(real_choose(self, *a)) or chosen[-1]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _distill(tmp_path, fashion_mnist_dir, experts, iterations=2)
    assert chosen == [expected]  # decided once, at the first iteration
    from habacli.artifact import load_artifact

    art = load_artifact(tmp_path / "mtt.haba.safetensors")
    assert art.extra["distill"]["mtt_memory"] == expected  # the artifact says which path ran, not "auto"
    said = [str(w.message) for w in caught if "unrolled graph would hold" in str(w.message)]
    assert len(said) == (expected == "constant") and all("--mtt-memory constant" in m for m in said)

    # the measurement itself: twice the images, twice the saved bytes per step; a ConvNet-3 step on a 28 x 28
    # image keeps megabytes (2.8 MiB measured), not bytes or gigabytes
    from habacli.experts.layout import ParamLayout
    from habacli.networks import get_network

    x, y = _real_bases(fashion_mnist_dir, 1)
    x = x.float()
    net = get_network("convnet", channels=1, num_classes=10, height=28, width=28)
    layout = ParamLayout.of(net)
    theta0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    alpha = torch.tensor(0.01)
    per = unrolled_bytes_per_image_step(
        net, layout, theta0, alpha, lambda n: StudentStep(images=lambda: x[:n], augment=lambda t: t, labels=y[:n])
    )
    assert 0.5 * 2**20 < per < 20 * 2**20, per
