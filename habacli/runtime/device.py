"""Device selection and seeding, shared by every long-running command."""

from __future__ import annotations

import logging
import os
import random
import shutil
import warnings
from functools import lru_cache

import torch

from habacli.errors import ConfigError
from habacli.runtime.allocator import tune_host_allocator
from habacli.runtime.amp import AUTO, FP16_REFUSED  # noqa: F401 - FP16_REFUSED re-exported; its home is runtime/amp.py


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to a :class:`torch.device`; ``auto`` prefers CUDA.

    Also tunes the host allocator for long runs (:mod:`habacli.runtime.allocator`).
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
    _import_cpp_extension_quietly()
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("clang++") is None:
        raise ConfigError(
            f"--compile on the CPU needs a C++ compiler ({cxx} or clang++ on PATH): install one "
            "(e.g. apt-get install g++) or drop --compile"
        )


def _import_cpp_extension_quietly() -> None:
    """Import ``torch.utils.cpp_extension`` (inductor does at the first CPU compile) with its logger silenced.

    On a machine with a CUDA toolkit but no GPU it logs ``No CUDA runtime is found, using CUDA_HOME=...`` once,
    at import; that is about building CUDA extensions, which a CPU compile never does."""
    log = logging.getLogger("torch.utils.cpp_extension")
    previous = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        log.setLevel(previous)


# CPU flags (Linux /proc/cpuinfo names) that mean a dtype's matmuls and convolutions run natively.
_NATIVE_FLAGS: dict[str, tuple[str, ...]] = {
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),  # x86 AVX-512 BF16 / AMX; aarch64 FEAT_BF16
    "fp16": ("avx512_fp16", "amx_fp16", "fphp"),  # x86 AVX512-FP16 / AMX-FP16; aarch64 half-precision
}


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str] | None:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags) or None


def cpu_runs_natively(amp: str, flags: frozenset[str] | None = None) -> bool | None:
    """Whether this CPU computes ``amp`` (``bf16`` or ``fp16``) in hardware; None when it cannot be told
    (no readable ``/proc/cpuinfo``). Without it, oneDNN emulates the dtype, far slower than fp32."""
    flags = _cpu_flags() if flags is None else flags
    if flags is None or amp not in _NATIVE_FLAGS:
        return None
    return any(f in flags for f in _NATIVE_FLAGS[amp])


def warn_if_emulated(device: torch.device | str, amp: str | None) -> None:
    """Warn (one line) when ``--amp`` asks the CPU for a precision it only emulates.

    Measured (docs/benchmarks.md, Networks): on an AVX2-only AMD EPYC a bf16 ConvNet training step
    is ~18x slower than fp32, where a CPU with AVX-512 BF16 or AMX runs it 1.5-2.2x faster.
    """
    if amp not in _NATIVE_FLAGS or torch.device(device).type != "cpu":
        return
    if cpu_runs_natively(amp) is False:
        warnings.warn(
            f"--amp {amp}: this CPU has no native {amp} ({' / '.join(_NATIVE_FLAGS[amp][:2])}), so it is emulated "
            f"and much slower than fp32 (18x for a ConvNet training step on an AVX2 EPYC); drop --amp here",
            stacklevel=2,
        )


def resolve_amp(amp: str | None, device: torch.device | str) -> str | None:
    """The autocast a run on ``device`` uses for a checked ``--amp`` (:func:`habacli.runtime.amp.check_amp`):
    ``auto`` becomes ``bf16`` where the device computes bf16 natively (a CUDA GPU that supports it, a CPU
    with AVX-512 BF16, AMX or aarch64 BF16) and ``None`` (fp32) elsewhere; anything else is returned as is.

    Measured (docs/benchmarks.md): a bf16 ConvNet training step is 1.5-2.2x fp32 on CPUs with native
    bf16 and ~18x slower on an AVX2-only one, so ``auto`` never picks an emulated precision.
    """
    if amp != AUTO:
        return amp
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False) else None
    if dev.type == "cpu":
        return "bf16" if cpu_runs_natively("bf16") else None
    return None


def available_memory(device: torch.device | str) -> int | None:
    """Bytes a new allocation can still get on ``device``: free CUDA memory, or the host's ``MemAvailable``
    (``/proc/meminfo``) for the CPU; None when it cannot be told."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type != "cpu":
        return None
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (CPU and CUDA) and return a CPU generator seeded with ``seed``."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
