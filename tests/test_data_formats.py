"""Loaders for the other layouts: imagefolder (scikit-learn digits as PNGs), the datasets library (local
parquet, offline), CIFAR's binary and python batches (restricted unpickling), SVHN .mat, Tiny-ImageNet's
raw val folder, the MTT ImageNet subsets, and ZCA fitting + RealData in ZCA space."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from habacli.data import RealData, fit_zca, get_spec, load_split
from habacli.data.cifar import read_python_batch
from habacli.data.real import stratified_val_mask
from habacli.errors import ConfigError, DataNotFoundError


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * 255 / 16).round().astype(np.uint8), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("digits")
    for i, (im, y) in enumerate(zip(*digits)):
        (root / f"digit_{y}").mkdir(exist_ok=True)
        Image.fromarray(im, "L").save(root / f"digit_{y}" / f"{i:04d}.png", compress_level=1)
    return root


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(x.shape[0], -1).tolist()
    return torch.tensor(sorted(rows))


def test_imagefolder_digits(digits_folder, digits):
    images, labels = digits
    name = f"imagefolder:{digits_folder}"
    train, test = load_split(name, "train"), load_split(name, "test")
    spec = train.spec
    assert spec.class_names == tuple(f"digit_{i}" for i in range(10))
    assert (spec.channels, spec.height, spec.width) == (1, 8, 8) and test.spec == spec
    assert len(train) + len(test) == 1797
    counts = np.bincount(labels, minlength=10)
    assert test.class_counts() == [round(c * 0.2) for c in counts]  # stratified 20% hold-out
    both = torch.cat([train.images, test.images])  # lossless: the same pixels as scikit-learn's
    assert torch.equal(_sorted_rows(both), _sorted_rows(torch.from_numpy(images)[:, None]))
    x = train.images.double() / 255
    assert abs(spec.mean[0] - x.mean().item()) < 1e-3 and abs(spec.std[0] - x.std().item()) < 1e-3
    assert torch.equal(load_split(name, "train").images, train.images)
    big = load_split(name, "train", image_size=16, channels=3)
    assert big.images.shape == (len(train), 3, 16, 16) and get_spec(name, image_size=16).height == 16


def test_imagefolder_split_dirs_and_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(20, 40, size=2)
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.jpg")
    name = f"imagefolder:{tmp_path}"
    with pytest.raises(ConfigError, match="image-size"):
        load_split(name, "train")
    train = load_split(name, "train", image_size=16)
    test = load_split(name, "test", image_size=16)
    assert train.images.shape == (6, 3, 16, 16) and test.images.shape == (4, 3, 16, 16)
    assert train.spec.class_names == ("cat", "dog") and test.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(DataNotFoundError, match="no such folder"):
        load_split(f"imagefolder:{tmp_path / 'nope'}", "train")


def test_datasets_library_local_parquet_offline(tmp_path, digits, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    images, labels = digits
    feats = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[f"d{i}" for i in range(10)])}
    )
    (tmp_path / "data").mkdir()
    for split, sl in (("train", slice(0, 1500)), ("test", slice(1500, None))):
        ds = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(i, "L") for i in images[sl]], "label": labels[sl].tolist()}, features=feats
        )
        ds.to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    train, test = load_split(f"hf:{tmp_path}", "train"), load_split(f"hf:{tmp_path}", "test")
    assert torch.equal(train.images, torch.from_numpy(images[:1500])[:, None])
    assert torch.equal(test.labels, torch.from_numpy(labels[1500:]))
    assert train.spec.class_names == tuple(f"d{i}" for i in range(10)) and train.spec.channels == 1
    # a dataset without a test split gets the stratified hold-out
    only = tmp_path / "only_train"
    only.mkdir()
    (tmp_path / "data" / "train-00000-of-00001.parquet").rename(only / "train.parquet")
    t2, h2 = load_split(f"hf:{only}", "train"), load_split(f"hf:{only}", "test")
    assert len(t2) + len(h2) == 1500 and 0.15 < len(h2) / 1500 < 0.25


def test_hub_failure_is_one_line(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataNotFoundError) as e:
        load_split("hf:haba-test/does-not-exist", "train")
    assert "\n" not in str(e.value) and "haba-test/does-not-exist" in str(e.value)


def test_unreachable_hub_fails_fast_and_offline(monkeypatch):
    """A Hub endpoint that refuses connections: datasets runs offline (cache only) at once instead
    of retrying for ~25 s, the error says so in one line, and the offline switch is put back."""
    import socket
    import time

    import datasets
    from huggingface_hub import constants

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    t0 = time.perf_counter()
    with pytest.raises(DataNotFoundError) as e:
        load_split("hf:haba-test/not-cached-anywhere", "train")
    assert time.perf_counter() - t0 < 60  # no retry loop with backoff (minutes); generous for a busy machine
    msg = str(e.value)
    assert "\n" not in msg and f"127.0.0.1:{port} cannot be reached" in msg
    assert constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False


def test_hub_probe_is_bounded_even_when_the_resolver_hangs(monkeypatch):
    """The reachability probe gives up within its timeout when name resolution hangs, and says yes
    to a port that listens."""
    import socket
    import time

    from habacli.data import hf as hub

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert hub._reachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(30) or real(*a, **k))
    t0 = time.perf_counter()
    assert not hub._reachable("https://huggingface.co", timeout=0.5)
    assert time.perf_counter() - t0 < 15  # gave up on its own timeout, not after the 30 s lookup


# --- CIFAR ---------------------------------------------------------------------------------------


def _fake_cifar(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def test_cifar10_binary_and_python_batches_agree(tmp_path):
    rng = np.random.default_rng(1)
    batches = {name: _fake_cifar(rng, 20) for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    b, p = tmp_path / "bin" / "cifar-10-batches-bin", tmp_path / "py" / "cifar-10-batches-py"
    b.mkdir(parents=True)
    p.mkdir(parents=True)
    for name, (x, y) in batches.items():
        (b / f"{name}.bin").write_bytes(np.concatenate([y.astype(np.uint8)[:, None], x], 1).tobytes())
        batch = {
            b"batch_label": name.encode(),
            b"labels": y.tolist(),
            b"data": x,
            b"filenames": [f"{i}.png".encode() for i in range(len(y))],
        }
        (p / name).write_bytes(pickle.dumps(batch, protocol=2))  # what the official archive holds
    from_bin = load_split("cifar10", "train", data_dir=tmp_path / "bin")
    from_py = load_split("cifar10", "train", data_dir=tmp_path / "py")
    want = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal(from_bin.images, torch.from_numpy(want)) and torch.equal(from_py.images, from_bin.images)
    assert torch.equal(from_py.labels, from_bin.labels) and len(from_bin) == 100
    test = load_split("cifar10", "test", data_dir=tmp_path / "py" / "cifar-10-batches-py")  # the folder itself
    assert torch.equal(test.labels, torch.from_numpy(batches["test_batch"][1]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/haba-pwned",))


def test_cifar_python_batch_refuses_code(tmp_path):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataNotFoundError, match="refusing to load os.system|refusing to load posix.system"):
        read_python_batch(evil)
    assert not Path("/tmp/haba-pwned").exists()
    ok = tmp_path / "ok"
    ok.write_bytes(pickle.dumps({b"labels": [1, 2], b"data": np.arange(6, dtype=np.uint8).reshape(2, 3)}))
    d = read_python_batch(ok)
    assert d["labels"] == [1, 2] and d["data"].to_numpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    (tmp_path / "bad").write_bytes(b"not a pickle")
    with pytest.raises(DataNotFoundError, match="not a readable"):
        read_python_batch(tmp_path / "bad")


def test_cifar100_binary(tmp_path):
    rng = np.random.default_rng(2)
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    for name in ("train", "test"):
        x = rng.integers(0, 256, (30, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, 30).astype(np.uint8)
        (d / f"{name}.bin").write_bytes(np.concatenate([fine[:, None] // 5, fine[:, None], x], 1).tobytes())
    s = load_split("cifar100", "test", data_dir=tmp_path)
    assert s.labels.tolist() == fine.tolist() and s.spec.num_classes == 100


def test_svhn_mat(tmp_path):
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(3)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        sio.savemat(
            tmp_path / name,
            {
                "X": rng.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8),
                "y": np.array([[10], [1], [2]] * 4, dtype=np.uint8),
            },
        )
    s = load_split("svhn", "train", data_dir=tmp_path)
    x = sio.loadmat(tmp_path / "train_32x32.mat")["X"]
    assert s.images.shape == (12, 3, 32, 32) and s.labels.tolist()[:3] == [0, 1, 2]  # 10 means digit 0
    assert torch.equal(s.images[5, 1], torch.from_numpy(x[:, :, 1, 5]))


# --- folder layouts ------------------------------------------------------------------------------


def test_tinyimagenet_raw_val_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(200)]
    lines = []
    for i, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), i, np.uint8)).save(root / "train" / w / "images" / f"{w}_0.png")
    (root / "val" / "images").mkdir(parents=True)
    for i, w in enumerate(reversed(wnids)):
        Image.fromarray(np.full((64, 64, 3), 199 - i, np.uint8)).save(root / "val" / "images" / f"val_{i}.png")
        lines.append(f"val_{i}.png\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines))
    train, test = (
        load_split("tinyimagenet", "train", data_dir=tmp_path),
        load_split("tinyimagenet", "test", data_dir=tmp_path),
    )
    assert train.spec.class_names == tuple(sorted(wnids)) == test.spec.class_names
    assert len(train) == len(test) == 200
    # pixel value == class index in both splits: labels follow the folders / the annotations
    assert torch.equal(train.images[:, 0, 0, 0].long(), train.labels)
    assert torch.equal(test.images[:, 0, 0, 0].long(), test.labels)
    assert get_spec("tinyimagenet", data_dir=tmp_path).class_names[0] == wnids[0]
    from habacli.data import dataset_status

    assert dataset_status(data_dir=tmp_path, pattern="tinyimagenet")[0]["local"] == str(tmp_path)


def test_imagewoof_from_imagenet_folders(tmp_path):
    spec = get_spec("imagewoof")
    for split in ("train", "val"):
        for k, w in enumerate(spec.class_ids):
            (tmp_path / split / w).mkdir(parents=True)
            Image.fromarray(np.full((90, 150, 3), k * 20, np.uint8)).save(tmp_path / split / w / "a.JPEG", quality=95)
        (tmp_path / split / "n99999999").mkdir()  # other ImageNet classes are ignored
        Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / split / "n99999999" / "x.JPEG")
    s = load_split("imagewoof", "train", data_dir=tmp_path)
    assert s.images.shape == (10, 3, 128, 128)  # squashed like MTT's Resize((128, 128))
    assert s.labels.tolist() == list(range(10))  # MTT order: Australian terrier (193) first
    assert (s.images.float().mean((1, 2, 3)) - torch.arange(10) * 20).abs().max() < 2
    assert s.spec.class_names[0] == "Australian terrier"
    assert s.spec.extra["origin"] == "local:imagenet_subset"  # recorded: ImageNet folders, not the Hub copy


# --- ZCA -----------------------------------------------------------------------------------------


def test_fit_zca_cached_and_realdata_model_space(digits_folder):
    name = f"imagefolder:{digits_folder}"
    zca = fit_zca(name, eps=0.1)
    again = fit_zca(name, eps=0.1)
    assert torch.equal(zca.eigenvectors, again.eigenvectors) and zca.eps == 0.1
    split = load_split(name, "train")
    real = RealData.build(split, device="cpu", zca=zca, val_fraction=0.1, seed=0)
    assert real.normalize_mean == (0.0,) and real.normalize_std == (1.0,)
    mask = stratified_val_mask(split.labels, 10, 0.1, 0)
    x, _ = real.all_model()
    xv, _ = real.val.all_model()
    assert torch.allclose(x, zca.apply(split.images[~mask].float() / 255), atol=1e-5)  # the precomputed copy
    assert torch.allclose(xv, zca.apply(split.images[mask].float() / 255), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    b = real.sample_class(2, 3, g)
    pix = zca.invert(b)  # model space -> pixels in [0, 1] that are exact grey levels
    assert (pix * 255 - (pix * 255).round()).abs().max() < 1e-2
    assert fit_zca(name, eps=0.2).eps == 0.2


def test_cli_describes_imagefolder(digits_folder):
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "habacli", "datasets", f"imagefolder:{digits_folder}", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["class_names"][0] == "digit_0" and d["channels"] == 1 and d["height"] == 8
