"""Seconds per iteration of ``haba distill`` objectives (HaBa-factorised and plain), with peak RSS and
the fraction of this machine's fp32 matmul peak, measured in the same process.

Every configuration runs in its own subprocess (peak RSS = that process's ``ru_maxrss``). For each
it builds the real engine (:class:`habacli.distill.run.Run`, paper preset unless overridden), runs one
warm-up iteration, then times ``objective.run_iteration``. For factorised runs HaBa's overhead is
split into its parts, timed separately on the same state: the hallucinator forward, the L_cos pass
(two views through the adversary, backward into the synthetic set) and the adversary step.

Shapes: ``fmnist`` (Fashion-MNIST, 1x28x28) and ``cifar`` (Fashion-MNIST padded to 32x32 and
replicated to 3 channels: CIFAR-10's shapes, to compare with research/reference-cpu.md, where DM
IPC 10 with batch_real 256 takes 1.38 s per iteration).

    python benchmarks/bench_distill.py                                   # DM, IPC 1 and 10, both shapes
    python benchmarks/bench_distill.py --objectives dm,dc,dsa --ipcs 1 --shapes fmnist
    python benchmarks/bench_distill.py --amp bf16 --channels-last --ipcs 10 --shapes cifar
    python benchmarks/bench_distill.py --quick-e2e                       # the quick preset end to end

FLOPs counted per DM iteration (forward FLOPs F per image, a backward as the forward's cost per
gradient kind): real forward C*batch_real*F; synthetic forward + input-gradient 2*C*n*F; HaBa's
L_cos 2B*2F and adversary step 2B*2F (B = bases per contrastive batch). Other objectives report
time only. Each line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FASHION = "/usr/share/datasets/fashion-mnist"


def _cifar_shaped(data_dir: str) -> None:
    """Make the engine see Fashion-MNIST as CIFAR-10-shaped data (pad to 32 px, 3 channels)."""
    import dataclasses

    import torch.nn.functional as F

    from habacli import data
    from habacli.data.split import Split

    base_load = data.load_split
    spec = dataclasses.replace(data.get_spec("fashion_mnist", data_dir=data_dir), name="fashion_mnist_cifar_shaped",
                               channels=3, height=32, width=32, mean=(0.2861,) * 3, std=(0.3530,) * 3)

    def load_split(name, split="train", **kw):
        s = base_load("fashion_mnist", split, data_dir=data_dir)
        images = F.pad(s.images, (2, 2, 2, 2)).repeat(1, 3, 1, 1).contiguous()
        return Split(images=images, labels=s.labels, spec=spec)

    data.load_split = load_split
    data.get_spec = lambda name, **kw: spec


def _dm_flops(run, per_image_fwd: int) -> dict[str, int]:
    syn, cfg = run.engine.synthetic, run.cfg
    c, n = syn.num_classes, syn.bases_per_class
    b = syn.num_bases if cfg.batch_contrast <= 0 else min(cfg.batch_contrast, syn.num_bases)
    out = {"real_forward": c * int(run.objective.config["batch_real"]) * per_image_fwd,
           "synthetic": 2 * c * n * per_image_fwd}
    if run.engine.contrastive:
        out["l_cos"] = 2 * b * 2 * per_image_fwd
        out["adversary"] = 2 * b * 2 * per_image_fwd
    return out


def child(args: dict) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from _peak import convnet_flops, measure_matmul_gflops

    torch.set_num_threads(args["threads"])
    if args["shape"] == "cifar":
        _cifar_shaped(args["data_dir"])
    from habacli.distill.config import build_config
    from habacli.distill.run import Run
    from habacli.objectives import get_objective

    cls = get_objective(args["objective"])
    overrides = {"checkpoint_every": 0, "eval_every": 0, "device": "cpu", "amp": args["amp"],
                 "channels_last": args["channels_last"], **args["set"]}
    if args["objective"] in ("dm", "dc", "dsa"):
        overrides.setdefault("batch_real", args["batch_real"])
    cfg = build_config("fashion_mnist", args["objective"], args["ipc"], factorize=args["factorize"],
                       preset=args["preset"], objective_defaults=cls.defaults, overrides=overrides)
    t0 = time.perf_counter()
    run = Run(cfg, cls, data_dir=args["data_dir"])
    setup = time.perf_counter() - t0
    peak_before = measure_matmul_gflops()
    run.objective.run_iteration(0)  # warm-up
    times = []
    for it in range(1, args["iterations"] + 1):
        t = time.perf_counter()
        run.objective.run_iteration(it)
        times.append(time.perf_counter() - t)
    per_it = min(times) if args["best"] else sum(times) / len(times)
    parts: dict[str, float] = {}
    eng = run.engine
    if eng.contrastive:  # HaBa's overhead parts, timed on the current state
        def timed(fn, reps=3):
            fn()
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t) / reps

        idx = None
        parts["hallucinator_s"] = timed(lambda: eng.synthetic.images(idx, 0).sum().backward())

        def l_cos():
            x = eng._two_views(idx)
            eng.adversary.requires_grad_(False)
            z = eng.adversary.embed(x)
            eng.adversary.requires_grad_(True)
            (z[: z.shape[0] // 2] * z[z.shape[0] // 2:]).sum().backward()

        parts["l_cos_s"] = timed(l_cos)
        parts["adversary_step_s"] = timed(eng.adversary_step)
    peak = max(peak_before, measure_matmul_gflops())
    spec = run.spec
    out = {"objective": args["objective"], "shape": args["shape"], "ipc": args["ipc"], "factorize": args["factorize"],
           "hallucinators": cfg.num_hallucinators, "bases_per_class": run.budget.bases_per_class,
           "amp": args["amp"], "channels_last": args["channels_last"], "threads": args["threads"],
           "iterations_timed": len(times), "s_per_iteration": round(per_it, 4),
           "all_iterations_s": [round(t, 3) for t in times], "setup_s": round(setup, 2),
           "matmul_peak_gflops": round(peak, 1), **{k: round(v, 4) for k, v in parts.items()}}
    if args["objective"] == "dm" and run.model_name == "convnet":
        fwd = convnet_flops(spec.channels, spec.height, spec.width, spec.num_classes)["forward"]
        flops = _dm_flops(run, fwd)
        total = sum(flops.values())
        out.update(gflop_per_iteration=round(total / 1e9, 2), achieved_gflops=round(total / per_it / 1e9, 1),
                   fraction_of_fp32_matmul_peak=round(total / per_it / 1e9 / peak, 3),
                   flops_parts_gflop={k: round(v / 1e9, 2) for k, v in flops.items()})
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def quick_e2e(args: argparse.Namespace) -> dict:
    """Wall time of the quick preset, end to end (CLI in a subprocess, validation included)."""
    out = Path(args.tmp) / "quick.safetensors"
    cmd = [sys.executable, "-m", "habacli", "distill", "fashion_mnist", "--ipc", "1", "--baseline", "dm", "--preset",
           "quick", "--device", "cpu", "--data-dir", args.data_dir, "--out", str(out), "--json", "-q"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    summary = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-300:]}
    return {"quick_preset_end_to_end_s": round(wall, 1), "best_val_acc": summary.get("best_val_acc"),
            "iterations": summary.get("iterations"), "error": summary.get("error")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objectives", default="dm", help="comma-separated: dm,dc,dsa,mtt")
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--shapes", default="fmnist,cifar")
    p.add_argument("--modes", default="haba,plain")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--best", action="store_true", help="report the fastest iteration instead of the mean")
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amp", choices=["off", "bf16"], default="off")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--preset", default="paper")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE option (TOML scalar)")
    p.add_argument("--data-dir", default=FASHION)
    p.add_argument("--quick-e2e", action="store_true")
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))), flush=True)
        return
    if a.quick_e2e:
        print(json.dumps(quick_e2e(a)), flush=True)
        return
    import tomllib

    sets = {}
    for item in a.set:
        k, _, v = item.partition("=")
        sets[k] = tomllib.loads(f"v = {v}")["v"]
    for obj in a.objectives.split(","):
        for shape in a.shapes.split(","):
            for ipc in (int(x) for x in a.ipcs.split(",")):
                for mode in a.modes.split(","):
                    args = {"objective": obj, "shape": shape, "ipc": ipc, "factorize": mode == "haba",
                            "iterations": a.iterations, "best": a.best, "batch_real": a.batch_real,
                            "threads": a.threads, "amp": a.amp, "channels_last": a.channels_last,
                            "preset": a.preset, "set": sets, "data_dir": a.data_dir}
                    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True,
                                          text=True, env=dict(os.environ), check=False)
                    line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else \
                        json.dumps({**args, "error": proc.stderr.strip()[-400:]})
                    print(line, flush=True)


if __name__ == "__main__":
    main()
