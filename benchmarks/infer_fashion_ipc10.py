"""INFER on the real Fashion-MNIST at IPC 10 through the real CLI: teachers, distillation, and the three sets
of the INFER table in docs/benchmarks.md, each run its own process.

    python benchmarks/infer_fashion_ipc10.py teachers OUT [--epochs 2]
    python benchmarks/infer_fashion_ipc10.py distill OUT [--iterations 1000]
    python benchmarks/infer_fashion_ipc10.py evaluate OUT [--runs 5] [--epochs 400] [--sets infer,no_ufc,random]
    python benchmarks/infer_fashion_ipc10.py evaluate OUT --recipe standard --runs 3 --epochs 300

The sets: (a) INFER (``OUT/infer.safetensors``); (b) its 70 natural images and their soft labels without the
compensators (``--no-compensators``); (c) 10 random real images per class with the teachers' soft labels
(``--baseline random --teachers``; hard labels under ``--recipe standard``). Every run is
``haba evaluate ... --runs 1 --seed R --json`` in a subprocess; per-run results go to
``OUT/eval-<recipe>-<set>.jsonl`` as they finish (a rerun skips what is there), the table to stdout.
Everything stays in safetensors artifacts (nothing is pickled).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SETS = ("infer", "no_ufc", "random")


def _haba(*args: str) -> str:
    cmd = [sys.executable, "-m", "habacli", *args]
    print("$ haba " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def _evaluate_args(step: str, out: Path, recipe: str, epochs: int | None) -> list[str]:
    art, teachers = str(out / "infer.safetensors"), str(out / "teachers")
    ep = ["--epochs", str(epochs)] if epochs else []
    if step == "random":
        if recipe == "standard":
            return ["evaluate", "fashion_mnist", "--baseline", "random", "--ipc", "10", "--no-zca", *ep]
        return ["evaluate", "fashion_mnist", "--baseline", "random", "--ipc", "10", "--teachers", teachers, *ep]
    extra = ["--no-compensators"] if step == "no_ufc" else []
    std = ["--recipe", "standard"] if recipe == "standard" else []
    return ["evaluate", art, *std, *extra, *ep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["teachers", "distill", "evaluate"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=None, help="teachers: 2; evaluate: the recipe's (400 / 1000)")
    ap.add_argument("--iterations", type=int, default=None, help="UFC iterations (default: the paper preset's)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", choices=["artifact", "standard"], default="artifact")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {', '.join(SETS)}")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.step == "teachers":
        _haba("teachers", "fashion_mnist", "--out", str(a.out / "teachers"), "--epochs", str(a.epochs or 2))
        return
    if a.step == "distill":
        its = ["--iterations", str(a.iterations)] if a.iterations else []
        _haba(
            "distill", "fashion_mnist", "--ipc", "10", "--method", "infer", "--teachers", str(a.out / "teachers"),
            "--seed", str(a.seed), "--out", str(a.out / "infer.safetensors"), *its,
        )  # fmt: skip
        return
    rows = {}
    for name in a.sets.split(","):
        if name not in SETS:
            sys.exit(f"error: unknown set {name!r} (one of {', '.join(SETS)})")
        log = a.out / f"eval-{a.recipe}-{name}.jsonl"
        done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        for r in range(len(done), a.runs):
            res = json.loads(_haba(*_evaluate_args(name, a.out, a.recipe, a.epochs), "--runs", "1", "--seed", str(r), "--json"))
            acc = next(iter(res["models"].values()))["accuracies"][0]
            done.append({"seed": r, "accuracy": acc, "wall_s": res["wall_time_s"]})
            with log.open("a") as f:
                f.write(json.dumps(done[-1]) + "\n")
        accs = [100 * d["accuracy"] for d in done[: a.runs]]
        rows[name] = (statistics.mean(accs), statistics.pstdev(accs), accs)
    print(f"| set ({a.recipe} recipe) | accuracy % | runs |\n|---|---|---|")
    for name, (mean, std, accs) in rows.items():
        print(f"| {name} | {mean:.2f} ± {std:.2f} | {', '.join(f'{x:.2f}' for x in accs)} |")


if __name__ == "__main__":
    main()
