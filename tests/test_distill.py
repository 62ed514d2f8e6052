"""`haba distill` end to end on real Fashion-MNIST (tiny settings), configuration and CLI errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from habacli.artifact.codec import load_artifact
from habacli.cli import main
from habacli.distill.config import build_config, load_preset, resolve_preset
from habacli.distill.run import distill
from habacli.errors import ConfigError, UnknownNameError
from habacli.networks import get_network
from habacli.objectives import get_objective

TINY = {"batch_real": 16, "checkpoint_every": 0, "eval_every": 0, "device": "cpu", "val_fraction": 0.05}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def test_dm_factorised_writes_a_valid_artifact(tmp_path, fashion_mnist_dir):
    out = tmp_path / "fm.safetensors"
    res = distill(
        "fashion_mnist",
        ipc=2,
        baseline="dm",
        out=out,
        hallucinators=3,
        iterations=2,
        seed=1,
        data_dir=fashion_mnist_dir,
        preset="quick",
        options={**TINY, "eval_every": 2, "eval_epochs": 2, "eval_runs": 1, "base_scale": 1},
    )
    art = load_artifact(out)
    assert art.num_hallucinators == 3 and art.num_images == 60
    assert art.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert tuple(art.bases.shape) == (20, 1, 28, 28)
    assert art.objective == "dm" and art.ipc == 2 and art.seed == 1
    assert art.objective_config["hallucinators"] == 3 and art.objective_config["objective_config"]["batch_real"] == 16
    history = art.extra["validation"]["history"]
    # chance is 0.1 on 3,000 held-out images; 0.35 measured
    assert [h["iteration"] for h in history] == [2] and history[0]["val_acc"] > 0.2
    assert res.best_val_acc == history[0]["val_acc"] and res.iterations == 2
    # the quick preset's same-padded hallucinators (format 1.3): maps of the image's 28 x 28
    assert res.storage["hallucinator_values"] == 3 * (9 + 1 + 2 * 28 * 28 + 9 + 1)
    images, labels = art.decode(pixel=True)
    assert labels.tolist() == [c for c in range(10) for _ in range(6)]
    assert images.shape == (60, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_dm_plain_writes_a_valid_artifact(tmp_path, fashion_mnist_dir):
    out = tmp_path / "plain.safetensors"
    res = distill(
        "fashion_mnist",
        ipc=1,
        baseline="dm",
        out=out,
        factorize=False,
        iterations=2,
        data_dir=fashion_mnist_dir,
        preset="quick",
        options=TINY,
    )
    art = load_artifact(out)
    assert art.num_hallucinators == 0 and art.labels.tolist() == list(range(10))
    assert art.objective_config["factorize"] is False and res.storage["hallucinator_values"] == 0
    assert res.best_val_acc is None and art.extra["validation"]["history"] == []


def test_low_resolution_bases_and_compact_hallucinators_fit_the_baselines_storage(tmp_path, fashion_mnist_dir):
    """--base-scale 2 with per-channel modulation at IPC 1: 14x14 bases (3 per class) and 5 hallucinators of
    22 values fit inside one 28x28 image per class, which the paper's hallucinators alone exceed; the
    artifact is format 1.1 and decodes (upsample, then hallucinate) to 28x28 images."""
    from habacli.artifact.header import read_header
    from habacli.networks.hallucinator import apply_all, upsample_bases

    out = tmp_path / "low.safetensors"
    res = distill(
        "fashion_mnist",
        ipc=1,
        baseline="dm",
        out=out,
        budget="matched",
        iterations=2,
        data_dir=fashion_mnist_dir,
        preset="quick",
        options={
            **TINY,
            "base_scale": 2,
            "hallucinator_modulation": "channel",
            "hallucinator_init": "identity",
            "hallucinator_padding": "valid",  # the paper's network: a 1.1 file
        },
    )
    assert res.storage["bases_per_class"] == 3 and res.storage["hallucinator_values"] == 5 * 22
    assert res.storage["total_values"] <= res.storage["baseline_values"] == 7840
    assert read_header(out).meta["format_version"] == "1.1"
    art = load_artifact(out)
    assert tuple(art.bases.shape) == (30, 1, 14, 14) and tuple(art.hallucinators["scale"].shape) == (5, 1, 1, 1)
    assert art.storage["total"] == res.storage["total_values"] and art.storage["ratio"] < 1
    x, y = art.decode(pixel=False)
    want = apply_all(upsample_bases(art.bases, 28, 28), art.hallucinators).transpose(0, 1).reshape(-1, 1, 28, 28)
    assert x.shape == (150, 1, 28, 28) and torch.allclose(x, want, atol=1e-5)
    assert y.tolist() == [c for c in range(10) for _ in range(15)]
    # the paper budget buys base_scale^2 times as many bases for the same pixels
    from habacli.distill.config import plan_budget

    cfg = build_config("fashion_mnist", "dm", 10, overrides={"base_scale": 2})
    assert plan_budget(cfg, num_classes=10, channels=1, height=28, width=28).bases_per_class == 40


def _one_iteration_dm(out, data_dir, **options):
    """One iteration of HaBa+DM at IPC 1 with the quick preset and ``options`` on top of TINY."""
    return distill(
        "fashion_mnist",
        ipc=1,
        baseline="dm",
        out=out,
        iterations=1,
        data_dir=data_dir,
        preset="quick",
        options={**TINY, **options},
    )


def test_same_padded_hallucinators_write_a_1_3_artifact(fashion_mnist_dir, tmp_path):
    """--set hallucinator_padding=same: maps of the image size, format 1.3, decoded as the padded network;
    a document claiming the padded architecture with an even kernel is refused."""
    from habacli.artifact.codec import read_header
    from habacli.artifact.header import _Problem, _validate_doc
    from habacli.networks.hallucinator import apply_all

    out = tmp_path / "same.safetensors"
    res = _one_iteration_dm(out, fashion_mnist_dir, hallucinator_padding="same", base_scale=1)
    assert res.storage["hallucinator_values"] == 5 * (9 + 1 + 2 * 28 * 28 + 9 + 1)
    header = read_header(out)
    assert header.meta["format_version"] == "1.3"
    assert header.doc["hallucinators"]["architecture"] == "haba-style-translator-same"
    art = load_artifact(out)
    assert art.hallucinator_padding == "same" and tuple(art.hallucinators["scale"].shape) == (5, 1, 28, 28)
    x, _ = art.decode(pixel=False)
    want = apply_all(art.bases, art.hallucinators, pad=1).transpose(0, 1).reshape(-1, 1, 28, 28)
    assert torch.allclose(x, want, atol=1e-5)
    doc = dict(header.doc, hallucinators={**header.doc["hallucinators"], "kernel_size": 2})
    with pytest.raises(_Problem, match="odd kernel_size"):
        _validate_doc(doc)


def test_auto_base_scale_follows_the_image_shape(fashion_mnist_dir, tmp_path):
    """base_scale 0 (the HaBa+DM and HaBa+DSA presets) halves the bases while they keep >= 14 px a side, and the
    artifact and checkpoint record the number it became; an explicit --base-scale wins."""
    from habacli.distill.config import auto_base_scale, plan_budget

    assert [auto_base_scale(s, s) for s in (8, 16, 26, 27, 28, 32, 64)] == [1, 1, 1, 1, 2, 2, 2]
    assert auto_base_scale(28, 30) == 2 and auto_base_scale(28, 26) == 1 and auto_base_scale(30, 29) == 1
    assert auto_base_scale(32, 32, zca=True) == 1  # whitened pixels: upsampled half-size bases lose there
    for objective in ("dm", "dsa"):
        for preset in ("quick", "paper"):
            cfg = build_config("fashion_mnist", objective, 10, preset=preset)
            assert cfg.base_scale == 0 and cfg.hallucinator_init == "identity", (objective, preset)
            assert build_config("fashion_mnist", objective, 10, preset=preset, factorize=False).base_scale == 1
    cfg = build_config("fashion_mnist", "dm", 10, preset="quick")
    assert plan_budget(cfg, num_classes=10, channels=1, height=28, width=28).bases_per_class == 40
    assert plan_budget(cfg, num_classes=10, channels=1, height=8, width=8).bases_per_class == 10
    out = tmp_path / "a.safetensors"
    res = _one_iteration_dm(out, fashion_mnist_dir)
    art = load_artifact(out)
    assert tuple(art.bases.shape) == (40, 1, 14, 14) and art.objective_config["base_scale"] == 2
    assert res.storage["bases_per_class"] == 4


def test_auto_modulation_keeps_bases_at_matched_storage(fashion_mnist_dir):
    """hallucinator_modulation auto: per-channel where --budget matched would lose a basis per class to the
    per-pixel maps (CIFAR-shaped IPC 10: 9 full-size bases per class instead of 8), the paper's per-pixel
    maps otherwise; the run records what it became."""
    from habacli.distill.config import auto_modulation, plan_budget
    from habacli.distill.run import Run

    rgb = {"num_classes": 10, "channels": 3, "height": 32, "width": 32}
    cfg = build_config("cifar10", "dm", 10, preset="paper", overrides={"budget": "matched", "zca": True})
    per = {
        m: plan_budget(replace(cfg, hallucinator_modulation=m), **rgb).bases_per_class
        for m in ("pixel", "channel", "auto")
    }
    assert (per["pixel"], per["channel"]) == (8, 9) and auto_modulation(cfg, **rgb) == "channel"
    assert per["auto"] == 9
    assert auto_modulation(replace(cfg, budget="paper"), **rgb) == "pixel"  # the paper's budget: the paper's maps
    assert auto_modulation(replace(cfg, hallucinators=1), **rgb) == "pixel"  # 1 map costs no basis here
    with pytest.raises(ConfigError, match="hallucinator_modulation"):
        build_config("cifar10", "dm", 10, overrides={"hallucinator_modulation": "pixels"})
    run = Run(
        build_config(
            "fashion_mnist",
            "dm",
            1,
            preset="quick",
            objective_defaults=get_objective("dm").defaults,
            overrides={**TINY, "budget": "matched", "hallucinator_modulation": "auto", "base_scale": 2},
        ),
        get_objective("dm"),
        data_dir=fashion_mnist_dir,
    )
    assert run.cfg.hallucinator_modulation == "channel" and run.engine.synthetic.bank.modulation == "channel"


def test_contrast_batch_defaults_to_the_baselines_image_count(fashion_mnist_dir):
    """batch_contrast 0: every basis when bases are full-size (the official batch_syn default), a random
    ipc x C of the base_scale^2 x as many low-resolution bases; an explicit size wins."""
    from habacli.distill.run import Run

    cls = get_objective("dm")
    for scale, override, want in ((1, 0, None), (2, 0, 20), (2, 7, 7), (2, 1000, None)):
        cfg = build_config(
            "fashion_mnist",
            "dm",
            2,
            preset="quick",
            objective_defaults=cls.defaults,
            overrides={**TINY, "base_scale": scale, "batch_contrast": override, "hallucinators": 2},
        )
        engine = Run(cfg, cls, data_dir=fashion_mnist_dir).engine
        assert engine.synthetic.num_bases == 20 * scale**2
        idx, labels = engine._contrast_batch()
        if want is None:
            assert idx is None and torch.equal(labels, engine.synthetic.labels)
        else:
            assert idx.shape == (want,) and len(set(idx.tolist())) == want
            assert torch.equal(labels, engine.synthetic.labels[idx])


def test_dm_loss_decreases(fashion_mnist_dir, tmp_path):
    """The DM loss on FIXED probe networks and real batches drops after a short run (fixed seed)."""
    from habacli.distill.run import Run

    cls = get_objective("dm")
    cfg = build_config(
        "fashion_mnist",
        "dm",
        2,
        preset="quick",
        objective_defaults=cls.defaults,
        overrides={**TINY, "batch_real": 8, "hallucinators": 2, "batch_contrast": 4, "seed": 0},
    )
    run = Run(cfg, cls, data_dir=fashion_mnist_dir)
    obj, syn = run.objective, run.engine.synthetic
    g = torch.Generator().manual_seed(123)
    probes = []
    for _ in range(3):
        net = get_network("convnet", channels=1, num_classes=10, height=28, width=28, generator=g).requires_grad_(False)
        real = torch.cat([run.real.sample_class(c, 32, g) for c in range(10)])
        probes.append((net, real))

    def probe_loss() -> float:
        with torch.no_grad():
            return sum(float(obj.loss(net, real, syn.images(None, k))) for net, real in probes for k in range(2))

    before = probe_loss()
    losses = [obj.run_iteration(i)["loss_dd"] for i in range(12)]
    after = probe_loss()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert after < 0.8 * before, (before, after)


def test_precedence_cli_over_file_over_preset(tmp_path):
    quick = resolve_preset(load_preset("quick"), dataset="fashion_mnist", objective="dm", ipc=1, factorize=True)
    cfg = build_config("fashion_mnist", "dm", 1, preset="quick", objective_defaults={"batch_real": 256})
    assert cfg.iterations == quick["iterations"] and cfg.objective_config["batch_real"] == quick["batch_real"]
    f = tmp_path / "run.toml"
    f.write_text("iterations = 7\nlr_img = 0.5\nbatch_real = 8\n")
    cfg = build_config(
        "fashion_mnist",
        "dm",
        1,
        preset="quick",
        config_file=f,
        objective_defaults={"batch_real": 256},
        overrides={"iterations": 9, "lr_img": None},
    )
    assert (cfg.iterations, cfg.lr_img, cfg.objective_config["batch_real"]) == (9, 0.5, 8)
    f.write_text("[distill]\nbatch_reel = 8\n")
    with pytest.raises(ConfigError, match="batch_reel"):
        build_config("fashion_mnist", "dm", 1, config_file=f, objective_defaults={"batch_real": 256})
    f.write_text("iterations = 'many'\n")
    with pytest.raises(ConfigError, match="iterations"):
        build_config("fashion_mnist", "dm", 1, config_file=f)


def test_paper_preset_values():
    dm10 = build_config("cifar10", "dm", 10, objective_defaults={"batch_real": 256})
    assert (dm10.iterations, dm10.lr_img, dm10.momentum_img, dm10.objective_config["batch_real"]) == (
        20000,
        1.0,
        0.5,
        256,
    )
    assert (dm10.hallucinators, dm10.lambda_cos, dm10.adv_lr, dm10.adv_momentum) == (5, 0.1, 0.001, 0.9)
    assert build_config("cifar10", "dm", 100).lr_img == 10.0
    mtt = build_config("cifar10", "mtt", 10)
    assert (mtt.iterations, mtt.momentum_img, mtt.lr_img, mtt.zca, mtt.eval_start) == (15000, 0.95, 100.0, True, 13500)
    plain = build_config("cifar10", "mtt", 10, factorize=False)
    assert (plain.iterations, plain.momentum_img) == (5000, 0.5)
    # the paper's datasets keep the official HaBa+MTT recipe; elsewhere haba's own (docs/fidelity.md)
    for dataset in ("cifar10", "cifar100", "svhn"):
        for ipc in (1, 10, 50):
            for preset in ("paper", "quick"):
                cfg = build_config(dataset, "mtt", ipc, preset=preset)
                assert (cfg.momentum_img, cfg.base_scale, cfg.hallucinator_init, cfg.hallucinator_padding) == (
                    0.95,
                    1,
                    "official",
                    "valid",
                ), (dataset, ipc, preset)
    own = build_config("fashion_mnist", "mtt", 1)
    assert (own.momentum_img, own.base_scale, own.hallucinator_init, own.iterations) == (0.5, 0, "identity", 15000)
    assert own.hallucinator_padding == "same"
    dc = build_config("cifar10", "dc", 10)
    assert (dc.iterations, dc.lr_img, dc.init, dc.dsa) == (1000, 0.1, "noise", False)


def test_hallucinator_learning_rates_in_the_presets():
    """lr_style: the official lr_style = lr_img only where HaBa's scripts use it (CIFAR-10 MTT);
    haba's stable values elsewhere (docs/fidelity.md); plain runs have no hallucinators."""
    for preset in ("paper", "quick"):
        assert build_config("cifar10", "mtt", 10, preset=preset).effective_lr_style == 100.0
        assert build_config("cifar10", "mtt", 50, preset=preset).effective_lr_style == 100.0
        assert build_config("fashion_mnist", "mtt", 1, preset=preset).effective_lr_style == 0.01
        assert build_config("fashion_mnist", "dm", 10, preset=preset).effective_lr_style == 1e-4
        assert build_config("cifar10", "dm", 100, preset=preset).effective_lr_style == 1e-4
        assert build_config("fashion_mnist", "dc", 1, preset=preset).effective_lr_style == 1e-4
        assert build_config("fashion_mnist", "dsa", 1, preset=preset).effective_lr_style == 1e-4
        assert build_config("fashion_mnist", "dm", 10, preset=preset, factorize=False).lr_style is None


@pytest.mark.parametrize("lr_style, stays_in_range", [(None, True), (1.0, False)])
def test_haba_dm_keeps_hallucinated_images_in_range(fashion_mnist_dir, lr_style, stays_in_range):
    """With the preset's lr_style, HaBa+DM's decoded images stay near the real range (model space:
    about -0.8 to 2.0 for Fashion-MNIST). DM's lr_img 1 on the hallucinators (the old rule,
    lr_style = lr_img) multiplies their weights by ~1e4 in one step: images of 1e9 and more."""
    from habacli.distill.run import Run

    cls = get_objective("dm")
    over = {**TINY, "hallucinators": 3, "seed": 0}
    if lr_style is not None:
        over["lr_style"] = lr_style
    cfg = build_config("fashion_mnist", "dm", 2, preset="quick", objective_defaults=cls.defaults, overrides=over)
    run = Run(cfg, cls, data_dir=fashion_mnist_dir)
    for i in range(3):
        run.objective.run_iteration(i)
    with torch.no_grad():
        peak = max(float(run.engine.synthetic.images(None, k).abs().max()) for k in range(3))
    assert torch.isfinite(torch.tensor(peak))
    assert (peak < 20.0) == stays_in_range, peak


@pytest.mark.parametrize("objective", ["dc", "dsa", "dm", "mtt"])
@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_presets_are_valid_for_every_objective(objective, preset):
    try:
        cls = get_objective(objective)
    except ModuleNotFoundError:
        pytest.skip(f"objective {objective} not installed yet")
    for ipc in (1, 10, 50):
        for factorize in (True, False):
            for dataset in ("cifar10", "cifar100", "fashion_mnist"):
                cfg = build_config(
                    dataset, objective, ipc, factorize=factorize, preset=preset, objective_defaults=cls.defaults
                )
                # the preset resolved to a complete, self-consistent configuration of this run
                assert (cfg.dataset, cfg.objective, cfg.ipc) == (dataset, objective, ipc)
                assert cfg.factorize == factorize and cfg.iterations >= 1
                # every value the preset sets for this run reached the configuration (fields or objective keys)
                opts = resolve_preset(
                    load_preset(preset), dataset=dataset, objective=objective, ipc=ipc, factorize=factorize
                )
                assert opts, f"preset {preset} sets nothing for {dataset}/{objective}/ipc{ipc}"
                for key, value in opts.items():
                    got = getattr(cfg, key) if hasattr(cfg, key) else cfg.objective_config[key]
                    assert got == value, (key, got, value)


def test_unknown_objective_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'dm'"):
        get_objective("dmm")


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["distill", "fashion_mnst", "--ipc", "1"], "did you mean 'fashion_mnist'"),
        (["distill", "fashion_mnist", "--ipc", "1", "--baseline", "dsm"], "unknown objective 'dsm'"),
        (["distill", "fashion_mnist", "--ipc", "0"], "--ipc must be >= 1"),
        (["distill", "fashion_mnist", "--ipc", "1", "-k", "-1"], "--hallucinators must be >= 0"),
        (["distill", "fashion_mnist", "--ipc", "1", "--preset", "fast"], "unknown preset 'fast'"),
        (["distill", "fashion_mnist", "--ipc", "1", "--set", "batch_reel=3"], "batch_reel"),
        (["distill", "fashion_mnist", "--ipc", "1", "--set", "hallucinator_init=eye"], "official, identity"),
        (
            ["distill", "fashion_mnist", "--ipc", "1", "--budget", "matched", "--set", "hallucinator_modulation=pixel"],
            "--budget matched",
        ),
        (["distill", "fashion_mnist", "--ipc", "1", "--amp", "fp16"], "--amp fp16 is not supported"),
        (["distill", "fashion_mnist", "--ipc", "1", "--base-scale", "3"], "--base-scale 3 must divide"),
        (["distill", "fashion_mnist", "--ipc", "1", "--base-scale", "-1"], "--base-scale must be >= 0"),
        (["distill", "fashion_mnist", "--ipc", "1", "--set", "hallucinator_modulation=film"], "pixel, channel"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(capsys, tmp_path, fashion_mnist_dir, argv, needle):
    code, out, err = _cli(capsys, *argv, "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / "a.safetensors"))
    assert code == 2 and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["distill", "fashion_mnist", "--ipc", "abc"], "Invalid value for '--ipc'"),
        (["distill", "fashion_mnist", "--ipc", "1", "--bogus"], "no such option --bogus (see"),
        (["distill", "fashion_mnist", "--ipc", "1", "--ot", "x"], "did you mean --out?"),
        (["distill"], "Missing argument 'dataset'"),
        (["info"], "Missing argument 'artifact'"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_cli_parse_errors_are_one_line(capsys, argv, needle):
    """README promises one-line errors: typer's boxed parse-error panel is replaced by one line."""
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "" and needle in err and err.startswith("error: ") and err.count("\n") == 1
    assert "--bogus" not in argv or "did you mean" not in err  # --bogus is not close to --out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "command-line parse errors included" in readme


def test_cli_unwritable_out(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _cli(capsys, "distill", "fashion_mnist", "--ipc", "1", "--out", str(blocker / "a.safetensors"))
    assert code == 2 and "cannot create folder" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "distill", "fashion_mnist", "--ipc", "1", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err and err.count("\n") == 1
    ro = tmp_path / "ro"
    ro.mkdir()
    if _writable_anyway(ro):
        # root (how CI runs) ignores folder permissions: make the probe file's creation fail as a read-only
        # folder would, so the refusal is still exercised
        def refuse(*_a, **_k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("habacli.distill.run.tempfile.mkstemp", refuse)
    ro.chmod(0o500)
    try:
        code, _, err = _cli(capsys, "distill", "fashion_mnist", "--ipc", "1", "--out", str(ro / "a.safetensors"))
    finally:
        ro.chmod(0o700)
    assert code == 2 and "not writable" in err and err.count("\n") == 1
    assert list(ro.iterdir()) == []


def _writable_anyway(folder: Path) -> bool:
    """True when this user can write into a 0o500 folder (root without a read-only mount)."""
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
        (folder / "probe").unlink()
        return True
    except OSError:
        return False
    finally:
        folder.chmod(0o700)


def test_cli_json_summary(capsys, tmp_path, fashion_mnist_dir):
    out = tmp_path / "cli.safetensors"
    code, stdout, _ = _cli(
        capsys,
        "distill",
        "fashion_mnist",
        "--ipc",
        "1",
        "--preset",
        "quick",
        "-n",
        "1",
        "-k",
        "2",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--set",
        "batch_real=8",
        "--device",
        "cpu",
        "--data-dir",
        str(fashion_mnist_dir),
        "--out",
        str(out),
        "--json",
        "-q",
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["iterations"] == 1 and summary["artifact"] == str(out) and summary["objective"] == "dm"
    # the DM+HaBa preset's half-resolution bases: the paper budget of 1 image per class buys 4 bases per class
    assert summary["storage"]["bases_per_class"] == 4 and load_artifact(out).num_hallucinators == 2


def _dm_run(fashion_mnist_dir, **overrides):
    from habacli.distill.run import Run

    cls = get_objective("dm")
    cfg = build_config(
        "fashion_mnist",
        "dm",
        2,
        preset="quick",
        objective_defaults=cls.defaults,
        overrides={**TINY, "batch_real": 8, "hallucinators": 2, "batch_contrast": 4, "seed": 0, **overrides},
    )
    return Run(cfg, cls, data_dir=fashion_mnist_dir)


def test_bf16_autocast_updates_every_group_in_fp32(fashion_mnist_dir):
    """--amp bf16: DM's real pass and HaBa's adversary passes autocast, the learnable state stays fp32
    and every group (bases, hallucinators, adversary) still moves, with finite losses."""
    run = _dm_run(fashion_mnist_dir, amp="bf16")
    before = {k: v.clone() for k, v in run.engine.state_tensors().items()}
    stats = [run.objective.run_iteration(i) for i in range(2)]
    after = run.engine.state_tensors()
    assert all(torch.isfinite(torch.tensor([s["loss_dd"], s["loss_cos"], s["loss_adv"]])).all() for s in stats)
    for prefix in ("synthetic.bases", "synthetic.hallucinators.", "adversary."):
        keys = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()]
        assert keys and all(after[k].dtype == torch.float32 for k in keys)
        assert any(not torch.equal(before[k], after[k]) for k in keys), prefix


@pytest.mark.slow
def test_compiled_distill_matches_eager_closely(fashion_mnist_dir):
    """--compile (DM's embedding and the adversary's passes under torch.compile) computes the same
    iterations as eager, up to fp32 reassociation."""
    eager, compiled = _dm_run(fashion_mnist_dir), _dm_run(fashion_mnist_dir, compile=True)
    start = eager.engine.state_tensors()["synthetic.bases"].clone()
    a = [eager.objective.run_iteration(i) for i in range(3)]
    b = [compiled.objective.run_iteration(i) for i in range(3)]
    for sa, sb in zip(a, b):
        for key in ("loss_dd", "loss_cos", "loss_adv"):
            assert sb[key] == pytest.approx(sa[key], rel=1e-3, abs=1e-5), key
    ea, eb = eager.engine.state_tensors()["synthetic.bases"], compiled.engine.state_tensors()["synthetic.bases"]
    moved = float((ea - start).norm())
    assert moved > 0 and float((eb - ea).norm()) < 1e-2 * moved  # the two runs took the same steps


def test_compile_without_a_cpu_compiler_is_a_one_line_error(capsys, tmp_path, fashion_mnist_dir, monkeypatch):
    """--compile on the CPU with no C++ compiler on PATH: one line, exit 2, before any work."""
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.delenv("CXX", raising=False)
    for argv in (
        [
            "distill",
            "fashion_mnist",
            "--ipc",
            "1",
            "--device",
            "cpu",
            "--compile",
            "--data-dir",
            fashion_mnist_dir,
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
        [
            "evaluate",
            "fashion_mnist",
            "--baseline",
            "random",
            "--ipc",
            "1",
            "--device",
            "cpu",
            "--compile",
            "--data-dir",
            fashion_mnist_dir,
        ],
    ):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "needs a C++ compiler" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_lone_validation_point_is_skipped(capsys, tmp_path, fashion_mnist_dir):
    """Issue 23: `haba distill fashion_mnist --ipc 1 --baseline dc --iterations 3` (paper preset) has one
    validation point, the last iteration: nothing to choose between, so the run ends after its iterations
    instead of a 5 x 1000-epoch validation. One iteration and small real batches keep the test short."""
    out = tmp_path / "dc.safetensors"
    argv = ["distill", "fashion_mnist", "--ipc", "1", "--baseline", "dc", "--iterations", "1", "--device", "cpu"]
    argv += ["--set", "batch_real=16", "--checkpoint-every", "0"]
    code, stdout, err = _cli(capsys, *argv, "--data-dir", str(fashion_mnist_dir), "--out", str(out))
    assert code == 0 and "wrote" in stdout and "best val acc" not in stdout
    assert "no validation (a single validation point" in err
    assert load_artifact(out).extra["validation"]["history"] == []


def test_validation_shows_its_progress_and_what_is_to_come(tmp_path, fashion_mnist_dir):
    events = []
    res = distill(
        "fashion_mnist",
        ipc=1,
        baseline="dm",
        out=tmp_path / "v.safetensors",
        hallucinators=2,
        iterations=2,
        data_dir=fashion_mnist_dir,
        preset="quick",
        options={**TINY, "eval_every": 1, "eval_epochs": 1, "eval_runs": 2},
        progress=events.append,
    )
    assert [h["iteration"] for h in res.history] == [1, 2]
    start = next(e for e in events if e.kind == "start")
    assert "validation: 2 x 2 run(s) x 2 epochs" in start.message
    its = [e.message for e in events if e.kind == "iteration"]
    assert its == ["validation to come: 2 x 2 run(s) x 2 epochs", "validation to come: 1 x 2 run(s) x 2 epochs"]
    steps = [(e.description, e.done, e.total) for e in events if e.kind == "validating"]
    assert steps[-1] == ("validation at it 2", 4, 4) and ("validation at it 1", 2, 4) in steps


def test_validation_points():
    from habacli.distill.run import Run

    def points(**kw):
        run = Run.__new__(Run)
        run.cfg = build_config("fashion_mnist", "dm", 1, preset="quick", overrides={**TINY, **kw})
        return run.validation_points

    assert points(iterations=3, eval_every=500, validate_single=False) == []  # a lone final point
    assert points(iterations=3, eval_every=500) == [3]  # eval_every given: asked for
    assert points(iterations=10, eval_every=4) == [4, 8, 10]
    assert points(iterations=10, eval_every=4, eval_start=5) == [8, 10]
    assert points(iterations=10, eval_every=0) == []
