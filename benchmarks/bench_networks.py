"""Benchmark ConvNet-3 training throughput and DSA cost, next to this machine's matmul ceiling.

1. ConvNet-3 training steps (haba's network, and a "reference-style" plain nn.Sequential of stock modules
   as the official code builds it; run once more with HABA_MALLOC=system for the reference's allocator) (forward + cross-entropy + backward + SGD momentum 0.9, wd 5e-4, as the
   evaluation protocol) on batches of 256 at 28x28x1 (Fashion-MNIST) and 32x32x3 (CIFAR), in contiguous
   (NCHW) and channels_last layouts, timed interleaved so machine noise hits both alike. Reported as
   images/s, achieved GFLOP/s (analytic: conv+linear MACs*2 forward, training step = 3x forward) and as
   a fraction of the fp32 2048^3 matmul GFLOP/s measured in the same run.
2. DSA per batch of 256 at 32x32x3: each op family alone, per-sample and siamese, forward only and
   forward+backward (gradients to the pixels, as in distillation).

Usage:  python benchmarks/bench_networks.py [--device cpu] [--steps 5] [--bf16] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _peak import measure_conv_gflops, measure_matmul_gflops, module_flops  # noqa: E402

from habacli.transforms.augment import DSA  # noqa: E402
from habacli.networks import get_network  # noqa: E402

SHAPES = {"28x28x1": (1, 28, 28), "32x32x3": (3, 32, 32)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_convnet(c: int, h: int, w: int) -> torch.nn.Module:
    """ConvNet-3 written the reference code's way: one ``nn.Sequential`` of stock modules
    (``nn.AvgPool2d``, padding 3 on a 1-channel first conv), as the DC/MTT/HaBa repositories build it."""
    nn = torch.nn
    layers, ch, size = [], c, h
    for d in range(3):
        pad = 3 if c == 1 and d == 0 else 1
        layers += [nn.Conv2d(ch, 128, 3, padding=pad), nn.GroupNorm(128, 128, affine=True), nn.ReLU(inplace=True),
                   nn.AvgPool2d(2, 2)]
        ch, size = 128, (size + 2 * pad - 2) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * size * size, 10))


def _train_setup(shape, channels_last: bool, device: torch.device, batch: int, bf16: bool, reference: bool = False):
    c, h, w = shape
    g = torch.Generator().manual_seed(0)
    if reference:
        torch.manual_seed(0)
        net = reference_convnet(c, h, w)
    else:
        net = get_network("convnet", channels=c, num_classes=10, height=h, width=w, generator=g)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, c, h, w, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    return step, module_flops(net, shape)


def bench_training(device: torch.device, batch: int, steps: int, bf16: bool) -> list[dict]:
    configs = []
    for label, shape in SHAPES.items():
        step, fwd = _train_setup(shape, False, device, batch, False, reference=True)
        step()  # warm-up
        configs.append({"shape": label, "channels_last": False, "bf16": False, "step": step, "fwd": fwd, "t": [],
                        "reference": True})
        for cl in (False, True):
            for half in (False, True) if bf16 else (False,):
                step, fwd = _train_setup(shape, cl, device, batch, half)
                step()  # warm-up
                configs.append({"shape": label, "channels_last": cl, "bf16": half, "step": step, "fwd": fwd, "t": []})
    for _ in range(steps):  # interleaved rounds
        for cfg in configs:
            _sync(device)
            t0 = time.perf_counter()
            cfg["step"]()
            _sync(device)
            cfg["t"].append(time.perf_counter() - t0)
    rows = []
    for cfg in configs:
        sec = statistics.median(cfg["t"])
        rows.append(
            {
                "shape": cfg["shape"],
                "layout": "reference-style" if cfg.get("reference") else
                          "channels_last" if cfg["channels_last"] else "contiguous",
                "bf16": cfg["bf16"],
                "step_s": sec,
                "img_per_s": batch / sec,
                "gflops": 3 * cfg["fwd"] * batch / sec / 1e9,
            }
        )
    return rows


def bench_dsa(device: torch.device, batch: int, repeats: int) -> list[dict]:
    x0 = torch.rand(batch, 3, 32, 32, device=device)
    rows = []
    for family in ("color", "crop", "cutout", "flip", "scale", "rotate"):
        dsa = DSA(family)
        for mode in ("per-sample", "siamese"):
            for grad in (False, True):
                g = torch.Generator().manual_seed(0)
                times = []
                for r in range(repeats + 1):
                    x = x0.clone().requires_grad_(grad)
                    _sync(device)
                    t0 = time.perf_counter()
                    y = dsa(x, g) if mode == "per-sample" else dsa.siamese([x], g)[0]
                    if grad:
                        y.sum().backward()
                    _sync(device)
                    if r:
                        times.append(time.perf_counter() - t0)
                rows.append({"family": family, "mode": mode, "backward": grad, "ms": 1e3 * statistics.median(times)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per configuration (median)")
    ap.add_argument("--dsa-repeats", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from habacli.runtime.allocator import tune_host_allocator

    malloc_tuned = tune_host_allocator()  # as every haba command does; HABA_MALLOC=system turns it off
    device = torch.device(args.device)
    torch.manual_seed(0)

    peak = measure_matmul_gflops(device=device)
    conv_peak = {cl: measure_conv_gflops(device=device, channels_last=cl) for cl in (False, True)}
    train = bench_training(device, args.batch, args.steps, args.bf16)
    peak_after = measure_matmul_gflops(device=device)
    dsa = bench_dsa(device, args.batch, args.dsa_repeats)
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_fp32_gflops": {"before": peak, "after": peak_after},
        "conv3x3_128_16px_b256_gflops": {"contiguous": conv_peak[False], "channels_last": conv_peak[True]},
        "training": train,
        "dsa": dsa,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    ref = (peak + peak_after) / 2
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, malloc tuned {malloc_tuned}")
    print(f"fp32 matmul 2048^3: {peak:.0f} GFLOP/s before, {peak_after:.0f} after (mean {ref:.0f} used below)")
    print(
        f"3x3 conv 128->128 @16px b256: {conv_peak[False]:.0f} GFLOP/s contiguous, "
        f"{conv_peak[True]:.0f} channels_last"
    )
    print("\nConvNet-3 training step (batch %d, SGD mom 0.9):" % args.batch)
    print(f"  {'shape':9} {'layout':14} {'bf16':5} {'s/step':>7} {'img/s':>7} {'GFLOP/s':>8} {'of matmul':>9}")
    for r in train:
        print(
            f"  {r['shape']:9} {r['layout']:14} {str(r['bf16']):5} {r['step_s']:7.3f} {r['img_per_s']:7.0f} "
            f"{r['gflops']:8.1f} {r['gflops'] / ref:9.0%}"
        )
    print(f"\nDSA per batch of {args.batch} at 32x32x3 (ms, median):")
    print(f"  {'family':8} {'per-sample fwd':>15} {'fwd+bwd':>8} {'siamese fwd':>12} {'fwd+bwd':>8}")
    for fam in dict.fromkeys(r["family"] for r in dsa):
        v = {(r["mode"], r["backward"]): r["ms"] for r in dsa if r["family"] == fam}
        print(
            f"  {fam:8} {v[('per-sample', False)]:15.1f} {v[('per-sample', True)]:8.1f} "
            f"{v[('siamese', False)]:12.1f} {v[('siamese', True)]:8.1f}"
        )
    mean_s = statistics.mean(r["ms"] for r in dsa if r["mode"] == "per-sample" and not r["backward"])
    print(f"  mean over families ('S' mode, per-sample, fwd): {mean_s:.1f} ms")


if __name__ == "__main__":
    main()
