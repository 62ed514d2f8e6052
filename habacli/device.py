"""Device selection and seeding, shared by every long-running command."""

from __future__ import annotations

import os
import random
import shutil

import torch

from habacli.allocator import tune_host_allocator
from habacli.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to a :class:`torch.device`; ``auto`` prefers CUDA.

    Also tunes the host allocator for long runs (:mod:`habacli.allocator`).
    """
    tune_host_allocator()
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA device is available (use --device cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for, but MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"invalid --device {name!r}: use auto, cpu, cuda or cuda:N") from e


def check_compile(device: torch.device) -> None:
    """``--compile`` on the CPU needs the C++ compiler inductor builds its kernels with: say so up front
    (one line) instead of failing inside the first compiled call."""
    if device.type != "cpu":
        return
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("clang++") is None:
        raise ConfigError(f"--compile on the CPU needs a C++ compiler ({cxx} or clang++ on PATH): install one "
                          "(e.g. apt-get install g++) or drop --compile")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (CPU and CUDA) and return a CPU generator seeded with ``seed``."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
