"""`haba --help` start-up, cold processes, two source trees side by side (interleaved).

    python benchmarks/bench_help.py [--before /work/main] [--after .] [--repeats 5]

Each repeat starts a fresh ``python -m habacli --help`` for each tree in turn (PYTHONPATH set to
the tree) and times it to exit; prints the median and all samples in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def once(root: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(root)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "habacli", "--help"], env=env, cwd=env["PYTHONPATH"], check=True, capture_output=True
    )
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="/work/main")
    p.add_argument("--after", default=".")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    bare = []
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
        for name, root in (("before", a.before), ("after", a.after)):
            times[name].append(once(root))
    print(f"python -c pass: median {statistics.median(bare):.3f} s")
    for name, root in (("before", a.before), ("after", a.after)):
        ts = times[name]
        print(f"{name:6s} {root}: median {statistics.median(ts):.3f} s  ({' '.join(f'{t:.3f}' for t in ts)})")


if __name__ == "__main__":
    main()
