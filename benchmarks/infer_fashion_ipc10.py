"""INFER on the real Fashion-MNIST at IPC 10: teachers, distillation and evaluation of three sets.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/infer_fashion_ipc10.py teachers OUT [--epochs 2]
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/infer_fashion_ipc10.py distill OUT [--iterations 100]
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/infer_fashion_ipc10.py evaluate OUT [--epochs 50 --runs 3 --sets no_ufc]

(a) INFER; (b) the same natural images and their soft labels, no UFCs; (c) 10 random real images per
class with the teacher ensemble's soft labels. All under the INFER recipe (KL T=30, MixUp 0.8, AdamW).
Results go to OUT/*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from habacli.data import RealData, load_split
from habacli.infer import (
    InferRecipe,
    InferSet,
    distill_infer,
    load_teachers,
    train_student,
    train_teachers,
)
from habacli.infer.labels import ensemble_logits
from habacli.runtime.progress import Progress


def log(ev: Progress) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')}] {ev.description} {ev.done}/{ev.total} {ev.message}", file=sys.stderr, flush=True
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["teachers", "distill", "evaluate"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default="infer,no_ufc,random_real_soft", help="comma-separated subset of the three sets")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    tdir = out / "teachers"
    if a.step == "teachers":
        t0 = time.perf_counter()
        recs = train_teachers("fashion_mnist", tdir, epochs=a.epochs or 2, seed=a.seed, progress=log)
        res = {
            r.arch: {
                "test_accuracy": r.meta["test_accuracy"],
                "train_seconds": r.meta["train_seconds"],
                "epochs": r.meta["epochs"],
            }
            for r in recs
        }
        res["_wall_seconds"] = time.perf_counter() - t0
        (out / "teachers.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
    elif a.step == "distill":
        t0 = time.perf_counter()
        s = distill_infer("fashion_mnist", 10, teachers_dir=tdir, iterations=a.iterations, seed=a.seed, progress=log)
        secs = time.perf_counter() - t0
        torch.save(
            {"natural": s.natural, "ufc": s.ufc, "soft": s.soft_labels, "mean": s.mean, "std": s.std},
            out / "infer_set.pt",
        )
        info = {
            "seconds": secs,
            "iterations": a.iterations,
            "storage": s.storage(),
            "teachers": s.teachers,
            "ufc_loss": {k: (v["loss_before"], v["loss_after"]) for k, v in s.info["ufc"].items()},
        }
        (out / "distill.json").write_text(json.dumps(info, indent=1))
        print(json.dumps({k: info[k] for k in ("seconds", "storage", "teachers")}, indent=1))
    else:
        d = torch.load(out / "infer_set.pt")
        s = InferSet(d["natural"], d["ufc"], d["soft"], 30.0, tuple(d["mean"]), tuple(d["std"]), "fashion_mnist", 10)
        real = RealData.build(load_split("fashion_mnist", "train"))
        xt, yt = RealData.build(load_split("fashion_mnist", "test")).all_model()
        models, _ = load_teachers(tdir, "fashion_mnist")
        g = torch.Generator().manual_seed(1000 + a.seed)
        xr, yr = real.init_bases(10, g)  # 10 random real images per class
        sets = {
            "infer": (*s.instances(), s.soft_labels),
            "no_ufc": (*s.without_ufc().instances(), s.without_ufc().soft_labels),
            "random_real_soft": (xr, yr, ensemble_logits(models, xr)),
        }
        wanted = a.sets.split(",")
        sets = {k: v for k, v in sets.items() if k in wanted}
        recipe = InferRecipe(epochs=a.epochs or 50)
        res = {"recipe": recipe.to_dict()}
        for name, (x, y, soft) in sets.items():
            accs, secs = [], []
            for r in range(a.runs):
                rr = train_student(
                    x,
                    y,
                    soft,
                    test=(xt, yt),
                    mean=s.mean,
                    std=s.std,
                    recipe=recipe,
                    generator=torch.Generator().manual_seed(r),
                )
                accs.append(rr.accuracy)
                secs.append(rr.seconds)
                log(f"{name} run {r} acc {rr.accuracy:.4f} ({rr.seconds:.0f} s)", r + 1, a.runs)
            t = torch.tensor(accs)
            res[name] = {
                "instances": int(x.shape[0]),
                "accuracies": accs,
                "mean": float(t.mean()),
                "std": float(t.std()) if len(accs) > 1 else 0.0,
                "seconds": secs,
            }
            (out / f"evaluate_{recipe.epochs}_{'+'.join(sets)}.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
