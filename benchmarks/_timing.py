"""Wall-clock timing shared by the benchmark scripts.

    from _timing import Timing, median_time
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


class Timing(float):
    """Median wall seconds; ``.best`` is the fastest run (less sensitive to a busy machine)."""

    best: float


def median_time(fn: Callable[[], object], repeats: int) -> Timing:
    """Median (and best) wall seconds of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    out = Timing(statistics.median(times))
    out.best = min(times)
    return out
