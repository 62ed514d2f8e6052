"""Benchmark the evaluation protocol, next to this machine's fp32 matmul ceiling (same run).

1. Training throughput of ``train_and_test`` (ConvNet-3, per-sample DSA, SGD, batch 256) on 100
   CIFAR-shaped 32x32x3 images: images/s over the timed epochs (the reference: ~420-455 img/s on
   this machine kind, research/reference-cpu.md). fp32 and, with ``--amp``, bf16 autocast; NCHW and
   channels_last, interleaved so noise hits both alike.
2. The test pass: 10,000 CIFAR-shaped images through ConvNet-3 (no grad, eval mode) at several batch
   sizes (the reference: ~10 s with a DataLoader at batch 128).
3. ``--full``: the whole protocol (1000 epochs, 5 runs, one ConvNet) on Fashion-MNIST IPC 10 random
   real images, which costs the same as evaluating an IPC-10 distilled set (needs the data).
4. ``--batched``: R runs (``--runs``, default 5) of ConvNet-3 with DSA on Fashion-MNIST random real
   images at each ``--ipcs``, trained one after another and batched (habacli/evaluate/batched.py),
   interleaved in the same run: wall time and training img/s (R x images x epochs / s; the test pass
   is 100 test images, included), then the peak RSS of the batched path for R = ``--rss-runs``, each
   in a fresh process (needs the data). Only this part runs with ``--batched``.

Usage:  python benchmarks/bench_evaluate.py [--device cpu] [--epochs 30] [--amp] [--rounds 1] [--full] [--json]
        python benchmarks/bench_evaluate.py --batched [--ipcs 1,10] [--runs 5] [--batched-epochs 10]
                                            [--rss-runs 1,5,10] [--amp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _peak import measure_matmul_gflops, module_flops

from habacli.transforms.augment import DSA
from habacli.evaluate import protocol
from habacli.networks import get_network

SPEC = {"channels": 3, "num_classes": 10, "height": 32, "width": 32}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(device: torch.device, epochs: int, *, amp: str | None, channels_last: bool) -> float:
    """Images/s of ``train_and_test`` on 100 images (one batch per epoch), test cost excluded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, 32, 32, generator=g).to(device)
    y = torch.arange(10).repeat_interleave(10).to(device)
    tiny_test = (x[:10], y[:10])
    original = protocol.use_channels_last
    protocol.use_channels_last = lambda _dev: channels_last
    try:
        protocol.train_and_test("convnet", (x, y), tiny_test, spec=SPEC, epochs=1, lr=0.01, dsa=DSA(), seed=0,
                                device=device, amp=amp)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        protocol.train_and_test("convnet", (x, y), tiny_test, spec=SPEC, epochs=epochs - 1, lr=0.01, dsa=DSA(),
                                seed=0, device=device, amp=amp)
        _sync(device)
        return 100 * epochs / (time.perf_counter() - t0)
    finally:
        protocol.use_channels_last = original


def test_pass_seconds(device: torch.device, batch: int, *, channels_last: bool, n: int = 10_000,
                      amp: str | None = None) -> float:
    """Seconds to score ``n`` CIFAR-shaped images with ConvNet-3 (``protocol.test_accuracy``)."""
    net = get_network("convnet", **SPEC).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    protocol.test_accuracy(net, x[:batch], y[:batch], batch_size=batch, channels_last=channels_last, amp=amp)
    _sync(device)
    t0 = time.perf_counter()
    protocol.test_accuracy(net, x, y, batch_size=batch, channels_last=channels_last, amp=amp)
    _sync(device)
    return time.perf_counter() - t0


def full_protocol(device: str, data_dir: str | None, runs: int, epochs: int, amp: str | None) -> dict:
    """Wall time of the standard protocol on Fashion-MNIST IPC 10 (random real images)."""
    from habacli.evaluate.run import evaluate_random

    t0 = time.perf_counter()
    r = evaluate_random("fashion_mnist", 10, models=("convnet",), runs=runs, epochs=epochs, seed=0, device=device,
                        data_dir=data_dir, amp=amp)
    m = r.models["convnet"]
    return {"seconds": time.perf_counter() - t0, "runs": runs, "epochs": epochs, "amp": amp,
            "accuracy_mean": m.mean, "accuracy_std": m.std, "accuracies": m.accuracies}


def _random_sets(data_dir: str | None, ipc: int, runs: int, test_images: int = 100, dataset: str = "fashion_mnist"):
    from habacli.data import get_spec, load_split

    spec = get_spec(dataset, data_dir=data_dir)
    train = load_split(dataset, "train", data_dir=data_dir)
    test = load_split(dataset, "test", data_dir=data_dir)
    m = torch.tensor(spec.mean).view(1, -1, 1, 1)
    s = torch.tensor(spec.std).view(1, -1, 1, 1)
    sets = []
    for r in range(runs):
        g = torch.Generator().manual_seed(r)
        idx = torch.cat([(train.labels == c).nonzero().flatten()[
            torch.randperm(int((train.labels == c).sum()), generator=g)[:ipc]] for c in range(spec.num_classes)])
        sets.append(((train.images[idx].float() / 255 - m) / s, train.labels[idx].long()))
    return spec, sets, ((test.images[:test_images].float() / 255 - m) / s, test.labels[:test_images].long())


def batched_seconds(data_dir: str | None, ipc: int, runs: int, epochs: int, *, batched: bool,
                    amp: str | None = None, data=None, dataset: str = "fashion_mnist") -> float:
    """Wall time of ``train_runs`` for ``runs`` ConvNet-3 runs with DSA on ``ipc`` real images per class."""
    from habacli.evaluate.batched import train_runs
    from habacli.transforms.augment import dsa_for

    spec, sets, test = data or _random_sets(data_dir, ipc, runs, dataset=dataset)
    t0 = time.perf_counter()
    train_runs("convnet", sets, test, spec=spec, epochs=epochs - 1, lr=0.01, seeds=list(range(runs)), device="cpu",
               dsa=dsa_for(spec), amp=amp, batched=batched, images_per_epoch=spec.num_classes * ipc)
    return time.perf_counter() - t0


def _rss_child(data_dir: str | None, ipc: int, runs: int, epochs: int, dataset: str) -> None:
    """Peak RSS of the batched training alone: the data is loaded first, then the peak is reset
    (Linux ``clear_refs`` 5) so the 60,000-image load does not mask it."""
    import gc

    data = _random_sets(data_dir, ipc, runs, dataset=dataset)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_mib("VmRSS")
    batched_seconds(data_dir, ipc, runs, epochs, batched=True, data=data)
    print(base, _status_mib("VmHWM"))


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def batched_report(args: argparse.Namespace) -> None:
    import subprocess

    ipcs = [int(i) for i in args.ipcs.split(",")]
    amps = [None, "bf16"] if args.amp else [None]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.runs} runs x "
          f"{args.batched_epochs} epochs, ConvNet-3 + DSA, {args.dataset} random real images, 100 test images")
    batched_seconds(args.data_dir, 1, 2, 1, batched=True, dataset=args.dataset)  # warm-up (data cache, oneDNN)
    for ipc in ipcs:
        for amp in amps:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(max(args.rounds, 1)):
                for batched in (False, True):  # interleaved
                    times[batched].append(batched_seconds(args.data_dir, ipc, args.runs, args.batched_epochs,
                                                          batched=batched, amp=amp, dataset=args.dataset))
            seq, bat = statistics.median(times[False]), statistics.median(times[True])
            images = args.runs * 10 * ipc * args.batched_epochs
            print(f"IPC {ipc:3d} {amp or 'fp32':4s}: sequential {seq:7.1f} s ({images / seq:6.0f} img/s)   "
                  f"batched {bat:7.1f} s ({images / bat:6.0f} img/s)   speed-up {seq / bat:.2f}x", flush=True)
    for ipc in ipcs:
        for runs in [int(r) for r in args.rss_runs.split(",") if r.strip()]:
            out = subprocess.run([sys.executable, __file__, "--rss-child", f"{ipc},{runs}", "--batched-epochs", "2",
                                  "--dataset", args.dataset,
                                  *(["--data-dir", args.data_dir] if args.data_dir else [])],
                                 capture_output=True, text=True, check=True)
            base, peak = (float(v) for v in out.stdout.split()[-2:])
            print(f"peak RSS, batched, IPC {ipc}, R = {runs:2d}: {peak:6.0f} MiB ({peak - base:5.0f} MiB above the "
                  f"{base:.0f} MiB with the data loaded)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=30, help="timed training epochs (100 images each)")
    ap.add_argument("--amp", action="store_true", help="also time bf16 autocast")
    ap.add_argument("--full", action="store_true", help="time the full protocol on Fashion-MNIST IPC 10")
    ap.add_argument("--full-runs", type=int, default=5)
    ap.add_argument("--full-epochs", type=int, default=1000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="fashion_mnist",
                    help="--batched only: the dataset (cifar10 --data-dir DIR for the CIFAR-shaped Fashion-MNIST folder)")
    ap.add_argument("--layouts", default="nchw,channels_last", help="comma list: nchw, channels_last")
    ap.add_argument("--test-batches", default="500,2000", help="comma list of test batch sizes")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every measurement this often, interleaved, and report medians (noisy machines)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batched", action="store_true", help="sequential vs batched runs (part 4 only)")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batched-epochs", type=int, default=10)
    ap.add_argument("--rss-runs", default="1,5,10")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        ipc, runs = (int(v) for v in args.rss_child.split(","))
        return _rss_child(args.data_dir, ipc, runs, args.batched_epochs, args.dataset)
    if args.batched:
        return batched_report(args)
    from habacli.runtime.allocator import tune_host_allocator

    malloc_tuned = tune_host_allocator()  # as every haba command does; HABA_MALLOC=system turns it off
    device = torch.device(args.device)
    out: dict = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "malloc_tuned": malloc_tuned}
    out["matmul_fp32_gflops_before"] = measure_matmul_gflops(device=device)
    step_flops = 3 * module_flops(get_network("convnet", **SPEC), (3, 32, 32))
    layouts = [{"nchw": False, "channels_last": True}[x.strip()] for x in args.layouts.split(",")]
    amps = [None, "bf16"] if args.amp else [None]
    batches = [int(b) for b in args.test_batches.split(",")]
    train_runs: dict[str, list[float]] = {}
    test_runs: dict[str, list[float]] = {}
    for _ in range(max(args.rounds, 1)):  # interleaved, so a noisy neighbour hits every setting alike
        for amp in amps:
            for cl in layouts:
                key = f"{amp or 'fp32'}{'_channels_last' if cl else ''}"
                ips = train_throughput(device, args.epochs, amp=amp, channels_last=cl)
                train_runs.setdefault(key, []).append(ips)
                print(f"# train {key}: {ips:.0f} img/s", file=sys.stderr, flush=True)
        for amp, cl in [(a, c) for a in amps for c in layouts]:
            for batch in batches:
                key = f"batch{batch}{'_channels_last' if cl else ''}{'_bf16' if amp else ''}"
                test_runs.setdefault(key, []).append(test_pass_seconds(device, batch, channels_last=cl, amp=amp))
                print(f"# test {key}: {test_runs[key][-1]:.2f} s", file=sys.stderr, flush=True)
    train = {k: {"images_per_s": statistics.median(v), "gflops": statistics.median(v) * step_flops / 1e9,
                 "all_images_per_s": v} for k, v in train_runs.items()}
    out["train_100_images_dsa"] = train
    tests = {k: statistics.median(v) for k, v in test_runs.items()}
    out["test_pass_10k_all_seconds"] = test_runs
    out["test_pass_10k_seconds"] = tests
    out["matmul_fp32_gflops_after"] = measure_matmul_gflops(device=device)
    if args.full:
        out["full_protocol_fmnist_ipc10"] = full_protocol(args.device, args.data_dir, args.full_runs,
                                                          args.full_epochs, None)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"device {out['device']}, {out['threads']} threads, torch {out['torch']}, malloc tuned "
          f"{out['malloc_tuned']}; fp32 matmul "
          f"{out['matmul_fp32_gflops_before']:.0f} / {out['matmul_fp32_gflops_after']:.0f} GFLOP/s (before/after)")
    for k, v in train.items():
        spread = f"  [{min(v['all_images_per_s']):.0f}-{max(v['all_images_per_s']):.0f}]" if args.rounds > 1 else ""
        print(f"train 100 imgs + DSA [{k:>20}]: {v['images_per_s']:7.0f} img/s  ({v['gflops']:.0f} GFLOP/s){spread}")
    for k, v in tests.items():
        spread = f"  [{min(test_runs[k]):.2f}-{max(test_runs[k]):.2f}]" if args.rounds > 1 else ""
        print(f"test pass 10k [{k:>22}]: {v:6.2f} s{spread}")
    if args.full:
        f = out["full_protocol_fmnist_ipc10"]
        print(f"full protocol FMNIST IPC10 ({f['runs']} runs x {f['epochs'] + 1} epochs): {f['seconds']:.0f} s, "
              f"accuracy {100 * f['accuracy_mean']:.2f} +- {100 * f['accuracy_std']:.2f} %")


if __name__ == "__main__":
    main()
