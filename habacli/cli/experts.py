"""`haba experts`: train MTT expert trajectories (one process, ``--shard i/n``, or under torchrun)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from habacli.cli.options import DataDirOption, DeviceOption, JsonOption, QuietOption
from habacli.cli.progress import ProgressRenderer


def experts_command(
    dataset: Annotated[str, typer.Argument(help="Dataset to train the experts on (see `haba datasets`).")],
    model: Annotated[str | None, typer.Option("--model", help="Network (default: the dataset's ConvNet).")] = None,
    num: Annotated[
        int,
        typer.Option(
            "--num",
            "--num-experts",
            "-n",
            help="Experts in the buffer (MTT: 100). Under "
            "torchrun write -n or --num-experts: torchrun reads --num as its --numa-binding.",
        ),
    ] = 100,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            "-e",
            help="Epochs per expert; a run reads epochs up to max_start_epoch - 1 + expert_epochs (MTT: 50).",
        ),
    ] = 50,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Buffer folder (default: $HABA_CACHE/experts/"
            "DATASET/MODEL[_zca], or ./experts/... without HABA_CACHE).",
        ),
    ] = None,
    zca: Annotated[
        bool | None,
        typer.Option("--zca/--no-zca", help="ZCA-whiten the data (default: on for cifar10/cifar100, off otherwise)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed; expert i's seed derives from (seed, i).")] = 0,
    device: DeviceOption = "auto",
    data_dir: DataDirOption = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="i/n: train only experts with index % n == i (machines without torchrun)."),
    ] = None,
    amp: Annotated[
        str | None,
        typer.Option(
            "--amp",
            help="bf16 or auto (bf16 where this CPU/GPU computes it natively, else fp32): autocast the training forward/backward; snapshots stay float32 (fp16 is refused: no loss scaling).",
        ),
    ] = None,
    subset: Annotated[
        int | None,
        typer.Option(
            "--subset",
            help="Train on a fixed random subset of N train images "
            "and test on at most N test images (tests and quick runs).",
        ),
    ] = None,
    lr: Annotated[
        float, typer.Option("--lr", help="SGD learning rate (MTT: 0.01, no momentum, no weight decay).")
    ] = 0.01,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size (MTT: 256).")] = 256,
    merge: Annotated[
        bool, typer.Option("--merge", help="Only rebuild manifest.json from the expert files in --out.")
    ] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train MTT expert trajectories: SGD (lr 0.01, no momentum), DSA, a parameter snapshot per epoch.

    Resumable: finished experts are skipped and an interrupted expert continues from its last epoch.
    Under torchrun (`python -m torch.distributed.run --nproc_per_node N -m habacli experts ...`) rank r
    trains the experts with index % N == r (on cuda:LOCAL_RANK with --device auto) and rank 0 writes the manifest.
    """
    from rich.console import Console  # lazy: rich only when a command renders

    from habacli import api  # lazy: haba --help never loads the library

    err = Console(stderr=True)
    rank = int(os.environ.get("RANK", "0") or 0)
    tag = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
    kw: dict[str, Any] = {
        "model": model,
        "num": num,
        "epochs": epochs,
        "out": out,
        "zca": zca,
        "seed": seed,
        "device": device,
        "data_dir": data_dir,
        "shard": shard,
        "amp": amp,
        "subset": subset,
        "lr": lr,
        "batch_size": batch_size,
        "merge": merge,
    }
    with ProgressRenderer(quiet=quiet or (rank != 0 and err.is_terminal), prefix=tag) as progress:
        result = api.experts(dataset, progress=progress, **kw)
    manifest = result.manifest or {}
    summary = {
        "out": str(result.out),
        "manifest": str(result.out / "manifest.json") if result.manifest else None,
        "num_experts": manifest.get("num_experts", 0),
        "trained": result.trained,
        "resumed": result.resumed,
        "skipped": result.skipped,
        "mean_final_test_accuracy": manifest.get("mean_final_test_accuracy"),
        "train_images_per_second": result.train_images_per_second,
        "seconds": round(result.seconds, 3),
        "rank": result.rank,
        "world_size": result.world_size,
    }
    if rank != 0:
        return
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif not quiet:
        acc = summary["mean_final_test_accuracy"]
        acc_s = f", mean final test accuracy {acc:.4f}" if acc is not None else ""
        err.print(
            f"{summary['num_experts']} experts in {result.out}{acc_s} (trained {len(result.trained)}, "
            f"skipped {len(result.skipped)})",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``haba experts`` to the app."""
    app.command("experts")(experts_command)
