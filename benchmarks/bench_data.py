"""Benchmark haba's data path on the real Fashion-MNIST (Debian's IDX files).

Measures, with a fresh temporary cache:
  1. first (uncached) load of train + test: gunzip + IDX parse + safetensors write;
  2. cached load of train + test (target < 1 s);
  3. "ready for the first distillation step" in a fresh process: python start, imports, cached load,
     RealData.build (with a 10% validation split) and one 256-image class sample (target < 2 s;
     the reference spends ~23 s decoding images and fitting ZCA on every run);
  4. the same with ZCA (fit once and cached; the cached run loads it back).

Usage:  python benchmarks/bench_data.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

READY = r"""
import time, sys
t0 = time.perf_counter()
import torch
from habacli.data import RealData, load_split, fit_zca
t_import = time.perf_counter() - t0
zca = fit_zca("fashion_mnist") if sys.argv[1] == "zca" else None
real = RealData.build(load_split("fashion_mnist", "train"), device="cpu", zca=zca, val_fraction=0.1, seed=0)
test = RealData.build(load_split("fashion_mnist", "test"), device="cpu", zca=zca)
x = real.sample_class(0, 256, torch.Generator().manual_seed(0))
print(t_import, time.perf_counter() - t0 - t_import)
"""


def _ready(mode: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(process wall time, import time of torch + habacli.data, data work after the imports)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", READY, mode], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    imp, work = (float(v) for v in out.stdout.split())
    return wall, imp, work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="haba-bench-") as tmp:
        os.environ["HABA_CACHE"] = tmp
        env = {**os.environ, "HABA_CACHE": tmp}
        t0 = time.perf_counter()
        import torch  # noqa: F401 - timed apart from the data work

        from habacli.data import load_split  # after HABA_CACHE is set
        import_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        tr, te = load_split("fashion_mnist", "train"), load_split("fashion_mnist", "test")
        first = time.perf_counter() - t0
        assert len(tr) == 60000 and len(te) == 10000

        cached = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            load_split("fashion_mnist", "train"), load_split("fashion_mnist", "test")
            cached.append(time.perf_counter() - t0)

        zca_first = _ready("zca", env)  # fits ZCA once and caches it
        ready = [_ready("plain", env) for _ in range(args.repeats)]
        ready_zca = [_ready("zca", env) for _ in range(args.repeats)]

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return round(statistics.median(r[i] for r in rows), 3)

    res = {
        "import_torch_and_habacli_data_s": round(import_s, 3),
        "first_load_train_test_s": round(first, 3),
        "cached_load_train_test_s_median": round(statistics.median(cached), 4),
        "ready_process_wall_s_median": med(ready, 0),
        "ready_imports_s_median": med(ready, 1),
        "ready_data_work_s_median": med(ready, 2),
        "ready_zca_first_fit_data_work_s": round(zca_first[2], 3),
        "ready_zca_cached_process_wall_s_median": med(ready_zca, 0),
        "ready_zca_cached_data_work_s_median": med(ready_zca, 2),
        "repeats": args.repeats,
        "cpu_threads": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:42s} {v}")


if __name__ == "__main__":
    main()
