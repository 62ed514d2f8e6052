"""The artifact codec on real Fashion-MNIST: round trips, decoding, sampling, accounting, atomicity."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from habacli.artifact import codec
from habacli.artifact.codec import HabaArtifact, load_artifact, read_metadata, save_artifact
from habacli.errors import ConfigError
from habacli.networks.hallucinator import HallucinatorBank
from habacli.transforms.zca import ZCA

CLASSES = [f"class{i}" for i in range(10)]
SPEC = {"name": "fashion_mnist", "channels": 1, "height": 28, "width": 28, "num_classes": 10, "class_names": CLASSES}


@pytest.fixture(scope="module")
def fashion(fashion_mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    n = 3000
    with gzip.open(fashion_mnist_dir / "train-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(16 + n * 784), np.uint8, offset=16).reshape(n, 1, 28, 28)
    with gzip.open(fashion_mnist_dir / "train-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(8 + n), np.uint8, offset=8)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


@pytest.fixture(scope="module")
def zca(fashion) -> ZCA:
    return ZCA.fit(fashion[0])


def _class_major(y: torch.Tensor, per_class: int) -> torch.Tensor:
    return torch.cat([torch.nonzero(y == c)[:per_class, 0] for c in range(10)])


@pytest.fixture(scope="module")
def haba(fashion, zca) -> HabaArtifact:
    x, y = fashion
    idx = _class_major(y, 2)
    g = torch.Generator().manual_seed(0)
    bank = HallucinatorBank(4, 1, 1, 28, 28, generator=g)
    with torch.no_grad():
        bank.shift.normal_(0, 0.2, generator=g)
    return HabaArtifact.build(
        zca.apply(x[idx]),
        y[idx],
        bank,
        SPEC,
        (0.0,),
        (1.0,),
        zca,
        objective="mtt",
        objective_config={"syn_steps": 50, "nested": {"a": [1, 2]}},
        ipc=2,
        seed=3,
        learned_lr=0.0123,
        extra={"evaluation": {"convnet": {"mean": 0.7, "std": 0.01}}},
    )


@pytest.fixture(scope="module")
def plain(fashion) -> HabaArtifact:
    x, y = fashion
    idx = _class_major(y, 1)
    return HabaArtifact.build(
        (x[idx].float() / 255 - 0.2861) / 0.3530,
        y[idx],
        None,
        SPEC,
        (0.2861,),
        (0.3530,),
        objective="dm",
        objective_config={},
        ipc=1,
        seed=0,
    )


def test_round_trip(haba: HabaArtifact, tmp_path: Path) -> None:
    path = save_artifact(haba, tmp_path / "a.safetensors")
    back = load_artifact(path)
    for name, t in haba.tensors().items():
        assert torch.equal(back.tensors()[name], t), name
    assert back.to_document() == haba.to_document() == read_metadata(path)
    assert (back.objective, back.ipc, back.seed, back.learned_lr) == ("mtt", 2, 3, 0.0123)
    assert back.objective_config == {"syn_steps": 50, "nested": {"a": [1, 2]}}
    assert back.evaluation == {"convnet": {"mean": 0.7, "std": 0.01}}
    assert back.zca.rank == haba.zca.rank and back.zca.tail_scale == haba.zca.tail_scale
    assert torch.equal(back.decode()[0], haba.decode()[0])


def test_file_is_plain_safetensors_with_checksum(haba: HabaArtifact, tmp_path: Path) -> None:
    path = save_artifact(haba, tmp_path / "a.safetensors")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(haba.tensors())
    assert meta["format"] == "haba" and meta["format_version"] == "1.0"
    doc = json.loads(meta["haba"])
    import hashlib

    assert doc["payload_sha256"] == hashlib.sha256(data[8 + n :]).hexdigest()
    assert save_artifact(haba, tmp_path / "b.safetensors").read_bytes() == data  # deterministic
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_decode_follows_the_spec(haba: HabaArtifact, zca: ZCA) -> None:
    k, n = haba.num_hallucinators, len(haba.bases)
    assert (k, haba.num_images) == (4, 4 * n)
    images, labels = haba.decode(pixel=True)
    model, _ = haba.decode(pixel=False)
    assert images.shape == (4 * n, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(labels, haba.labels.repeat_interleave(4))
    bank = HallucinatorBank.from_params(haba.hallucinators)
    with torch.no_grad():
        ref = bank.all(haba.bases).transpose(0, 1).reshape(-1, 1, 28, 28)  # basis-major
    torch.testing.assert_close(model, ref)
    full = zca.invert(ref.double()).clamp(0, 1).float()
    assert (images - full).abs().max() <= haba.zca.error_bound + 1e-5
    sub, sub_y = haba.decode(indices=torch.tensor([0, 5, 4 * n - 1]))
    torch.testing.assert_close(sub, images[[0, 5, 4 * n - 1]])
    assert torch.equal(sub_y, labels[[0, 5, 4 * n - 1]])
    with pytest.raises(ConfigError):
        haba.decode(indices=torch.tensor([4 * n]))


def test_compact_zca_is_exact_enough_and_smaller(haba: HabaArtifact, zca: ZCA) -> None:
    assert 0 < haba.zca.rank < zca.dim
    assert haba.zca.error_bound <= haba.zca.tolerance == pytest.approx(0.5 / 255)
    full_u8 = torch.floor(zca.invert(haba.decode(pixel=False)[0].double()).clamp(0, 1) * 255 + 0.5)
    ours_u8 = torch.floor(haba.decode()[0].double() * 255 + 0.5)
    assert (full_u8 - ours_u8).abs().max() <= 1
    assert haba.storage["zca"] == zca.dim * (haba.zca.rank + 1) + haba.zca.rank


def test_sampled_expansion(haba: HabaArtifact) -> None:
    n, k = len(haba.bases), haba.num_hallucinators
    all_images, _ = haba.decode(pixel=False)
    per = all_images.reshape(n, k, -1)
    x, y = haba.sample_model_space(torch.Generator().manual_seed(1))
    assert x.shape == (n, 1, 28, 28) and torch.equal(y, haba.labels)
    dist = (per - x.reshape(n, 1, -1)).abs().amax(-1)  # [n, k]
    assert (dist.min(1).values < 1e-5).all()  # each basis appears under exactly one of its hallucinators
    x2, _ = haba.sample_model_space(torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)
    sampler = haba.model_space_sampler(torch.Generator().manual_seed(2))
    picks = torch.stack([(per - sampler(e)[0].reshape(n, 1, -1)).abs().amax(-1).argmin(1) for e in range(8)])
    assert len(picks.unique()) == k  # every hallucinator gets used across epochs


def test_plain_set_is_identity_plus_denormalisation(plain: HabaArtifact, fashion, tmp_path: Path) -> None:
    assert plain.num_hallucinators == 0 and plain.num_images == 10 and plain.zca is None
    images, labels = plain.decode()
    x, y = fashion
    idx = _class_major(y, 1)
    torch.testing.assert_close(images, x[idx].float() / 255, atol=1e-6, rtol=0)
    assert torch.equal(labels, y[idx])
    back = load_artifact(save_artifact(plain, tmp_path / "p.safetensors"))
    assert back.hallucinators == {} and back.to_document()["hallucinators"] == {"count": 0}
    x_s, _ = back.sample_model_space(torch.Generator())
    assert torch.equal(x_s, plain.bases)


def test_storage_accounting_matches_haba_paper() -> None:
    # haba.md 1.4: CIFAR-10 IPC 1, RGB bases + 5 hallucinators = 30 720 + 27 840 = 58 560 values.
    spec = {"name": "cifar10", "channels": 3, "height": 32, "width": 32, "num_classes": 10, "class_names": CLASSES}
    art = HabaArtifact.build(
        torch.randn(10, 3, 32, 32),
        torch.arange(10),
        HallucinatorBank(5, 3, 3, 32, 32),
        spec,
        (0.0,) * 3,
        (1.0,) * 3,
        objective="mtt",
        objective_config={},
        ipc=1,
        seed=0,
    )
    st = art.storage
    assert (st["bases"], st["hallucinators"], st["total"], st["baseline"]) == (30720, 27840, 58560, 30720)
    assert st["ratio"] == pytest.approx(58560 / 30720)
    single = HabaArtifact.build(
        torch.randn(30, 1, 32, 32),
        torch.arange(10).repeat_interleave(3),
        HallucinatorBank(5, 1, 3, 32, 32),
        spec,
        (0.0,) * 3,
        (1.0,) * 3,
        objective="mtt",
        objective_config={},
        ipc=1,
        seed=0,
    )
    assert single.storage["total"] == 30720 + 5 * 5514 and single.num_images == 150


def test_soft_labels_round_trip(fashion, tmp_path: Path) -> None:
    x, y = fashion
    soft = torch.randn(10, 10)
    art = HabaArtifact.build(
        x[:10].float() / 255,
        y[:10],
        {},
        SPEC,
        (0.0,),
        (1.0,),
        objective="dm",
        objective_config={},
        ipc=1,
        seed=0,
        soft_labels=soft,
    )
    back = load_artifact(save_artifact(art, tmp_path / "s.safetensors"))
    assert torch.equal(back.soft_labels, soft) and back.storage["soft_labels"] == 100


@pytest.mark.parametrize("problem", ["labels count", "label range", "nan", "channels", "json", "ipc"])
def test_build_rejects_inconsistent_input(problem: str) -> None:
    x, y, spec = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]), dict(SPEC)
    kw = dict(objective="dm", objective_config={}, ipc=1, seed=0)
    if problem == "labels count":
        y = y[:3]
    elif problem == "label range":
        y = torch.tensor([0, 1, 2, 10])
    elif problem == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif problem == "channels":
        x = torch.randn(4, 3, 28, 28)  # K = 0 needs the dataset's channels
    elif problem == "json":
        kw["objective_config"] = {"bad": object()}
    else:
        kw["ipc"] = 0
    with pytest.raises(ConfigError):
        HabaArtifact.build(x, y, None, spec, (0.0,), (1.0,), **kw)


def test_save_is_atomic(haba: HabaArtifact, tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "a.safetensors"
    save_artifact(haba, dest)
    before = dest.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(codec, "canonical_json", boom)
    with pytest.raises(RuntimeError):
        save_artifact(haba, dest)
    assert dest.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_read_metadata_reads_only_the_header(haba: HabaArtifact, tmp_path: Path, monkeypatch) -> None:
    path = save_artifact(haba, tmp_path / "a.safetensors")
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def read(self, size=-1):
            data = self.f.read(size)
            reads.append(len(data))
            return data

    from habacli.artifact import header as header_reader

    monkeypatch.setattr(header_reader, "open", lambda p, mode="r": Spy(real_open(p, mode)), raising=False)
    doc = read_metadata(path)
    assert doc["ipc"] == 2 and sum(reads) == 8 + n < path.stat().st_size


def test_info_cli_reads_header_without_torch(haba: HabaArtifact, tmp_path: Path, capsys) -> None:
    path = save_artifact(haba, tmp_path / "a.safetensors")
    code = (
        "import sys; from habacli.cli import main\n"
        "try:\n    main(['info', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in (
        "fashion_mnist",
        "mtt + HaBa",
        "4 x haba-style-translator",
        "80 decoded",
        "0.0123",
        "size by part",
        "bases 61.2 KB",
        "% of it",
        "rank",
    ):
        assert needle in out, needle

    from habacli.cli import main

    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["info", str(path), *args])
        assert not exc.value.code
        return capsys.readouterr().out

    meta = json.loads(run("--json"))
    assert meta["format_version"] == "1.0" and meta["haba"] == read_metadata(path)
    assert "(verified)" in run("--verify")


def test_info_help_renders(capsys) -> None:
    from habacli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["info", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--verify" in out and "ORG/NAME[@REV][/FILE]" in out


def test_atomic_path_gives_the_usual_mode_even_when_the_writer_recreates_the_file(tmp_path):
    """safetensors' save_file recreates its target 0600; the result must still follow the umask."""
    from safetensors.torch import save_file

    from habacli.runtime.atomic import atomic_path

    dest = tmp_path / "x.safetensors"
    with atomic_path(dest, suffix=".safetensors") as tmp:
        save_file({"a": torch.zeros(2)}, str(tmp))
    assert oct(dest.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
