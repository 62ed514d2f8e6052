"""Real data: the registry, Fashion-MNIST from Debian's IDX files, haba's cache, RealData, `haba datasets`."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from habacli.data import RealData, cache_dir, get_spec, list_datasets, load_split
from habacli.data.real import stratified_val_mask
from habacli.data.spec import DatasetSpec
from habacli.errors import ConfigError, DataNotFoundError, UnknownNameError

FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@pytest.fixture(scope="module")
def fm_train(fashion_mnist_dir):
    return load_split("fashion_mnist", "train")


@pytest.fixture(scope="module")
def fm_test(fashion_mnist_dir):
    return load_split("fashion_mnist", "test")


def test_registry_specs():
    assert set(list_datasets()) >= {
        "mnist",
        "fashion_mnist",
        "svhn",
        "cifar10",
        "cifar100",
        "tinyimagenet",
        "imagenette",
        "imagewoof",
    }
    fm = get_spec("fashion_mnist")
    assert fm.class_names == FASHION_NAMES
    assert (fm.channels, fm.height, fm.width, fm.mean, fm.std) == (1, 28, 28, (0.2861,), (0.3530,))
    c10, c100 = get_spec("cifar10"), get_spec("cifar100")
    assert c100.mean == c10.mean == (0.4914, 0.4822, 0.4465) and c100.std == c10.std  # MTT's convention
    assert c100.num_classes == len(c100.class_names) == 100 and c100.class_names[:2] == ("apple", "aquarium_fish")
    assert not get_spec("mnist").flip and not get_spec("svhn").flip and get_spec("cifar10").flip
    assert get_spec("imagenette").imagenet_classes == (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)
    assert get_spec("imagewoof").imagenet_classes == (193, 182, 258, 162, 155, 167, 159, 273, 207, 229)
    assert (get_spec("tinyimagenet").height, get_spec("imagewoof").height) == (64, 128)
    assert get_spec("cifar10", image_size=16).height == 16
    assert DatasetSpec.from_dict(json.loads(json.dumps(c100.to_dict()))) == c100


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'fashion_mnist'"):
        get_spec("fashon_mnist")
    with pytest.raises(ConfigError):
        load_split("fashion_mnist", "validation")


def test_fashion_mnist_real_files(fm_train, fm_test):
    assert fm_train.images.shape == (60000, 1, 28, 28) and fm_train.images.dtype == torch.uint8
    assert fm_test.images.shape == (10000, 1, 28, 28)
    assert fm_train.labels.dtype == torch.int64
    assert fm_train.class_counts() == [6000] * 10 and fm_test.class_counts() == [1000] * 10
    assert fm_train.spec.class_names == FASHION_NAMES
    assert fm_train.source == "/usr/share/datasets/fashion-mnist"
    x = fm_train.images.double() / 255  # the published statistics come out of the decoded pixels
    assert abs(x.mean().item() - 0.2861) < 1e-3 and abs(x.std().item() - 0.3530) < 1e-3


def test_cached_reload_is_identical_and_fast(fm_train, monkeypatch):
    """The second load comes from the cache: nothing is decoded or written again (checked by what runs,
    not by the wall clock, which a busy machine makes meaningless)."""
    import habacli.data.split as split_mod

    entries = list((cache_dir() / "data" / "fashion_mnist").glob("train-*.safetensors"))
    assert entries and str(cache_dir()).startswith(os.environ["HABA_CACHE"])

    def rebuilt(*_a, **_k):
        raise AssertionError("the cached split was decoded and stored again")

    monkeypatch.setattr(split_mod, "_to_cache", rebuilt)
    messages = []
    again = load_split("fashion_mnist", "train", progress=lambda *a: messages.append(a))
    assert not any("decoding" in str(m) for m in messages), messages
    assert torch.equal(again.images, fm_train.images) and torch.equal(again.labels, fm_train.labels)
    assert again.spec == fm_train.spec


def test_torchvision_raw_layout_and_cache_key(tmp_path, fashion_mnist_dir, fm_test):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # uncompressed, torchvision style
        (raw / name).write_bytes(gzip.decompress((fashion_mnist_dir / f"{name}.gz").read_bytes()))
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        os.symlink(fashion_mnist_dir / name, raw / name)
    split = load_split("fashion_mnist", "test", data_dir=tmp_path)
    assert torch.equal(split.images, fm_test.images) and torch.equal(split.labels, fm_test.labels)
    n_entries = len(list((cache_dir() / "data" / "fashion_mnist").glob("test-*")))
    st = (raw / "t10k-labels-idx1-ubyte").stat()
    os.utime(raw / "t10k-labels-idx1-ubyte", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed source
    load_split("fashion_mnist", "test", data_dir=tmp_path)
    assert len(list((cache_dir() / "data" / "fashion_mnist").glob("test-*"))) == n_entries + 1


def test_corrupt_idx_and_cache_entry(tmp_path, fashion_mnist_dir, fm_test):
    for name in os.listdir(fashion_mnist_dir):
        shutil.copy(fashion_mnist_dir / name, tmp_path / name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x08\x01\x00\x00\x27\x10" + b"\x01" * 5)
    )
    with pytest.raises(DataNotFoundError, match="truncated or corrupt"):
        load_split("fashion_mnist", "test", data_dir=tmp_path)
    # a damaged cache file is rebuilt, never fatal
    for entry in (cache_dir() / "data" / "fashion_mnist").glob("test-*"):
        # replaced, not rewritten in place: live tensors of this session may be memory-mapped from it
        (entry.parent / "garbage.tmp").write_bytes(b"garbage")
        os.replace(entry.parent / "garbage.tmp", entry)
    again = load_split("fashion_mnist", "test")
    assert torch.equal(again.images, fm_test.images)


def test_resize_on_load(fashion_mnist_dir):
    s = load_split("fashion_mnist", "test", image_size=32)
    assert s.images.shape == (10000, 1, 32, 32) and s.spec.height == s.spec.width == 32


def test_missing_data_is_one_line(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_split("cifar10", "train", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "cifar-10-batches-bin" in msg and "uoft-cs/cifar10" in msg


# --- RealData ------------------------------------------------------------------------------------


def test_sampler_reproducible_and_class_pure(fm_train):
    real = RealData.build(fm_train, device="cpu")
    a = real.sample_class(3, 16, torch.Generator().manual_seed(7))
    b = real.sample_class(3, 16, torch.Generator().manual_seed(7))
    c = real.sample_class(3, 16, torch.Generator().manual_seed(8))
    assert a.shape == (16, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((real.labels[real.class_indices(3)] == 3).all()) and real.class_indices(3).numel() == 6000
    # sampled images are real class-3 images, normalised with Fashion-MNIST's mean/std
    pix = (a * 0.3530 + 0.2861) * 255
    assert (pix - pix.round()).abs().max() < 1e-3
    pool = fm_train.images[fm_train.labels == 3].reshape(6000, -1)
    found = (pool[None] == pix.round().to(torch.uint8).reshape(16, 1, -1)).all(-1).any(-1)
    assert bool(found.all())
    x, y = real.all_model()
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01 and torch.equal(y, fm_train.labels)


def test_init_bases_class_major(fm_train):
    real = RealData.build(fm_train, device="cpu")
    x, y = real.init_bases(2, torch.Generator().manual_seed(0))
    assert x.shape == (20, 1, 28, 28) and y.tolist() == [c for c in range(10) for _ in range(2)]
    x1, _ = real.init_bases(2, torch.Generator().manual_seed(0), single_channel=True)
    assert torch.equal(x, x1)  # already one channel


def test_val_split_seeded_stratified_disjoint(fm_train):
    mask = stratified_val_mask(fm_train.labels, 10, 0.1, seed=3)
    assert torch.equal(mask, stratified_val_mask(fm_train.labels, 10, 0.1, seed=3))
    assert not torch.equal(mask, stratified_val_mask(fm_train.labels, 10, 0.1, seed=4))
    assert torch.bincount(fm_train.labels[mask], minlength=10).tolist() == [600] * 10
    real = RealData.build(fm_train, device="cpu", val_fraction=0.1, seed=3)
    assert len(real) == 54000 and len(real.val) == 6000 and real.val.val is None
    assert real.class_counts == [5400] * 10 and real.val.class_counts == [600] * 10
    xv, yv = real.val.all_model()
    assert torch.equal(xv, real.to_model(fm_train.images[mask])) and torch.equal(yv, fm_train.labels[mask])
    xt, _ = real.all_model()
    assert torch.equal(xt, real.to_model(fm_train.images[~mask]))  # train = exactly the complement
    with pytest.raises(ConfigError):
        RealData.build(fm_train, val_fraction=1.0)


def test_tiny_classes_never_emptied():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    mask = stratified_val_mask(labels, 3, 0.5, seed=0)
    assert torch.bincount(labels[mask], minlength=3).tolist() == [0, 1, 2]  # a singleton class stays in train


# --- CLI -----------------------------------------------------------------------------------------


def _haba(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "habacli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )


def test_cli_datasets_lists_and_json(fashion_mnist_dir):
    r = _haba("datasets")
    assert r.returncode == 0, r.stderr
    assert "fashion_mnist" in r.stdout and "zalando-datasets/fashion_mnist" in r.stdout
    assert "/usr/share/datasets/fashion-mnist" in r.stdout
    rows = json.loads(_haba("datasets", "--json").stdout)
    fm = next(d for d in rows if d["name"] == "fashion_mnist")
    assert fm["available"] and fm["local"] == str(fashion_mnist_dir) and fm["num_classes"] == 10
    assert not next(d for d in rows if d["name"] == "cifar10")["local"]


def test_cli_errors_are_one_line(tmp_path):
    r = _haba("datasets", "fashon_mnist")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "did you mean 'fashion_mnist'" in r.stderr
    r = _haba("datasets", "cifar10", "--load", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cifar-10-batches-py" in r.stderr and str(tmp_path) in r.stderr


def test_cli_does_not_import_torch_for_listing():
    code = (
        "import sys; from habacli.cli import main\n"
        "try: main(['datasets', '--json'])\n"
        "except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'haba datasets imported torch'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_get_spec_fast_and_pathlike(fashion_mnist_dir):
    assert get_spec("fashion-mnist").name == "fashion_mnist"
    assert load_split("fashion_mnist", "test", data_dir=Path(fashion_mnist_dir)).spec.name == "fashion_mnist"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_realdata_on_cuda_matches_cpu(fm_test):
    cpu = RealData.build(fm_test, device="cpu", val_fraction=0.1, seed=1)
    gpu = RealData.build(fm_test, device="cuda", val_fraction=0.1, seed=1)
    a = cpu.sample_class(4, 32, torch.Generator().manual_seed(5))
    b = gpu.sample_class(4, 32, torch.Generator().manual_seed(5))
    assert b.device.type == "cuda" and torch.allclose(a, b.cpu())
    assert torch.equal(cpu.val.labels, gpu.val.labels.cpu())
