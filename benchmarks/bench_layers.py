"""Where a ConvNet-3 step spends its time, layer by layer, and the ceiling the convolutions set.

Times every module of haba's ConvNet-3 on the activations it really sees (batch 100, CIFAR-shaped
32x32x3, fp32, NCHW as the CPU trains): the no-grad forward (the test pass) and forward + backward
(gradients to the input and the parameters, as in training; the first conv's input needs none).
Also the stock ``F.avg_pool2d`` next to haba's pool. The sum over the convolutions alone is an
upper bound on what any fp32 implementation built on these convolution kernels can reach:

    training ceiling  = 100 images / sum(conv forward + backward)
    test-pass floor   = 10,000 / 100 * sum(conv forward)

Also the instance norm on each map size in both layouts and dtypes: the stock op in NCHW and NHWC
next to haba's NHWC kernels (ATen's NHWC GroupNorm is slow below 1024 pixels), and each NHWC
forward's error on a map whose mean is 1000x its spread; and the closed-form double backward of the
instance norm, eager and compiled (what ``--compile`` runs for MTT and DC).

Usage:  python benchmarks/bench_layers.py [--batch 100] [--repeats 10] [--layout nchw|nhwc] [--bf16]
                                         [--no-norms] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from habacli.networks import get_network  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    return median_time(fn, repeats) * 1e3


def layer_times(batch: int, repeats: int, *, nhwc: bool = False, bf16: bool = False) -> list[dict]:
    """Forward and forward+backward milliseconds of each ConvNet-3 module on its real input shape,
    in NCHW or NHWC, fp32 or under bf16 autocast (as ``--amp bf16`` trains)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    net = get_network("convnet", channels=3, num_classes=10, height=32, width=32).to(memory_format=fmt)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    rows = []
    modules = [*net.features, torch.nn.Flatten(), net.classifier]
    for i, m in enumerate(modules):
        if isinstance(m, torch.nn.ReLU):
            m = torch.nn.ReLU()  # the network's is in place; time the same pass out of place
        with torch.no_grad(), autocast():
            y = m(x.clone())
        inp = x.clone().requires_grad_(i > 0)
        grad = torch.randn_like(y)
        params = [p for p in m.parameters()]
        wrt = ([inp] if i > 0 else []) + params

        def fwd() -> None:
            with torch.no_grad(), autocast():
                m(inp.detach())

        def fwd_bwd() -> None:
            with autocast():
                out = m(inp)
            if wrt:
                torch.autograd.grad(out, wrt, grad)

        kind = type(m).__name__
        row = {"layer": i, "module": kind, "input": list(x.shape), "forward_ms": _median_ms(fwd, repeats),
               "forward_backward_ms": _median_ms(fwd_bwd, repeats)}
        if kind == "AvgPool2x2" and not nhwc:
            row["stock_forward_ms"] = _median_ms(lambda: F.avg_pool2d(x, 2), repeats)
            xs = x.clone().requires_grad_()
            row["stock_forward_backward_ms"] = _median_ms(
                lambda: torch.autograd.grad(F.avg_pool2d(xs, 2), xs, grad), repeats)
        rows.append(row)
        x = y
    return rows


def norm_times(batch: int, repeats: int) -> list[dict]:
    """Instance norm forward and forward+backward ms: stock NCHW, stock NHWC, haba NHWC; NHWC errors."""
    from habacli.networks.instancenorm import InstanceNorm

    norm = InstanceNorm(128)
    rows = []
    for hw in (32, 16, 8):
        for dtype in (torch.float32, torch.bfloat16):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(batch, 128, hw, hw, generator=gen).to(dtype)
            grad = torch.randn(x.shape, generator=gen).to(dtype)
            row = {"map": [128, hw, hw], "dtype": str(dtype).removeprefix("torch.")}
            for name, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
                xf, gf = x.contiguous(memory_format=fmt), grad.contiguous(memory_format=fmt)
                xg = xf.clone().requires_grad_()
                for who, fn in (("stock", lambda t: F.group_norm(t, 128, norm.weight, norm.bias)), ("haba", norm)):
                    if name == "nchw" and who == "haba":
                        continue  # NCHW: haba runs ATen's kernels forward and backward
                    row[f"{who}_{name}_forward_ms"] = _median_ms(lambda: fn(xf.detach()), repeats)
                    row[f"{who}_{name}_forward_backward_ms"] = _median_ms(
                        lambda: torch.autograd.grad(fn(xg), [xg, norm.weight, norm.bias], gf), repeats)
            off = (torch.randn(4, 128, hw, hw, generator=gen) + 1000).contiguous(memory_format=torch.channels_last)
            exact = F.group_norm(off.double(), 128, norm.weight.double(), norm.bias.double())
            with torch.no_grad():
                row["stock_nhwc_max_error_at_mean_1000"] = (F.group_norm(off, 128, norm.weight, norm.bias).double()
                                                            - exact).abs().max().item()
                row["haba_nhwc_max_error_at_mean_1000"] = (norm(off).double() - exact).abs().max().item()
            rows.append(row)
    return rows


def double_backward_times(batch: int, repeats: int) -> list[dict]:
    """ms per call of the instance norm's closed-form double backward, eager and compiled (--compile)."""
    from habacli.networks.instancenorm import _closed_form

    fused = torch.compile(_closed_form, fullgraph=True)
    rows = []
    for hw in (32, 16, 8):
        for dtype in (torch.float32, torch.bfloat16):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(batch, 128, hw, hw, generator=gen)
            mean, rstd = x.mean((2, 3)), x.var((2, 3), correction=0).add(1e-5).rsqrt()
            dy, gdx = (torch.randn(x.shape, generator=gen).to(dtype) for _ in range(2))
            gamma, gg, gb = (torch.randn(128, generator=gen) for _ in range(3))
            args = (dy, x.to(dtype), gdx, gamma, mean, rstd, gg, gb, (True, True, True))
            t0 = time.perf_counter()
            fused(*args)
            compile_s = time.perf_counter() - t0
            rows.append({"map": [128, hw, hw], "dtype": str(dtype).removeprefix("torch."),
                         "eager_ms": _median_ms(lambda: _closed_form(*args), repeats),
                         "fused_ms": _median_ms(lambda: fused(*args), repeats), "first_call_s": compile_s})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw")
    ap.add_argument("--bf16", action="store_true", help="under bf16 autocast, as --amp bf16 trains")
    ap.add_argument("--no-norms", action="store_true", help="skip the instance-norm tables")
    ap.add_argument("--no-fused", action="store_true", help="skip the compiled double-backward table (compiles)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from habacli.runtime.allocator import tune_host_allocator

    tune_host_allocator()
    rows = layer_times(args.batch, args.repeats, nhwc=args.layout == "nhwc", bf16=args.bf16)
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
           "sum_of_layers_test_pass_10k_s": total_f * 1e-3 * 10_000 / args.batch,
           "layout": args.layout, "autocast": "bf16" if args.bf16 else "fp32",
           "instance_norm": [] if args.no_norms else norm_times(args.batch, args.repeats),
           "double_backward": [] if args.no_norms or args.no_fused else double_backward_times(args.batch, args.repeats)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"ConvNet-3, batch {args.batch}, CIFAR-shaped, {out['autocast']} {args.layout.upper()}, "
          f"{out['threads']} threads, torch {out['torch']}")
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
    if not out["instance_norm"]:
        return
    print(f"instance norm, batch {args.batch}: forward / forward+backward ms; NHWC max error at mean 1000 (fp32 map)")
    print(f"  {'map':14} {'dtype':9} {'stock NCHW':>15} {'stock NHWC':>15} {'haba NHWC':>15}   error stock / haba")
    for r in out["instance_norm"]:
        cells = [f"{r[k + '_forward_ms']:6.2f} /{r[k + '_forward_backward_ms']:7.2f}"
                 for k in ("stock_nchw", "stock_nhwc", "haba_nhwc")]
        print(f"  {str(r['map']):14} {r['dtype']:9} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}   "
              f"{r['stock_nhwc_max_error_at_mean_1000']:.2g} / {r['haba_nhwc_max_error_at_mean_1000']:.2g}")
    if out["double_backward"]:
        print(f"instance-norm double backward (closed form), batch {args.batch}, NCHW: eager / compiled ms per call")
        for r in out["double_backward"]:
            print(f"  {str(r['map']):14} {r['dtype']:9} {r['eager_ms']:7.2f} / {r['fused_ms']:6.2f}   "
                  f"({r['eager_ms'] / r['fused_ms']:.1f}x; first call {r['first_call_s']:.1f} s)")


if __name__ == "__main__":
    main()
