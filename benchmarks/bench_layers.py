"""Where a ConvNet-3 step spends its time, layer by layer, and the ceiling the convolutions set.

Times every module of haba's ConvNet-3 on the activations it really sees (batch 100, CIFAR-shaped
32x32x3, fp32, NCHW as the CPU trains): the no-grad forward (the test pass) and forward + backward
(gradients to the input and the parameters, as in training; the first conv's input needs none).
Also the stock ``F.avg_pool2d`` next to haba's pool. The sum over the convolutions alone is an
upper bound on what any fp32 implementation built on these convolution kernels can reach:

    training ceiling  = 100 images / sum(conv forward + backward)
    test-pass floor   = 10,000 / 100 * sum(conv forward)

Usage:  python benchmarks/bench_layers.py [--batch 100] [--repeats 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from habacli.networks import get_network  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    return median_time(fn, repeats) * 1e3


def layer_times(batch: int, repeats: int) -> list[dict]:
    """Forward and forward+backward milliseconds of each ConvNet-3 module on its real input shape."""
    torch.manual_seed(0)
    net = get_network("convnet", channels=3, num_classes=10, height=32, width=32)
    x = torch.randn(batch, 3, 32, 32)
    rows = []
    modules = [*net.features, torch.nn.Flatten(), net.classifier]
    for i, m in enumerate(modules):
        if isinstance(m, torch.nn.ReLU):
            m = torch.nn.ReLU()  # the network's is in place; time the same pass out of place
        with torch.no_grad():
            y = m(x.clone())
        inp = x.clone().requires_grad_(i > 0)
        grad = torch.randn_like(y)
        params = [p for p in m.parameters()]
        wrt = ([inp] if i > 0 else []) + params

        def fwd() -> None:
            with torch.no_grad():
                m(inp.detach())

        def fwd_bwd() -> None:
            out = m(inp)
            if wrt:
                torch.autograd.grad(out, wrt, grad)

        kind = type(m).__name__
        row = {"layer": i, "module": kind, "input": list(x.shape), "forward_ms": _median_ms(fwd, repeats),
               "forward_backward_ms": _median_ms(fwd_bwd, repeats)}
        if kind == "AvgPool2x2":
            row["stock_forward_ms"] = _median_ms(lambda: F.avg_pool2d(x, 2), repeats)
            xs = x.clone().requires_grad_()
            row["stock_forward_backward_ms"] = _median_ms(
                lambda: torch.autograd.grad(F.avg_pool2d(xs, 2), xs, grad), repeats)
        rows.append(row)
        x = y
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from habacli.allocator import tune_host_allocator

    tune_host_allocator()
    rows = layer_times(args.batch, args.repeats)
    convs = [r for r in rows if r["module"].endswith("Conv2d")]
    conv_f = sum(r["forward_ms"] for r in convs)
    conv_fb = sum(r["forward_backward_ms"] for r in convs)
    total_f = sum(r["forward_ms"] for r in rows)
    total_fb = sum(r["forward_backward_ms"] for r in rows)
    out = {"batch": args.batch, "threads": torch.get_num_threads(), "torch": torch.__version__, "layers": rows,
           "conv_forward_ms": conv_f, "conv_forward_backward_ms": conv_fb,
           "train_ceiling_images_per_s": 1e3 * args.batch / conv_fb,
           "test_pass_10k_floor_s": conv_f * 1e-3 * 10_000 / args.batch,
           "sum_of_layers_train_images_per_s": 1e3 * args.batch / total_fb,
           "sum_of_layers_test_pass_10k_s": total_f * 1e-3 * 10_000 / args.batch}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"ConvNet-3, batch {args.batch}, CIFAR-shaped, fp32 NCHW, {out['threads']} threads, torch {out['torch']}")
    print(f"  {'#':>2} {'module':12} {'input':18} {'fwd ms':>8} {'fwd+bwd ms':>11}   stock avg_pool2d")
    for r in rows:
        stock = (f"   {r['stock_forward_ms']:.2f} / {r['stock_forward_backward_ms']:.2f}"
                 if "stock_forward_ms" in r else "")
        print(f"  {r['layer']:>2} {r['module']:12} {str(r['input']):18} {r['forward_ms']:8.2f} "
              f"{r['forward_backward_ms']:11.2f}{stock}")
    print(f"convolutions: {conv_f:.1f} ms forward, {conv_fb:.1f} ms forward+backward of {total_f:.1f} / {total_fb:.1f}")
    print(f"ceiling set by the convolutions: training {out['train_ceiling_images_per_s']:.0f} img/s, "
          f"10k test pass {out['test_pass_10k_floor_s']:.2f} s")
    print(f"sum of all layers: training {out['sum_of_layers_train_images_per_s']:.0f} img/s, "
          f"10k test pass {out['sum_of_layers_test_pass_10k_s']:.2f} s")


if __name__ == "__main__":
    main()
