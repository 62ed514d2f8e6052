"""The benchmark scripts that feed the accuracy tables: the CIFAR-shaped Fashion-MNIST folder (read back by
haba's own CIFAR reader) and the table's row listing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from habacli.data import load_split
from habacli.errors import DataNotFoundError

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT / "benchmarks" / "make_cifar_fmnist.py"
TABLE = ROOT / "benchmarks" / "accuracy_table.py"
FMNIST_NAMES = (
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


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_cifar_fmnist_folder_loads_as_cifar10(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    n = 37  # not a multiple of 5: the 5 training batches differ in size
    proc = _script(MAKE, tmp_path / "c", "--limit", n, "--source", fashion_mnist_dir)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "c" / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))]
    )
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temp folder left

    fm_train = load_split("fashion_mnist", "train", data_dir=fashion_mnist_dir)
    fm_test = load_split("fashion_mnist", "test", data_dir=fashion_mnist_dir)
    for split, fm in (("train", fm_train), ("test", fm_test)):
        s = load_split("cifar10", split, data_dir=tmp_path / "c")
        assert tuple(s.images.shape) == (n, 3, 32, 32)
        assert s.labels.tolist() == fm.labels[:n].tolist()
        assert (s.images[:, 0, 2:30, 2:30] == fm.images[:n, 0]).all()  # the centre is the image itself
        assert (s.images[:, 1] == s.images[:, 0]).all() and (s.images[:, 2] == s.images[:, 0]).all()
        border = s.images.clone()
        border[:, :, 2:30, 2:30] = 0
        assert int(border.sum()) == 0  # 2 px of zeros on each side

    import pickle  # the test may unpickle the file it just wrote (haba never does)

    meta = pickle.loads((folder / "batches.meta").read_bytes())
    assert meta["label_names"] == list(FMNIST_NAMES)


def test_cifar_fmnist_folder_loads_in_torchvision(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """The official DC/DSA/DM, MTT and HaBa code read CIFAR-10 through torchvision: the folder must load there
    unchanged (only the MD5 check, which guards the real CIFAR-10's bytes, is switched off)."""
    torchvision = pytest.importorskip("torchvision")
    assert _script(MAKE, tmp_path, "--limit", 10, "--source", fashion_mnist_dir).returncode == 0
    cls = torchvision.datasets.CIFAR10
    saved = (cls.train_list, cls.test_list, cls.meta)
    cls.train_list = [[n, None] for n, _ in saved[0]]
    cls.test_list = [[n, None] for n, _ in saved[1]]
    cls.meta = {**saved[2], "md5": None}
    try:
        train = cls(str(tmp_path), train=True, download=False)
        test = cls(str(tmp_path), train=False, download=False)
    finally:
        cls.train_list, cls.test_list, cls.meta = saved
    fm = load_split("fashion_mnist", "train", data_dir=fashion_mnist_dir)
    assert len(train) == len(test) == 10 and train.classes == list(FMNIST_NAMES)
    assert train.targets == fm.labels[:10].tolist()
    assert (train.data[:, 2:30, 2:30, 0] == fm.images[:10, 0].numpy()).all()  # HWC in torchvision


def test_cifar_fmnist_is_deterministic_and_refuses_to_overwrite(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    for name in ("a", "b"):
        assert _script(MAKE, tmp_path / name, "--limit", 12, "--source", fashion_mnist_dir).returncode == 0
    a, b = tmp_path / "a" / "cifar-10-batches-py", tmp_path / "b" / "cifar-10-batches-py"
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    before = (a / "test_batch").read_bytes()
    again = _script(MAKE, tmp_path / "a", "--limit", 5, "--source", fashion_mnist_dir)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert (a / "test_batch").read_bytes() == before
    assert _script(MAKE, tmp_path / "a", "--limit", 5, "--source", fashion_mnist_dir, "--force").returncode == 0
    assert len(load_split("cifar10", "test", data_dir=tmp_path / "a")) == 5


def test_cifar_fmnist_missing_source_is_one_line(tmp_path: Path) -> None:
    proc = _script(MAKE, tmp_path / "c", "--source", tmp_path / "nowhere")
    assert proc.returncode != 0 and "train-images-idx3-ubyte" in proc.stderr
    assert not (tmp_path / "c" / "cifar-10-batches-py").exists()
    with pytest.raises(DataNotFoundError):
        load_split("cifar10", "train", data_dir=tmp_path / "c")


def test_accuracy_table_lists_rows_and_commands(tmp_path: Path) -> None:
    proc = _script(TABLE, "--list", "--out", tmp_path / "acc")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert not (tmp_path / "acc").exists()  # --list runs nothing
    rows = [line.split(":")[0][2:] for line in out.splitlines() if line.startswith("# ") and ":" in line]
    for name in ("random-ipc1", "dm-ipc1", "haba-dm-ipc1", "random-ipc10", "dm-ipc10", "haba-dm-ipc10"):
        assert name in rows  # the names of earlier results stay valid
    for name in (
        "haba-dm-ipc1-matched",
        "haba-dm-ipc10-pixel",
        "haba-dsa-ipc10-fullres",
        "cifar-haba-dm-ipc10-official-init",
        "dsa-ipc10-lowres",
        "cifar-random-ipc10",
        "cifar-haba-dsa-ipc1",
        "xarch-dm-ipc10",
        "xarch-haba-mtt-ipc10",
        "mtt-ipc1",
        "haba-mtt-ipc1-matched-channel",
    ):
        assert name in rows
    assert "habacli experts fashion_mnist --num 1 --epochs 3" in out  # the MTT rows' expert, made when missing
    amp = _script(TABLE, "--list", "--out", tmp_path / "acc", "--only", "mtt-ipc1", "--amp", "bf16")
    assert "experts fashion_mnist --num 1 --epochs 3 --amp bf16" in amp.stdout  # the expert under the table's --amp
    mtt = [line for line in out.splitlines() if "distill fashion_mnist --ipc 1 --baseline mtt" in line]
    assert len(mtt) == 3 and all("--iterations 200" in m and "max_start_epoch=2" in m for m in mtt)
    mtt10 = [line for line in out.splitlines() if "distill fashion_mnist --ipc 10 --baseline mtt" in line]  # and xarch
    assert len(mtt10) == 4 and all("--iterations 100" in m and "max_start_epoch=2" in m for m in mtt10)
    dsa10 = [line for line in out.splitlines() if "distill fashion_mnist --ipc 10 --baseline dsa" in line]
    assert dsa10 and all("--iterations 10 " in m for m in dsa10)  # 10 of the paper's 1,000 at IPC 10
    assert len(rows) == len(set(rows))
    assert "make_cifar_fmnist.py" in out
    assert "evaluate cifar10 --baseline random --ipc 1" in out and "--zca" in out
    assert "--models convnet,resnet18,vgg11,alexnet" in out

    only = _script(TABLE, "--list", "--out", tmp_path / "acc", "--only", "dsa-ipc1", "--epochs", "7", "--threads", "2")
    lines = [line for line in only.stdout.splitlines() if not line.startswith("#") and line]
    assert len(lines) == 2 and all(line.startswith("OMP_NUM_THREADS=2 python -m habacli ") for line in lines)
    assert "--iterations 100 " in lines[0]  # DSA at IPC 1: 100 of the paper's 1,000
    assert "--epochs 7" in lines[1] and "--split" not in lines[1]
    val = _script(TABLE, "--list", "--out", tmp_path / "acc", "--only", "random-ipc1,dm-ipc1", "--split", "val")
    evals = [line for line in val.stdout.splitlines() if " evaluate " in line]
    assert len(evals) == 2 and all("--split val" in line for line in evals)
    bad = _script(TABLE, "--list", "--only", "nope")
    assert bad.returncode != 0 and "unknown row" in bad.stderr


def test_accuracy_table_results_are_merged_and_reported(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("accuracy_table", TABLE)
    assert spec and spec.loader
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    path = tmp_path / "results.json"
    row = {
        "method": "random real images",
        "ipc": 1,
        "dataset": "fashion_mnist",
        "evaluate_s": 60.0,
        "evaluation": {"models": {"convnet": {"mean": 0.5512, "std": 0.031}}},
        "commands": ["python -m habacli evaluate fashion_mnist --baseline random --ipc 1"],
    }
    table._record(path, "random-ipc1", row)
    # a second table process that read the file before the first one wrote: its row joins, nothing is lost
    merged = table._record(path, "random-ipc10", {**row, "ipc": 10})
    assert set(merged) == {"random-ipc1", "random-ipc10"}
    assert set(json.loads(path.read_text())) == {"random-ipc1", "random-ipc10"}
    report = _script(TABLE, "--results", path, "--report", "--out", tmp_path / "never")
    assert report.returncode == 0, report.stderr
    assert "| random-ipc1 | random real images | 1 | 7,840 (real images) | 55.1 ± 3.1 |" in report.stdout
    assert "# random-ipc10" in report.stdout and not (tmp_path / "never").exists()  # --report runs nothing
