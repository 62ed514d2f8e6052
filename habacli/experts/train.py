"""Training MTT expert trajectories (``haba experts``), on one process, a shard, or under torchrun.

Each expert is a fresh network trained with plain SGD (lr 0.01, no momentum, no weight
decay; MTT's buffer.py) on the real train split in model space, batch 256, per-sample DSA,
with a CLONED flat parameter snapshot after initialisation and after every epoch.

Expert ``i``'s randomness (initialisation, shuffling, DSA) comes from one generator seeded
from ``(seed, i)`` only, so an expert is bit-identical whichever rank, shard or resumed run
trains it (on the same device kind and thread count). Expert ``i`` belongs to worker
``i % n`` (torchrun rank or ``--shard r/n``); workers write disjoint files and the manifest
is rebuilt deterministically from the files present.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from habacli.data import RealData, fit_zca, get_spec, load_split
from habacli.errors import ConfigError, ExpertsError
from habacli.evaluate.protocol import nhwc_test_pass
from habacli.experts.layout import ParamLayout
from habacli.experts.store import (
    FORMAT,
    PartialState,
    check_config,
    config_of,
    list_expert_files,
    read_header,
    read_manifest,
    read_partial,
    rebuild_manifest,
    remove_partial,
    write_expert,
    write_partial,
)
from habacli.networks import default_network, get_network
from habacli.runtime.amp import check_amp
from habacli.runtime.device import pick_device, resolve_amp, warn_if_emulated
from habacli.runtime.progress import Progress, ProgressFn
from habacli.transforms.augment import dsa_for

#: datasets whose paper setting whitens with ZCA (MTT/HaBa on CIFAR); every other dataset does not
ZCA_DATASETS = frozenset({"cifar10", "cifar100"})
ZCA_EPS = 0.1


@dataclass
class ExpertsResult:
    """What :func:`train_experts` did."""

    out: Path
    manifest: dict[str, Any] | None
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    seconds: float = 0.0
    train_images_per_second: float | None = None
    rank: int = 0
    world_size: int = 1


def default_zca(dataset: str) -> bool:
    """The paper's ZCA choice for ``dataset`` (on for CIFAR-10/100, off otherwise)."""
    return dataset.lower() in ZCA_DATASETS


def default_experts_dir(dataset: str, model: str, zca: bool, subset: int | None = None) -> Path:
    """``$HABA_CACHE/experts/<dataset>/<model>[_zca][_subN]``, or ``./experts/...`` without HABA_CACHE."""
    root = Path(os.environ["HABA_CACHE"]) / "experts" if os.environ.get("HABA_CACHE") else Path("experts")
    leaf = model + ("_zca" if zca else "") + (f"_sub{subset}" if subset else "")
    return root / dataset / leaf


def expert_seed(seed: int, index: int) -> int:
    """A 63-bit seed for expert ``index`` of a run seeded ``seed`` (numpy SeedSequence mixing)."""
    lo, hi = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(hi) << 32 | int(lo)) & ((1 << 63) - 1))


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"r/n"`` -> ``(r, n)`` with ``0 <= r < n``."""
    if shard is None or isinstance(shard, tuple):
        return shard
    try:
        r, n = (int(p) for p in str(shard).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if n < 1 or not 0 <= r < n:
        raise ConfigError(f"--shard {shard}: need 0 <= i < n")
    return r, n


def _world() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return int(os.environ.get("RANK", "0") or 0), world, int(os.environ.get("LOCAL_RANK", "0") or 0)


def _autocast(device: torch.device, amp: str | None):
    if amp is None:
        return contextlib.nullcontext
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return lambda: torch.autocast(device.type, dtype=dtype)


def _model_space(
    dataset: str, split: str, *, device: torch.device, zca: Any, data_dir: Any, limit: int | None, seed: int
):
    data = load_split(dataset, split, data_dir=data_dir)
    real = RealData.build(data, device=device, zca=zca)
    x, y = real.all_model()
    if limit is not None and limit < len(y):
        g = torch.Generator().manual_seed(int(seed))
        keep = torch.randperm(len(y), generator=g)[:limit].sort().values.to(y.device)
        x, y = x[keep], y[keep]
    return data.spec, real, x.contiguous(), y


@torch.no_grad()
def _accuracy(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast,
    batch: int = 500,
    amp: str | None = None,
    tick: Callable[[int], None] | None = None,
) -> float:
    """Test accuracy of ``net`` on ``(x, y)``; ``tick(images done)`` after each batch."""
    nhwc = nhwc_test_pass(x.device, amp)
    net.eval()
    correct = 0
    for i in range(0, len(y), batch):
        xb = x[i : i + batch]
        if nhwc:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast():
            correct += int((net(xb).argmax(1) == y[i : i + batch]).sum())
        if tick is not None:
            tick(min(i + batch, len(y)))
    net.train()
    return correct / max(len(y), 1)


def train_experts(
    dataset: str,
    *,
    model: str | None = None,
    num: int = 100,
    epochs: int = 50,
    out: str | os.PathLike | None = None,
    zca: bool | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    shard: str | tuple[int, int] | None = None,
    amp: str | None = None,
    subset: int | None = None,
    lr: float = 0.01,
    batch_size: int = 256,
    dsa: bool = True,
    merge: bool = False,
    progress: ProgressFn | None = None,
) -> ExpertsResult:
    """Train experts ``0..num-1`` (this worker's share) into ``out`` and rebuild the manifest.

    Finished expert files are skipped; an unfinished expert resumes from its last epoch.
    ``merge=True`` only rebuilds ``manifest.json`` from the files present. ``subset`` trains on a
    fixed random subset of that many train images and tests on at most that many test images
    (for tests and quick runs). Raises :class:`ConfigError` for bad options and
    :class:`ExpertsError` when ``out`` holds experts of another configuration.
    """
    t_start = time.perf_counter()
    emit = progress or (lambda event: None)
    if num < 1 or epochs < 1:
        raise ConfigError(f"--num and --epochs must be >= 1 (got {num} and {epochs})")
    if lr <= 0 or batch_size < 1:
        raise ConfigError("--lr must be > 0 and --batch-size >= 1")
    if subset is not None and subset < 1:
        raise ConfigError(f"--subset must be >= 1, got {subset}")
    amp = check_amp(amp)
    rank, world, local_rank = _world()
    shard_t = parse_shard(shard)
    if world > 1 and shard_t is not None:
        raise ConfigError("--shard cannot be combined with torchrun (the rank already picks the experts)")
    worker, workers = (rank, world) if world > 1 else (shard_t or (0, 1))
    spec = get_spec(dataset, data_dir=data_dir)
    model = model or default_network(spec)
    zca = default_zca(spec.name) if zca is None else bool(zca)
    folder = Path(out) if out is not None else default_experts_dir(spec.name, model, zca, subset)
    result = ExpertsResult(out=folder, manifest=None, rank=rank, world_size=world)
    if merge:
        result.manifest = rebuild_manifest(folder)
        if result.manifest is None:
            raise ExpertsError(f"{folder}: no expert files to merge")
        result.seconds = time.perf_counter() - t_start
        return result

    dev = pick_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    amp = resolve_amp(amp, dev)
    warn_if_emulated(dev, amp)
    group = False
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(days=7))
            group = True
    try:
        mine = [i for i in range(num) if i % workers == worker]
        zca_obj = fit_zca(spec.name, data_dir=data_dir, eps=ZCA_EPS) if zca else None
        _, real, x_train, y_train = _model_space(
            spec.name, "train", device=dev, zca=zca_obj, data_dir=data_dir, limit=subset, seed=seed
        )
        _, _, x_test, y_test = _model_space(
            spec.name, "test", device=dev, zca=zca_obj, data_dir=data_dir, limit=subset, seed=seed + 1
        )
        make = lambda g: get_network(
            model,
            channels=spec.channels,
            num_classes=spec.num_classes,
            height=spec.height,
            width=spec.width,
            generator=g,
        )
        layout = ParamLayout.of(make(torch.Generator().manual_seed(0)))
        augment = dsa_for(spec) if dsa else None
        config = {
            "format": FORMAT,
            "dataset": spec.name,
            "model": model,
            "channels": spec.channels,
            "height": spec.height,
            "width": spec.width,
            "num_classes": spec.num_classes,
            "zca": zca,
            "zca_eps": ZCA_EPS if zca else None,
            "normalize_mean": [float(v) for v in torch.as_tensor(real.normalize_mean).reshape(-1).tolist()],
            "normalize_std": [float(v) for v in torch.as_tensor(real.normalize_std).reshape(-1).tolist()],
            "epochs": epochs,
            "optimizer": "sgd",
            "lr": lr,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "batch_size": batch_size,
            "dsa": augment.config() if augment is not None else None,
            "amp": amp,
            "seed": seed,
            "subset": subset,
            "train_images": len(y_train),
            "test_images": len(y_test),
            "num_params": layout.size,
            "params": layout.to_json(),
        }
        existing = list_expert_files(folder)
        if existing:  # refuse to mix configurations in one folder
            first_path = next(iter(existing.values()))
            check_config(first_path, config_of(read_header(first_path)[0]), config)
        autocast = _autocast(dev, amp)
        images_seen, train_seconds = 0, 0.0
        emit(
            Progress(
                "start", "experts", 0, len(mine), message=f"{len(mine)} of {num} experts x {epochs} epochs -> {folder}"
            )
        )
        finished = 0
        for i in mine:
            if i in existing:
                check_config(existing[i], config_of(read_header(existing[i])[0]), config)
                result.skipped.append(i)
                finished += 1
                emit(Progress("skip", "experts", finished, len(mine), message=f"expert {i}: already done, skipped"))
                continue
            seen, secs, resumed = _train_one(
                i, folder, config, layout, make, augment, x_train, y_train, x_test, y_test, dev, autocast, emit
            )
            finished += 1
            emit(Progress("expert_done", "experts", finished, len(mine), message=f"expert {i} done"))
            images_seen += seen
            train_seconds += secs
            result.trained.append(i)
            if resumed:
                result.resumed.append(i)
        if train_seconds > 0:
            result.train_images_per_second = images_seen / train_seconds
        if world > 1:
            dist.barrier()
            if rank == 0:
                result.manifest = rebuild_manifest(folder)
            dist.barrier()
            if rank != 0:
                result.manifest = read_manifest(folder)
        else:
            result.manifest = rebuild_manifest(folder)
    finally:
        if group:
            dist.destroy_process_group()
    result.seconds = time.perf_counter() - t_start
    emit(Progress("done", "experts", len(result.trained) + len(result.skipped), None))
    return result


def _train_one(index, folder, config, layout, make, augment, x_train, y_train, x_test, y_test, dev, autocast, emit):
    """Train (or finish) expert ``index``; returns ``(train images seen, train seconds, resumed)``."""
    epochs, bs, n = config["epochs"], config["batch_size"], len(y_train)
    s = expert_seed(config["seed"], index)
    meta = {**config, "index": index, "expert_seed": s}
    g = torch.Generator().manual_seed(s)
    net = make(g).to(dev)
    net.train()
    trajectory = torch.empty(epochs + 1, layout.size, dtype=torch.float32)
    partial = read_partial(folder, index, {**meta, "test_accuracy": []})
    if partial is not None:
        done = partial.rows.shape[0] - 1
        trajectory[: done + 1] = partial.rows
        layout.load_into(net, partial.rows[-1])
        g.set_state(partial.generator_state)
        accs = list(partial.test_accuracy)
    else:
        done = 0
        trajectory[0] = layout.flatten(net).cpu()
        accs = [_accuracy(net, x_test, y_test, autocast, amp=config.get("amp"))]
    emit(Progress("expert", f"expert {index}", done, epochs))
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.0, weight_decay=0.0)
    seen, secs = 0, 0.0
    n_test = len(y_test)
    steps = max(1, (n + bs - 1) // bs)
    every = max(1, steps // 20)  # ~20 in-epoch events: an epoch on a CPU can take minutes

    def within(epoch: int, images: int, what: str) -> None:
        emit(Progress("images", f"expert {index} epoch", images, n + n_test, message=f"epoch {epoch}: {what}"))

    for epoch in range(done + 1, epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g).to(dev)
        within(epoch, 0, "training")
        for step, b in enumerate(range(0, n, bs)):
            if step and step % every == 0:
                within(epoch, b, "training")
            idx = perm[b : b + bs]
            x = x_train[idx]
            if augment is not None:
                x = augment(x, g)
            with autocast():
                loss = F.cross_entropy(net(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        epoch_secs = time.perf_counter() - t0
        secs += epoch_secs
        seen += n
        trajectory[epoch] = layout.flatten(net).cpu()  # a copy: never the live parameter storage
        if not torch.isfinite(trajectory[epoch]).all():
            raise ExpertsError(f"expert {index} diverged (non-finite parameters after epoch {epoch})")
        accs.append(
            _accuracy(
                net,
                x_test,
                y_test,
                autocast,
                amp=config.get("amp"),
                tick=lambda k, _e=epoch: within(_e, n + k, f"test pass ({n_test} images)"),
            )
        )
        if epoch < epochs:
            write_partial(folder, index, meta, PartialState(trajectory[: epoch + 1].clone(), g.get_state(), accs))
        rate = n / max(epoch_secs, 1e-9)
        emit(
            Progress(
                "epoch",
                f"expert {index}",
                epoch,
                epochs,
                {"test_accuracy": accs[-1], "loss": float(loss.detach()), "images_per_second": rate},
                message=f"test acc {accs[-1]:.4f}, {rate:.0f} img/s",
            )
        )
    write_expert(folder, index, trajectory, {**meta, "test_accuracy": accs})
    remove_partial(folder, index)
    return seen, secs, partial is not None
