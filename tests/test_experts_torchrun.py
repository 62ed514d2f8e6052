"""`haba experts` under torchrun (2 CPU processes, gloo) gives the same buffer as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FMNIST = "fashion_mnist"


@pytest.mark.slow  # three Python + torch start-ups: ~15 s idle, minutes on a busy machine
def test_two_ranks_match_one_process(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    # the same thread count in every process: floating-point reductions may depend on it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        "experts",
        FMNIST,
        "--num-experts",
        "2",  # torchrun would take --num for its --numa-binding
        "--epochs",
        "1",
        "--subset",
        "128",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--data-dir",
        str(fashion_mnist_dir),
        "--quiet",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "habacli", *args, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "habacli",
            *args,
            "--out",
            str(tmp_path / "two"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads(two.stdout)  # rank 0 only prints
    assert summary["world_size"] == 2 and summary["trained"] == [0]  # rank 0 trained expert 0 only
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m1["num_experts"] == 2
    assert m2 == m1  # accuracies, files, SHA-256s: byte-identical experts
    assert not list((tmp_path / "two").glob(".expert_*"))
