"""Host-memory allocator settings for long CPU runs.

glibc serves every allocation above 32 MiB with a fresh ``mmap`` and hands it back with ``munmap`` on
free. A ConvNet-3 batch of 256 at 32x32 makes several 128 MiB activations per step, so every step
page-faults its whole working set again: on this project's CPU machine a ``clone()`` of such a
tensor takes ~64 ms instead of ~13 ms, and a training step spends about a third of its time in the
kernel zeroing pages (benchmarks/bench_networks.py, docs/benchmarks.md).

:func:`tune_host_allocator` tells glibc to serve large blocks from the heap and to keep freed memory
for reuse (``mallopt``), so steady-state steps touch no new pages. Peak RSS is unchanged in
principle (freed blocks are reused, not added); the process simply does not give memory back until
it exits. It is a no-op off glibc, and ``HABA_MALLOC=system`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: trim only a free top above 2 GiB

_state: bool | None = None


def tune_host_allocator() -> bool:
    """Keep large host allocations in the heap for reuse; returns whether glibc accepted it.

    Idempotent and cheap; called by :func:`habacli.runtime.device.pick_device`, so every long-running
    command gets it. Set ``HABA_MALLOC=system`` to keep glibc's defaults.
    """
    global _state
    if _state is not None:
        return _state
    _state = False
    if os.environ.get("HABA_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _state
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_trim = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    ok_mmap = mallopt(_M_MMAP_MAX, 0) == 1
    _state = ok_trim and ok_mmap
    return _state
