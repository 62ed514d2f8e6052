"""`haba experts`: trajectories, files, manifest, resume, shards/merge and bad input, on Fashion-MNIST."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from habacli.errors import ConfigError, ExpertsError

FMNIST = "fashion_mnist"


@pytest.fixture(scope="module")
def experts(session_dir: Path, fashion_mnist_dir: Path) -> Path:
    """2 experts x 2 epochs on 256 Fashion-MNIST images (the same buffer as test_mtt.py's)."""
    from habacli.experts import train_experts

    out = session_dir / "experts-fmnist-2x2"
    train_experts(FMNIST, num=2, epochs=2, out=out, subset=256, seed=0, device="cpu", data_dir=fashion_mnist_dir)
    return out


def test_expert_files_and_manifest(experts: Path) -> None:
    from habacli.experts.store import sha256_file
    from habacli.networks import get_network

    manifest = json.loads((experts / "manifest.json").read_text())
    assert manifest["dataset"] == FMNIST and manifest["model"] == "convnet" and manifest["zca"] is False
    assert (manifest["lr"], manifest["momentum"], manifest["weight_decay"], manifest["batch_size"]) == (
        0.01,
        0.0,
        0.0,
        256,
    )
    assert manifest["epochs"] == 2 and manifest["num_experts"] == 2 and manifest["train_images"] == 256
    assert "flip" in manifest["dsa"]["strategy"]  # fashion_mnist keeps flip (only digits drop it)
    net = get_network("convnet", channels=1, num_classes=10, height=28, width=28)
    assert manifest["num_params"] == sum(p.numel() for p in net.parameters()) == 317_706
    assert [n for n, _ in manifest["params"]] == [n for n, _ in net.named_parameters()]
    for entry in manifest["experts"]:
        path = experts / entry["file"]
        assert sha256_file(path) == entry["sha256"]
        assert len(entry["test_accuracy"]) == 3  # after init and after each epoch
        with safe_open(str(path), framework="pt") as f:
            traj = f.get_tensor("trajectory")
            meta = json.loads(f.metadata()["haba_experts"])
        assert traj.shape == (3, 317_706) and traj.dtype == torch.float32
        assert meta["index"] == entry["index"] and meta["test_accuracy"] == entry["test_accuracy"]
        # snapshots are copies: every epoch moved the parameters (the reference's CPU bug made them equal)
        assert float((traj[1] - traj[0]).norm()) > 0 and float((traj[2] - traj[1]).norm()) > 0
    seeds = {e["expert_seed"] for e in manifest["experts"]}
    assert len(seeds) == 2
    # training helped: the final expert beats chance on the test subset
    assert manifest["mean_final_test_accuracy"] > 0.2


def test_expert_seed_and_shard_parsing() -> None:
    from habacli.experts import expert_seed, parse_shard

    assert expert_seed(0, 7) == expert_seed(0, 7)
    assert len({expert_seed(0, i) for i in range(50)} | {expert_seed(1, 0)}) == 51
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_resume_mid_expert_is_bit_identical(tmp_path: Path, experts: Path, fashion_mnist_dir: Path) -> None:
    """Interrupt expert 0 after its first epoch, run again: it resumes and ends byte-identical."""
    from habacli.experts import train_experts
    from habacli.experts.store import partial_file

    class Stop(Exception):
        pass

    def stop_after_first_epoch(event) -> None:
        if event.kind == "epoch" and event.done == 1:
            raise Stop

    out = tmp_path / "buf"
    kw = {"num": 1, "epochs": 2, "out": out, "subset": 256, "seed": 0, "device": "cpu", "data_dir": fashion_mnist_dir}
    with pytest.raises(Stop):
        train_experts(FMNIST, progress=stop_after_first_epoch, **kw)
    assert (out / partial_file(0)).is_file() and not (out / "expert_00000.safetensors").exists()
    result = train_experts(FMNIST, **kw)
    assert result.resumed == [0] and result.trained == [0]
    assert not (out / partial_file(0)).exists()
    want = json.loads((experts / "manifest.json").read_text())["experts"][0]
    got = result.manifest["experts"][0]
    assert got["sha256"] == want["sha256"] and got["test_accuracy"] == want["test_accuracy"]
    again = train_experts(FMNIST, **kw)  # finished experts are skipped
    assert again.skipped == [0] and again.trained == []


def test_an_epoch_shows_its_training_and_test_pass(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """Within an epoch the images done rise through training, then through the test pass, to train + test."""
    from habacli.experts import train_experts

    events = []
    train_experts(
        FMNIST,
        num=1,
        epochs=1,
        out=tmp_path / "buf",
        subset=2048,
        seed=0,
        device="cpu",
        data_dir=fashion_mnist_dir,
        progress=events.append,
    )
    inner = [e for e in events if e.description == "expert 0 epoch"]
    total = inner[0].total
    assert total == 2048 + 2048  # train subset + at most as many test images
    done = [e.done for e in inner]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    assert any("training" in e.message and 0 < e.done < 2048 for e in inner)
    assert any("test pass" in e.message and 2048 < e.done < total for e in inner)


def test_shards_and_merge_rebuild_the_same_manifest(tmp_path: Path, experts: Path, fashion_mnist_dir: Path) -> None:
    """Experts gathered from two shards merge into the manifest of a single run (deterministic)."""
    from habacli.experts import train_experts

    out = tmp_path / "merged"
    out.mkdir()
    shutil.copy(experts / "expert_00001.safetensors", out)
    # shard 1/2 owns expert 1 only: already there, so nothing is trained
    r = train_experts(
        FMNIST, num=2, epochs=2, out=out, subset=256, seed=0, device="cpu", data_dir=fashion_mnist_dir, shard="1/2"
    )
    assert r.trained == [] and r.skipped == [1] and r.manifest["num_experts"] == 1
    shutil.copy(experts / "expert_00000.safetensors", out)
    merged = train_experts(FMNIST, out=out, merge=True).manifest
    assert merged == json.loads((experts / "manifest.json").read_text())


def test_bad_buffers(tmp_path: Path, experts: Path, fashion_mnist_dir: Path) -> None:
    from habacli.experts import open_buffer, train_experts

    # a truncated file
    bad = tmp_path / "trunc"
    shutil.copytree(experts, bad)
    f = bad / "expert_00001.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(ExpertsError, match="expert_00001.safetensors: not a readable expert file"):
        train_experts(FMNIST, out=bad, merge=True)
    # an expert of another configuration in the folder: training refuses to mix
    with pytest.raises(ExpertsError, match="another configuration .seed"):
        train_experts(
            FMNIST, num=2, epochs=2, out=experts, subset=256, seed=1, device="cpu", data_dir=fashion_mnist_dir
        )
    # a manifest that lies about the dataset
    lie = tmp_path / "lie"
    shutil.copytree(experts, lie)
    m = json.loads((lie / "manifest.json").read_text())
    m["dataset"] = "mnist"
    (lie / "manifest.json").write_text(json.dumps(m))
    buf = open_buffer(lie, dataset="mnist", model="convnet", zca=False, min_epochs=1)
    with pytest.raises(ExpertsError, match="another configuration"):
        buf.rows(0, [0, 1])


def test_bad_options(tmp_path: Path) -> None:
    from habacli.errors import UnknownNameError
    from habacli.experts import train_experts

    with pytest.raises(ConfigError, match="--num and --epochs must be >= 1"):
        train_experts(FMNIST, num=0)
    with pytest.raises(ConfigError, match="--amp"):
        train_experts(FMNIST, amp="int8")
    with pytest.raises(ConfigError, match="--amp fp16 is not supported: haba has no loss scaling"):
        train_experts(FMNIST, amp="fp16")
    with pytest.raises(UnknownNameError, match="fashion_mnist"):
        train_experts("fashon_mnist")
    with pytest.raises(ExpertsError, match="no expert files to merge"):
        train_experts(FMNIST, merge=True, out=tmp_path / "empty")


def test_cli_one_line_error_and_json(experts: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "habacli", "experts", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    proc = run(FMNIST, "--shard", "2/2")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--shard 2/2" in lines[0], proc.stderr
    proc = run(FMNIST, "--merge", "--out", str(experts), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_experts"] == 2
