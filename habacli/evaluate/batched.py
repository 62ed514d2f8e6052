"""R evaluation runs of one architecture trained together, as one wide network.

:func:`train_runs` is what ``haba evaluate``, the random baseline and the validation inside ``haba
distill`` call: R fresh networks (run ``r`` seeded with ``seeds[r]``) trained and tested under the
protocol of :func:`habacli.evaluate.protocol.train_and_test`. Where the architecture has a wide form
(:func:`habacli.networks.wide.widen`: the ConvNet family with instance/group norm or none), the runs
of a group step together: one grouped-conv forward/backward and one optimizer step for all of them,
and the test pass scores every run's network on each test batch. Each run keeps its own generator,
drawn in the same order as the sequential loop (initialisation, then per epoch its training set, its
shuffle and, per batch, its DSA draws), so each run's result is the sequential one up to float
rounding (tests/test_evaluate_batched.py). Otherwise (BatchNorm, LayerNorm, ResNet, VGG, AlexNet,
``compile``, the CPU unless ``HABA_EVAL_GROUP`` > 1 (:func:`default_batched`), or ``HABA_EVAL_GROUP=1``)
the runs train one after another with ``train_and_test``.

Memory grows with the group: runs are split into groups so that the estimated activation memory
stays under half of the memory available (``MemAvailable`` on Linux, free device memory on CUDA);
``HABA_EVAL_GROUP=k`` sets the group size instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from habacli.errors import ConfigError
from habacli.evaluate.protocol import (
    HABA_TEST_BATCH,
    MOMENTUM,
    TEST_BATCH,
    WEIGHT_DECAY,
    TrainResult,
    TrainSet,
    check_args,
    nhwc_test_pass,
    spec_shape,
    standardize,
    train_and_test,
    use_channels_last,
)
from habacli.networks import get_network
from habacli.networks.wide import WideConvNet, widen
from habacli.runtime.amp import check_amp
from habacli.runtime.device import resolve_amp
from habacli.runtime.progress import Progress, ProgressFn

MEMORY_FRACTION = 0.5  # of the available memory, for the activations of one group
ACTIVATION_COPIES = 4  # saved activations + gradients + temporaries per feature-map element while training


def batchable(model_name: str, spec: Any) -> bool:
    """Whether ``model_name`` has a wide form (its runs can train batched)."""
    net = get_network(model_name, generator=torch.Generator(), **spec_shape(spec))
    return widen([net]) is not None


def default_batched(device: torch.device) -> bool:
    """Whether runs train batched by default: on CUDA yes; on the CPU only with ``HABA_EVAL_GROUP`` > 1.

    On the CPU measured here (a shared 2-core Xeon, docs/benchmarks.md "Batched evaluation") the R
    narrow steps were faster on one thread (batched 0.74x at IPC 1, 0.90x at IPC 10: the wide maps
    leave the caches), and on two contended threads the figures swung both ways; so the CPU keeps the
    sequential loop unless asked. On a GPU the batched step replaces R launches of small kernels by
    one of R-times-wider ones (not measured here: no GPU).
    """
    env = os.environ.get("HABA_EVAL_GROUP", "").strip()
    if device.type == "cuda" or not env:
        return device.type == "cuda"
    try:
        return int(env) > 1
    except ValueError:
        return True  # group_size() reports the bad value


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # unknown: assume 4 GiB


def activation_numel(model_name: str, spec: Any) -> int:
    """Elements of every feature map one image makes in ``model_name`` (one no-grad forward)."""
    shape = spec_shape(spec)
    net = get_network(model_name, generator=torch.Generator(), **shape)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, shape["channels"], shape["height"], shape["width"]))
    for h in hooks:
        h.remove()
    return sum(sizes)


def group_size(model_name: str, spec: Any, runs: int, batch: int, device: torch.device) -> int:
    """How many runs train together: ``HABA_EVAL_GROUP`` if set, else as many as keep one group's
    activations (``batch`` images per run, fp32) under :data:`MEMORY_FRACTION` of the available memory.
    The no-grad test pass sends ``TEST_BATCH // R`` images through each run's network."""
    env = os.environ.get("HABA_EVAL_GROUP", "").strip()
    if env:
        try:
            k = int(env)
        except ValueError:
            raise ConfigError(f"HABA_EVAL_GROUP must be a whole number >= 1, got {env!r}") from None
        if k < 1:
            raise ConfigError(f"HABA_EVAL_GROUP must be a whole number >= 1, got {env!r}")
        return min(k, runs)
    images = max(batch * ACTIVATION_COPIES, TEST_BATCH // runs * 2)  # training step, or the no-grad test pass
    per_run = images * activation_numel(model_name, spec) * 4
    fits = int(MEMORY_FRACTION * _available_bytes(device) // max(per_run, 1))
    return max(1, min(runs, fits))


def _groups(runs: int, size: int) -> list[range]:
    """``runs`` split into ``ceil(runs / size)`` consecutive groups of near-equal size."""
    count = math.ceil(runs / size)
    bounds = [round(i * runs / count) for i in range(count + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@torch.no_grad()
def wide_test_accuracy(
    wide: WideConvNet,
    x: Tensor,
    y: Tensor,
    *,
    channels_last: bool = False,
    standardize_batches: bool = False,
    amp: str | None = None,
) -> list[float]:
    """Top-1 accuracy of every run of ``wide`` on ``(x, y)``: each test batch goes through all R networks."""
    was_training = wide.training
    wide.eval()
    runs = wide.runs
    correct = torch.zeros(runs, dtype=torch.long, device=y.device)
    batch_size = HABA_TEST_BATCH if standardize_batches else max(1, TEST_BATCH // runs)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        if standardize_batches:
            xb = standardize(xb)
        xw = xb.repeat(1, runs, 1, 1)  # run r reads channel block r
        if channels_last:
            xw = xw.contiguous(memory_format=torch.channels_last)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = wide(xw)  # [R, T, K]
        correct += (logits.argmax(dim=2) == y[start : start + batch_size]).sum(dim=1)
    wide.train(was_training)
    return [float(c) / max(int(x.shape[0]), 1) for c in correct.tolist()]


def _sgd(net: nn.Module, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def _train_group(
    model_name: str,
    trains: Sequence[TrainSet],
    test: tuple[Tensor, Tensor],
    *,
    spec: Any,
    epochs: int,
    lr: float,
    batch_size: int,
    dsa: Callable[[Tensor, torch.Generator], Tensor] | None,
    seeds: Sequence[int],
    device: torch.device,
    amp: str | None,
    test_every: int | None,
    standardize_batches: bool,
    tick: Callable[[int], None],
) -> list[TrainResult]:
    runs = len(seeds)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    nets = [get_network(model_name, generator=g, **spec_shape(spec)) for g in gens]  # as train_and_test draws
    wide = widen(nets)
    if wide is None:  # batchable() said yes; a custom network may still say no
        raise ConfigError(f"{model_name} has no batched form")
    del nets
    wide = wide.to(device)
    cl = use_channels_last(device)
    cl_test = cl or nhwc_test_pass(device, amp)
    if cl:
        wide = wide.to(memory_format=torch.channels_last)
    wide.train()
    x_test, y_test = test
    optimizer = _sgd(wide, lr)
    decay_after = epochs // 2 + 1
    total_epochs = epochs + 1
    losses: list[Tensor] = []
    curves: list[list[tuple[int, float]]] = [[] for _ in range(runs)]
    for ep in range(total_epochs):
        sets = [t if not callable(t) else t(ep, g) for t, g in zip(trains, gens, strict=True)]
        n = int(sets[0][0].shape[0])
        if n == 0:
            raise ConfigError("the training set is empty")
        if any(int(x.shape[0]) != n for x, _ in sets):
            raise ConfigError("batched runs need training sets of one size")
        perms = [torch.randperm(n, generator=g).to(x.device) for g, (x, _) in zip(gens, sets, strict=True)]
        epoch_loss = torch.zeros(runs, device=device)
        for start in range(0, n, batch_size):
            xbs, ybs = [], []
            for (x, y), perm, g in zip(sets, perms, gens, strict=True):
                idx = perm[start : start + batch_size]
                xb = x[idx]
                if standardize_batches:
                    xb = standardize(xb)
                if dsa is not None:
                    xb = dsa(xb, g)
                xbs.append(xb)
                ybs.append(y[idx])
            b = int(xbs[0].shape[0])
            xw = torch.stack(xbs, dim=1).flatten(1, 2)  # [B, R*C, H, W]: run r in channel block r
            if cl:
                xw = xw.contiguous(memory_format=torch.channels_last)
            yw = torch.stack(ybs).flatten(0, 1)  # [R*B] (or [R*B, K] soft labels)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                logits = wide(xw).flatten(0, 1)  # [R*B, K]
                per_run = F.cross_entropy(logits, yw, reduction="none").view(runs, b).mean(dim=1)
            optimizer.zero_grad(set_to_none=True)
            per_run.sum().backward()  # run r's parameters get run r's gradient
            optimizer.step()
            epoch_loss += per_run.detach().float() * b
        losses.append(epoch_loss / n)
        if ep == decay_after:
            lr *= 0.1
            optimizer = _sgd(wide, lr)
        if test_every is not None and (ep + 1) % test_every == 0 and ep + 1 < total_epochs:
            accs = wide_test_accuracy(
                wide, x_test, y_test, channels_last=cl_test, standardize_batches=standardize_batches, amp=amp
            )
            for curve, a in zip(curves, accs, strict=True):
                curve.append((ep + 1, a))
        tick(ep + 1)
    accs = wide_test_accuracy(
        wide, x_test, y_test, channels_last=cl_test, standardize_batches=standardize_batches, amp=amp
    )
    loss_rows = torch.stack(losses).T.cpu().tolist() if losses else [[] for _ in range(runs)]
    out = []
    for r in range(runs):
        if test_every is not None:
            curves[r].append((total_epochs, accs[r]))
        out.append(TrainResult(accuracy=accs[r], train_loss_curve=loss_rows[r], test_curve=curves[r]))
    return out


def train_runs(
    model_name: str,
    trains: Sequence[TrainSet],
    test: tuple[Tensor, Tensor],
    *,
    spec: Any,
    epochs: int,
    lr: float,
    seeds: Sequence[int],
    device: str | torch.device,
    batch_size: int = 256,
    dsa: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    amp: str | None = None,
    test_every: int | None = None,
    standardize_batches: bool = False,
    compile: bool = False,
    images_per_epoch: int | None = None,
    batched: bool | None = None,
    progress: ProgressFn | None = None,
) -> list[TrainResult]:
    """Train and test ``len(seeds)`` fresh ``model_name`` networks, run ``r`` on ``trains[r]`` with
    seed ``seeds[r]``; the results of :func:`train_and_test` for each run, in order.

    ``images_per_epoch`` (the size of each run's set, when ``trains`` are callables) sizes the groups;
    ``batched=False`` forces the sequential loop (``None``: batched where the network allows it).
    ``progress`` gets ``Progress("epoch", model_name, done, total)`` over runs x epochs, with the
    runs in flight as the message.
    """
    check_args(epochs, lr, batch_size, test_every)
    if len(trains) != len(seeds):
        raise ConfigError(f"{len(trains)} training sets for {len(seeds)} runs")
    device = torch.device(device)
    amp = resolve_amp(check_amp(amp), device)
    runs, per_run = len(seeds), epochs + 1
    total = runs * per_run
    batch = min(batch_size, images_per_epoch or batch_size)
    if batched is None:
        batched = runs > 1 and not compile and default_batched(device) and batchable(model_name, spec)
    size = group_size(model_name, spec, runs, batch, device) if batched else 1
    results: list[TrainResult] = []
    for group in _groups(runs, size):
        base = group.start * per_run
        what = f"run {group.start + 1}/{runs}" if len(group) == 1 else f"runs {group.start + 1}-{group.stop}/{runs}"

        def tick(done: int, _base: int = base, _k: int = len(group), _what: str = what) -> None:
            if progress is not None:
                progress(Progress("epoch", model_name, _base + _k * done, total, message=_what))

        kw: dict[str, Any] = dict(
            spec=spec,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            dsa=dsa,
            device=device,
            amp=amp,
            test_every=test_every,
            standardize_batches=standardize_batches,
        )
        if len(group) == 1:
            r = group.start

            def each(e: Progress, _tick: Callable[[int], None] = tick) -> None:
                _tick(e.done)

            res = train_and_test(model_name, trains[r], test, seed=seeds[r], compile=compile, progress=each, **kw)
            results.append(res)
        else:
            trains_g = [trains[r] for r in group]
            results.extend(_train_group(model_name, trains_g, test, seeds=[seeds[r] for r in group], tick=tick, **kw))
    return results
