"""Train one fresh network on a (synthetic) set and test it: the DC/DSA/DM/MTT protocol.

As the reference ``evaluate_synset`` (baselines.md section 6): SGD momentum 0.9, weight decay
5e-4, ``epochs + 1`` epochs (``range(Epoch + 1)``), lr x 0.1 after epoch ``epochs // 2 + 1`` with
the optimizer rebuilt (momentum reset), shuffled batches of 256, per-sample DSA on every batch,
one test pass at the end. The training set is one tensor on the device (no DataLoader); the test
set is scored in large no-grad batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from habacli.errors import ConfigError
from habacli.networks import get_network
from habacli.runtime.amp import check_amp
from habacli.runtime.device import resolve_amp
from habacli.runtime.progress import Progress, ProgressFn

TrainSet = tuple[Tensor, Tensor] | Callable[[int, torch.Generator], tuple[Tensor, Tensor]]

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
TEST_BATCH = 500
HABA_TEST_BATCH = 128  # the official loader's test batch, used only with standardize_batches


@dataclass
class TrainResult:
    """Outcome of :func:`train_and_test`."""

    accuracy: float  # in [0, 1], on the whole test set after the last epoch
    train_loss_curve: list[float] = field(default_factory=list)  # mean loss of each epoch
    test_curve: list[tuple[int, float]] = field(default_factory=list)  # (epochs done, accuracy)


def spec_shape(spec: Any) -> dict[str, int]:
    """``channels, num_classes, height, width`` of a DatasetSpec or its dict form."""
    get = spec.get if isinstance(spec, Mapping) else lambda k: getattr(spec, k)
    return {k: int(get(k)) for k in ("channels", "num_classes", "height", "width")}


def use_channels_last(device: torch.device) -> bool:
    """Whether training runs in channels_last memory format on ``device``.

    Measured (benchmarks/bench_evaluate.py, bench_layers.py): on CUDA it feeds the tensor cores' NHWC
    kernels; on the CPU NHWC training was slower in fp32 and bf16 on every CPU tried (the instance
    norm costs more in NHWC than the convolutions gain, even with AMX). See also :func:`nhwc_test_pass`.
    """
    return device.type == "cuda"


def nhwc_test_pass(device: torch.device, amp: str | None = None) -> bool:
    """Whether the no-grad test pass feeds NHWC inputs: on CUDA, not on the CPU.

    On the CPU both dtypes are faster in NCHW (10k CIFAR-shaped images through ConvNet-3 on a Xeon
    with AMX, medians of four: fp32 5.8 s NCHW against 6.7 s NHWC, bf16 4.7 against 5.1 s; level on
    an EPYC; docs/benchmarks.md). NHWC maps also need haba's own instance norm there
    (:mod:`habacli.networks.instancenorm`), ATen's being slow below 1024 pixels and inaccurate above.
    ``amp`` is accepted for callers that pass it; the answer does not depend on it.
    """
    return device.type == "cuda"


def standardize(x: Tensor) -> Tensor:
    """HaBa's evaluation quirk (haba.md section 3): a batch minus its mean, over its std (whole tensor)."""
    return (x - x.mean()) / x.std()


@torch.no_grad()
def test_accuracy(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int = TEST_BATCH,
    channels_last: bool = False,
    standardize_batches: bool = False,
    amp: str | None = None,
) -> float:
    """Top-1 accuracy of ``net`` on ``(x, y)`` in eval mode, in large no-grad batches.
    ``standardize_batches`` standardises each batch of 128 as HaBa's official test loop does;
    ``amp='bf16'`` autocasts the forward (opt-in, like the training side)."""
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    if standardize_batches:
        batch_size = HABA_TEST_BATCH
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        if standardize_batches:
            xb = standardize(xb)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = net(xb)
        correct += (logits.argmax(dim=1) == y[start : start + batch_size]).sum()
    net.train(was_training)
    return float(correct.item()) / max(int(x.shape[0]), 1)


def _sgd(net: nn.Module, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def check_args(epochs: int, lr: float, batch_size: int, test_every: int | None) -> None:
    """The protocol's own checks of its numbers (:class:`ConfigError`)."""
    if epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise ConfigError(f"the learning rate must be > 0, got {lr}")
    if batch_size < 1:
        raise ConfigError(f"the batch size must be >= 1, got {batch_size}")
    if test_every is not None and test_every < 1:
        raise ConfigError(f"--test-every must be >= 1, got {test_every}")


def train_and_test(
    model_name: str,
    train: TrainSet,
    test: tuple[Tensor, Tensor],
    *,
    spec: Any,
    epochs: int,
    lr: float,
    batch_size: int = 256,
    dsa: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    seed: int,
    device: str | torch.device,
    amp: str | None = None,
    test_every: int | None = None,
    standardize_batches: bool = False,
    progress: ProgressFn | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train a fresh ``model_name`` on ``train`` and return its accuracy on ``test``.

    ``train`` is a fixed ``(x, y)`` pair of model-space tensors, or a callable
    ``(epoch, generator) -> (x, y)`` giving each epoch's set (HaBa's sampled expansion). ``test`` is
    ``(x, y)`` in model space. Network init, shuffling, DSA and sampling all draw from one
    generator seeded with ``seed``, so a run is reproducible on a given device. ``amp='bf16'``
    autocasts the training forward/backward and the test pass. ``test_every=n`` also scores the test set every n
    epochs (``test_curve``). ``standardize_batches`` reproduces HaBa's official evaluation quirk
    (every train batch, before DSA, and every test batch of 128 standardised by its own mean/std);
    off by default. ``compile`` wraps the network in ``torch.compile`` for training and testing.
    """
    check_args(epochs, lr, batch_size, test_every)
    device = torch.device(device)
    amp = resolve_amp(check_amp(amp), device)
    generator = torch.Generator().manual_seed(int(seed))
    net = get_network(model_name, generator=generator, **spec_shape(spec)).to(device)
    cl = use_channels_last(device)
    cl_test = cl or nhwc_test_pass(device, amp)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    model = torch.compile(net) if compile else net
    x_test, y_test = test
    optimizer = _sgd(net, lr)
    decay_after = epochs // 2 + 1
    total_epochs = epochs + 1
    losses: list[Tensor] = []
    test_curve: list[tuple[int, float]] = []
    fixed = None if callable(train) else train
    for ep in range(total_epochs):
        x, y = fixed if fixed is not None else train(ep, generator)
        n = int(x.shape[0])
        if n == 0:
            raise ConfigError("the training set is empty")
        perm = torch.randperm(n, generator=generator).to(x.device)
        epoch_loss = torch.zeros((), device=x.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            if standardize_batches:
                xb = standardize(xb)
            if dsa is not None:
                xb = dsa(xb, generator)
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.detach().float() * idx.numel()
        losses.append(epoch_loss / n)
        if ep == decay_after:
            lr *= 0.1
            optimizer = _sgd(net, lr)
        if test_every is not None and (ep + 1) % test_every == 0 and ep + 1 < total_epochs:
            test_curve.append(
                (
                    ep + 1,
                    test_accuracy(
                        model, x_test, y_test, channels_last=cl_test, standardize_batches=standardize_batches, amp=amp
                    ),
                )
            )
        if progress is not None:
            progress(Progress("epoch", model_name, ep + 1, total_epochs))
    accuracy = test_accuracy(
        model, x_test, y_test, channels_last=cl_test, standardize_batches=standardize_batches, amp=amp
    )
    if test_every is not None:
        test_curve.append((total_epochs, accuracy))
    curve = torch.stack(losses).cpu().tolist() if losses else []
    return TrainResult(accuracy=accuracy, train_loss_curve=curve, test_curve=test_curve)
