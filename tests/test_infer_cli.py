"""`haba teachers` and `haba distill --method infer` through the CLI on real Fashion-MNIST, tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from habacli import load_artifact
from habacli.cli import main

ARCHS = "convbn_w32_d2,convbn_w64_d2_lrelu"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def teachers_dir(tmp_path_factory, fashion_mnist_dir: Path) -> Path:
    d = tmp_path_factory.mktemp("teachers")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "teachers",
                "fashion_mnist",
                "--archs",
                ARCHS,
                "--epochs",
                "1",
                "--subset",
                "2000",
                "--out",
                str(d),
                "-q",
                "--data-dir",
                str(fashion_mnist_dir),
            ]
        )
    assert exc.value.code in (0, None)
    return d


def test_teachers_command_trains_then_reuses(teachers_dir: Path, fashion_mnist_dir: Path, capsys) -> None:
    code, out, _ = _cli(
        capsys,
        "teachers",
        "fashion_mnist",
        "--archs",
        ARCHS,
        "--epochs",
        "1",
        "--subset",
        "2000",
        "--out",
        str(teachers_dir),
        "--json",
        "-q",
        "--data-dir",
        str(fashion_mnist_dir),
    )
    assert code == 0
    rows = json.loads(out)["teachers"]
    assert [r["arch"] for r in rows] == ARCHS.split(",") and not any(r["trained_now"] for r in rows)
    assert all(0.5 < r["test_accuracy"] <= 1 for r in rows)


def _distill_args(teachers_dir: Path, fashion_mnist_dir: Path, out: Path) -> list[str]:
    return [
        "distill",
        "fashion_mnist",
        "--ipc",
        "10",
        "--method",
        "infer",
        "--teachers",
        str(teachers_dir),
        "--iterations",
        "4",
        "--out",
        str(out),
        "--data-dir",
        str(fashion_mnist_dir),
        "-q",
    ]


@pytest.fixture(scope="module")
def infer_path(teachers_dir: Path, fashion_mnist_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infer") / "fm-infer.safetensors"
    with pytest.raises(SystemExit) as exc:
        main(_distill_args(teachers_dir, fashion_mnist_dir, out))
    assert exc.value.code in (0, None)
    return out


def test_evaluate_follows_the_recipe_and_standard_forces_hard_labels(
    infer_path: Path, fashion_mnist_dir: Path, capsys
) -> None:
    base = ["evaluate", str(infer_path), "--runs", "1", "--epochs", "2", "--json", "-q", "--data-dir"]
    code, out, _ = _cli(capsys, *base, str(fashion_mnist_dir))
    assert code == 0
    res = json.loads(out)
    s = res["settings"]
    assert s["recipe"] == "artifact" and s["reported"] == "final_epoch" and s["epochs_run"] == 2
    assert s["num_instances"] == 240 and s["batch_size"] == 64 and s["temperature"] == 30
    assert 0.1 < res["models"]["convnet"]["mean"] <= 1
    code, out, _ = _cli(capsys, *base, str(fashion_mnist_dir), "--recipe", "standard")
    assert code == 0
    s = json.loads(out)["settings"]
    assert "recipe" not in s and s["epochs_run"] == 3 and s["num_images"] == 240
    # the standard protocol's knobs are refused under the artifact's recipe, which would ignore them
    for extra in (["--amp", "bf16"], ["--lr", "0.1"], ["--batch-size", "32"], ["--compile"]):
        code, _, err = _cli(capsys, *base, str(fashion_mnist_dir), *extra)
        assert code != 0 and "--recipe standard" in err and err.count("\n") == 1, (extra, err)
    code, out, _ = _cli(capsys, *base, str(fashion_mnist_dir), "--recipe", "standard", "--amp", "bf16")
    assert code == 0 and json.loads(out)["settings"]["amp"] == "bf16"


def test_no_compensators_trains_on_the_natural_images_alone(infer_path: Path, fashion_mnist_dir: Path, capsys) -> None:
    """INFER's ablation: the natural images and their own soft labels, under either recipe; refused elsewhere."""
    base = ["evaluate", str(infer_path), "--runs", "1", "--epochs", "2", "--json", "-q", "--data-dir"]
    code, out, _ = _cli(capsys, *base, str(fashion_mnist_dir), "--no-compensators")
    assert code == 0
    res = json.loads(out)
    s = res["settings"]
    art = load_artifact(infer_path)
    n_nat = int(art.bases.shape[0])
    assert s["compensators"] is False and s["num_instances"] == n_nat < 240 and s["recipe"] == "artifact"
    assert any("no compensators" in n for n in res["notes"])
    code, out, _ = _cli(capsys, *base, str(fashion_mnist_dir), "--no-compensators", "--recipe", "standard")
    assert code == 0
    s = json.loads(out)["settings"]
    assert s["compensators"] is False and s["num_images"] == n_nat
    golden = Path(__file__).resolve().parent.parent / "formats" / "examples" / "fashion_same.safetensors"
    code, _, err = _cli(capsys, "evaluate", str(golden), "--no-compensators", "-q")
    assert code == 2 and "only to an INFER artifact" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "evaluate", "fashion_mnist", "--baseline", "random", "--ipc", "10", "--no-compensators")
    assert code == 2 and "not to --baseline random" in err


def test_distill_method_infer_writes_a_1_2_artifact_and_resumes(
    teachers_dir: Path, fashion_mnist_dir: Path, tmp_path: Path, capsys
) -> None:
    from habacli.artifact.codec import load_artifact
    from habacli.artifact.header import read_header

    out = tmp_path / "fm-infer.safetensors"
    args = _distill_args(teachers_dir, fashion_mnist_dir, out)
    code, text, _ = _cli(capsys, *args)
    assert code == 0 and "INFER, 8 subsets x 2 UFCs" in text and "compensators" in text
    assert read_header(out).meta["format_version"] == "1.2"
    art = load_artifact(out)
    assert art.num_instances == 80 + 160 and art.instance_soft_labels.shape == (240, 10)
    assert art.evaluation_recipe["epochs"] == 400 and art.evaluation_recipe["temperature"] == 30
    assert not out.with_name(out.name + ".infer-checkpoint").exists()  # removed once the artifact is written

    # a checkpoint of the same run, partly done: --resume finishes it with the same artifact tensors
    from habacli.infer.store import save_ufc_state

    ckpt = out.with_name(out.name + ".infer-checkpoint")
    done = {(k, m): art.compensators[k, m].unsqueeze(0) for k in range(3) for m in range(2)}
    meta = {"dataset": "fashion_mnist", "ipc": 10, "seed": 0, "iterations": 4, "teachers": ARCHS.split(",")}
    save_ufc_state(ckpt, done, meta)
    again = tmp_path / "again.safetensors"
    save_ufc_state(again.with_name(again.name + ".infer-checkpoint"), done, meta)
    code, _, err = _cli(capsys, *[a if a != str(out) else str(again) for a in args])
    assert code == 2 and "--resume" in err and err.count("\n") == 1
    code, _, _ = _cli(capsys, *[a if a != str(out) else str(again) for a in args], "--resume")
    assert code == 0
    assert torch.equal(load_artifact(again).compensators, art.compensators)
    assert torch.equal(load_artifact(again).instance_soft_labels, art.instance_soft_labels)


def test_a_missing_teacher_names_the_teachers_command(teachers_dir: Path, fashion_mnist_dir: Path, tmp_path) -> None:
    from habacli import api
    from habacli.infer.teachers import TeacherError

    with pytest.raises(TeacherError, match="haba teachers fashion_mnist") as err:
        api.distill_infer(
            "fashion_mnist",
            10,
            out=tmp_path / "a.safetensors",
            teachers_dir=teachers_dir,
            archs=["convbn_w48_d3_max"],
            data_dir=fashion_mnist_dir,
        )
    assert "\n" not in str(err.value)


def test_ipc_1_has_no_infer_set(teachers_dir: Path, fashion_mnist_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _cli(
        capsys,
        "distill",
        "fashion_mnist",
        "--ipc",
        "1",
        "--method",
        "infer",
        "--teachers",
        str(teachers_dir),
        "--out",
        str(tmp_path / "a.safetensors"),
        "--data-dir",
        str(fashion_mnist_dir),
        "-q",
    )
    assert code == 2 and err.count("\n") == 1 and "IPC" in err.upper()


def test_haba_options_are_refused_with_method_infer(tmp_path: Path, capsys) -> None:
    """Options that only shape a HaBa run are not silently dropped under --method infer."""
    base = ["distill", "fashion_mnist", "--ipc", "10", "--method", "infer", "--out", str(tmp_path / "a.safetensors")]
    for extra, flag in (
        (["--baseline", "mtt"], "--baseline"),
        (["--base-scale", "2"], "--base-scale"),
        (["--no-factorize"], "--no-factorize"),
        (["--set", "lr_img=1"], "--set"),
        (["-k", "3", "--amp", "bf16"], "--hallucinators, --amp"),
    ):
        code, _, err = _cli(capsys, *base, *extra)
        assert code == 2 and err.count("\n") == 1 and flag in err and "--method infer" in err, err
    assert not (tmp_path / "a.safetensors").exists()


def test_random_baseline_with_the_teachers_soft_labels(
    teachers_dir: Path, fashion_mnist_dir: Path, capsys, monkeypatch
) -> None:
    """`haba evaluate --baseline random --teachers DIR`: INFER's random-real row: each drawn image's soft label is
    the ensemble's averaged logits, and the networks train under INFER's recipe."""
    import habacli.evaluate.run as ev
    from habacli.infer.labels import ensemble_logits
    from habacli.infer.teachers import load_teachers

    seen = []
    real = ev.train_student

    def spy(x, y, soft, **kw):
        seen.append((x.clone(), y.clone(), soft.clone(), kw["recipe"]))
        return real(x, y, soft, **kw)

    monkeypatch.setattr(ev, "train_student", spy)
    args = ["evaluate", "fashion_mnist", "--baseline", "random", "--ipc", "2", "--teachers", str(teachers_dir)]
    code, out, err = _cli(
        capsys, *args, "--runs", "2", "--epochs", "2", "--data-dir", str(fashion_mnist_dir), "--json", "-q"
    )
    assert code == 0, err
    result = json.loads(out)
    s = result["settings"]
    assert s["recipe"] == "infer" and s["epochs"] == 2 and s["temperature"] == 30 and not s["zca"]
    assert sorted(s["teachers"]) == sorted(ARCHS.split(",")) and len(result["models"]["convnet"]["accuracies"]) == 2
    assert len(seen) == 2 and seen[0][0].shape == (20, 1, 28, 28) and not torch.equal(seen[0][0], seen[1][0])
    models, _ = load_teachers(teachers_dir, "fashion_mnist")
    for x, y, soft, recipe in seen:
        assert recipe.epochs == 2 and recipe.label_mode == "soft"
        torch.testing.assert_close(soft, ensemble_logits(models, x))
        assert sorted(y.tolist()) == [c for c in range(10) for _ in range(2)]
    code, _, err = _cli(capsys, "evaluate", "x.safetensors", "--teachers", str(teachers_dir))
    assert code == 2 and err.count("\n") == 1 and "--baseline random" in err
    code, _, err = _cli(capsys, *args, "--zca")
    assert code == 2 and err.count("\n") == 1 and "--zca" in err


def test_expand_writes_instances_and_soft_labels(infer_path: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from habacli.artifact.codec import load_artifact
    from habacli.artifact.expand import expand

    art = load_artifact(infer_path)
    expand(infer_path, tmp_path / "st", fmt="safetensors")
    t = load_file(str(tmp_path / "st" / "images.safetensors"))
    assert t["images"].shape[0] == art.num_instances == t["soft_labels"].shape[0]
    assert torch.equal(t["soft_labels"], art.instance_soft_labels)
    assert int((t["compensator"] >= 0).sum()) == 160
    expand(infer_path, tmp_path / "pq", fmt="parquet")
    import datasets

    ds = datasets.Dataset.from_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    assert len(ds) == 240 and len(ds[0]["soft_label"]) == 10


def test_hub_round_trip_evaluates_the_same_without_teachers(
    infer_path: Path, fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    """Push an INFER artifact to the test Hub, pull it into another folder and evaluate it there (no teacher
    anywhere near it): the same accuracy as evaluating the original, with the same seeds."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from hubserver import HubServer

    from habacli import api
    from habacli.hub import transfer as hub

    with HubServer() as server:
        pushed = hub.push(infer_path, "org/fm-infer", token=server.token, endpoint=server.url)
        pulled = hub.pull(pushed.ref, endpoint=server.url, out=tmp_path / "elsewhere")
    assert pulled.path.parent == tmp_path / "elsewhere" and pulled.path.read_bytes() == infer_path.read_bytes()
    card = pulled.card.read_text() if pulled.card else ""
    assert "## Training recipe" in card and "1.0 or 1.1" in card
    kw = {"runs": 1, "epochs": 2, "seed": 0, "data_dir": fashion_mnist_dir, "device": "cpu"}
    here = api.evaluate(infer_path, **kw)
    there = api.evaluate(pulled.path, **kw)
    assert here.settings["recipe"] == there.settings["recipe"] == "artifact"
    assert here.models["convnet"].accuracies == there.models["convnet"].accuracies
