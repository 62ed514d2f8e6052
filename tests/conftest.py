"""Test isolation: haba's cache, the HF cache and tokens point at a per-session temp dir.

Environment variables are set at import time because huggingface_hub and datasets read
them when they are first imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="haba-tests-"))
os.environ["HABA_CACHE"] = str(_SESSION_DIR / "haba-cache")
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf-home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HABA_DEBUG"):
    os.environ.pop(_var, None)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST IDX files from Debian's dataset-fashion-mnist package."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (.ci/run installs it)")
    return FASHION_MNIST_DIR


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A temp folder shared by the whole test session (for expensive shared outputs)."""
    return _SESSION_DIR
