"""MTT benchmarks: seconds per iteration and peak RSS (unrolled vs constant memory), expert throughput.

Each configuration runs in its own subprocess, which reports its own ``ru_maxrss`` (peak RSS of
that process: data, network, graph). Usage::

    python benchmarks/bench_mtt.py                 # everything below
    python benchmarks/bench_mtt.py --only mtt      # iteration figures only
    python benchmarks/bench_mtt.py --only experts  # expert training throughput only
    python benchmarks/bench_mtt.py --only mtt --amp --compile   # plus bf16 and fused-kernel rows

One configuration by hand: ``--child mtt SHAPE IPC STEPS MEMORY K ITERS [AMP] [eager|compile]``.

Iterations run the real objective (:class:`habacli.objectives.mtt.MTT`: buffer reads, student
steps, DSA, the surrogate in constant mode) through a minimal engine whose ``synth_step`` is
backward + SGD on the bases and hallucinators (no adversary: HaBa's L_cos/adversary cost is
the engine's, see bench_distill.py). Experts are random but well formed (init + noise).
"Fashion-MNIST" uses the real images at 1x28x28; "CIFAR-shaped" pads them to 32x32 and
replicates them to 3 channels (the shapes of the reference figures in research/reference-cpu.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def _images(shape: str, n_per_class: int | None, split: str = "train"):
    """Model-space Fashion-MNIST images (optionally CIFAR-shaped) and labels."""
    import torch
    import torch.nn.functional as F

    from habacli.data import RealData, load_split

    real = RealData.build(load_split("fashion_mnist", split, data_dir=DATA_DIR), device="cpu")
    if n_per_class is not None:
        x, y = real.init_bases(n_per_class, torch.Generator().manual_seed(0))
    else:
        x, y = real.all_model()
    if shape == "cifar":
        x = F.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1).contiguous()
    return x, y


def child_mtt(shape: str, ipc: int, steps: int, memory: str, k: int, iters: int, amp: str = "off",
              kernels: str = "eager") -> dict:
    import contextlib

    import torch

    from habacli.transforms.augment import dsa_for
    from habacli.experts.layout import ParamLayout
    from habacli.experts.store import FORMAT, rebuild_manifest, write_expert
    from habacli.distill.factorization import SyntheticSet
    from habacli.networks.hallucinator import HallucinatorBank
    from habacli.networks import get_network
    from habacli.networks.instancenorm import fused_double_backward
    from habacli.objectives.mtt import MTT

    torch.manual_seed(0)
    bases, _ = _images(shape, ipc)
    c, h, w = bases.shape[1:]
    gen = torch.Generator().manual_seed(0)
    make = lambda: get_network("convnet", channels=c, num_classes=10, height=h, width=w, generator=gen)
    layout = ParamLayout.of(make())
    tmp = Path(tempfile.mkdtemp(prefix="bench-mtt-"))
    for i in range(2):  # two random experts: init, then small random walks
        t0 = layout.flatten(make())
        traj = torch.stack([t0 + 0.01 * e * torch.randn(layout.size, generator=gen) for e in range(4)])
        meta = {"format": FORMAT, "dataset": "fashion_mnist", "model": "convnet", "zca": False, "epochs": 3,
                "num_params": layout.size, "params": layout.to_json(), "index": i, "expert_seed": i,
                "test_accuracy": [0.0] * 4, "seed": 0}
        write_expert(tmp, i, traj, meta)
    rebuild_manifest(tmp)
    bank = HallucinatorBank(k, c, c, h, w, generator=gen) if k else None
    syn = SyntheticSet(bases, 10, bank)
    params = [syn.bases, *syn.hallucinator_parameters()]
    opt = torch.optim.SGD(params, lr=100.0, momentum=0.5)

    def synth_step(loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_dd": float(loss.detach())}

    engine = SimpleNamespace(spec=SimpleNamespace(name="fashion_mnist", channels=c, height=h, width=w,
                                                  num_classes=10, flip=True),
                             device=torch.device("cpu"), synthetic=syn, dsa=dsa_for(SimpleNamespace(flip=True)), generator=gen,
                             settings=SimpleNamespace(factorize=k > 0, model="convnet", zca=False, seed=0, amp=amp),
                             model_name="convnet", make_network=make, synth_step=synth_step,
                             autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16"
                             else contextlib.nullcontext())
    obj = MTT(engine, {"experts": str(tmp), "syn_steps": steps, "max_start_epoch": 1, "expert_epochs": 2,
                       "memory": memory, "lr_teacher": 0.01})
    times = []
    for it in range(iters):
        t = time.perf_counter()
        with fused_double_backward(kernels == "compile"):  # as `haba distill --compile` runs it
            obj.run_iteration(it)
        times.append(time.perf_counter() - t)
    kept = times[1:] if len(times) > 1 else times
    return {"s_per_it": sorted(kept)[len(kept) // 2], "all": [round(t, 3) for t in times],
            "maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def child_experts(shape: str, amp: str | None, images: int, epochs: int) -> dict:
    import torch

    from habacli.transforms.augment import dsa_for
    from habacli.data import get_spec
    from habacli.experts.layout import ParamLayout
    from habacli.experts.train import _autocast, _train_one
    from habacli.networks import get_network

    x, y = _images(shape, None)
    xt, yt = _images(shape, None, split="test")
    xt, yt = xt[:2000].contiguous(), yt[:2000]  # test passes are not timed; keep them short
    g = torch.Generator().manual_seed(0)
    keep = torch.randperm(len(y), generator=g)[:images]
    x, y = x[keep].contiguous(), y[keep]
    c, h, w = x.shape[1:]
    make = lambda gen: get_network("convnet", channels=c, num_classes=10, height=h, width=w, generator=gen)
    layout = ParamLayout.of(make(torch.Generator().manual_seed(0)))
    config = {"epochs": epochs, "batch_size": 256, "seed": 0, "lr": 0.01, "num_params": layout.size}
    tmp = Path(tempfile.mkdtemp(prefix="bench-experts-"))
    events = []
    seen, secs, _ = _train_one(0, tmp, config, layout, make, dsa_for(get_spec("fashion_mnist")), x, y, xt, yt,
                               torch.device("cpu"), _autocast(torch.device("cpu"), amp), events.append)
    accs = [e["test_accuracy"] for e in events if e["kind"] == "epoch"]
    return {"img_per_s": seen / secs, "test_accuracy": accs,
            "maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs="*")
    p.add_argument("--only", choices=["mtt", "experts"])
    p.add_argument("--iters", type=int, default=3, help="iterations per MTT config (the first is warm-up)")
    p.add_argument("--steps", default="10,30,50", help="syn_steps for the Fashion-MNIST sweep")
    p.add_argument("--expert-images", type=int, default=5120, help="train images for the throughput runs")
    p.add_argument("--expert-epochs", type=int, default=1)
    p.add_argument("--amp", action="store_true", help="add CIFAR-shaped syn_steps 30 rows with --amp bf16 student steps")
    p.add_argument("--compile", action="store_true",
                   help="add CIFAR-shaped unrolled syn_steps 30 rows with the fused double backward (--compile)")
    a = p.parse_args()
    if a.child is not None:
        from habacli.runtime.allocator import tune_host_allocator

        tune_host_allocator()  # as every haba command does; HABA_MALLOC=system turns it off
        kind, *rest = a.child
        if kind == "mtt":
            shape, ipc, steps, memory, k, iters, *extra = rest
            out = child_mtt(shape, int(ipc), int(steps), memory, int(k), int(iters), *extra)
        else:
            shape, amp, images, epochs = rest
            out = child_experts(shape, None if amp == "fp32" else amp, int(images), int(epochs))
        print(json.dumps(out))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if a.only in (None, "mtt"):
        print("\nMTT iteration (IPC 10, real objective, minimal engine); median s/it after warm-up, peak RSS")
        print(f"{'data':8} {'K':>2} {'steps':>5} {'memory':9} {'amp':4} {'kernels':7} {'s/it':>8} {'RSS GiB':>8}")
        configs = [("fmnist", 0, int(s), m, "off", "eager") for s in a.steps.split(",") for m in ("unrolled", "constant")]
        configs += [("cifar", 0, 30, "unrolled", "off", "eager"), ("cifar", 0, 30, "constant", "off", "eager"),
                    ("cifar", 5, 30, "unrolled", "off", "eager")]
        if a.amp:
            configs += [("cifar", 0, 30, "unrolled", "bf16", "eager"), ("cifar", 0, 30, "constant", "bf16", "eager")]
        if a.compile:
            configs += [("cifar", 0, 30, "unrolled", amp, "compile") for amp in (["off", "bf16"] if a.amp else ["off"])]
        for shape, k, steps, memory, amp, kernels in configs:
            r = run_child(["mtt", shape, "10", str(steps), memory, str(k), str(a.iters), amp, kernels])
            head = f"{shape:8} {k:>2} {steps:>5} {memory:9} {amp:4} {kernels:7}"
            if "error" in r:
                print(f"{head} error: {r['error']}")
            else:
                print(f"{head} {r['s_per_it']:8.2f} {r['maxrss_gib']:8.2f}  {r['all']}", flush=True)
    if a.only in (None, "experts"):
        print(f"\nExpert training throughput ({a.expert_images} train images x {a.expert_epochs} epoch(s), batch 256, DSA)")
        for shape in ("fmnist", "cifar"):
            for amp in ("fp32", "bf16"):
                r = run_child(["experts", shape, amp, str(a.expert_images), str(a.expert_epochs)])
                if "error" in r:
                    print(f"{shape:8} {amp:5} error: {r['error']}")
                else:
                    print(f"{shape:8} {amp:5} {r['img_per_s']:8.0f} img/s  test acc per epoch "
                          f"{[round(x, 4) for x in r['test_accuracy']]}  RSS {r['maxrss_gib']:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
