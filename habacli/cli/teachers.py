"""`haba teachers`: train (or reuse) the BatchNorm teacher networks INFER distils against."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from habacli.cli.options import DataDirOption, DeviceOption, JsonOption, QuietOption
from habacli.cli.progress import ProgressRenderer

EPILOG = (
    "Examples:\n\n"
    "  haba teachers fashion_mnist --epochs 2 --out teachers\n\n"
    "  haba teachers cifar10 --archs cifar --epochs 200 --device cuda   (GPU preset, unverified here)\n\n"
    "  haba distill fashion_mnist --ipc 10 --method infer --teachers teachers --out fm-infer.safetensors"
)


def teachers_command(
    dataset: Annotated[str, typer.Argument(help="Dataset to train the teachers on (see `haba datasets`).")],
    archs: Annotated[
        str,
        typer.Option(
            "--archs",
            help="cpu (four small ConvNet-BN variants, minutes on a CPU), cifar (ResNet-18, MobileNetV2, "
            "EfficientNet-B0, ShuffleNet: the paper's CIFAR family, for a GPU, unverified here) or "
            "comma-separated architecture names.",
        ),
    ] = "cpu",
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Training epochs per teacher.")] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Teacher folder (default: $HABA_CACHE/teachers, or ./teachers)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed; each teacher's seed derives from it.")] = 0,
    subset: Annotated[
        int | None, typer.Option("--subset", help="Train on a fixed random subset of N images (tests, quick runs).")
    ] = None,
    device: DeviceOption = "auto",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train INFER's teacher networks (AdamW, crop + flip) and store them as safetensors with their test
    accuracy. Resumable and reusable: a finished teacher with the same settings is kept."""
    from habacli import api  # lazy: haba --help never loads the library

    with ProgressRenderer(quiet=quiet or as_json and not sys.stderr.isatty()) as render:
        result = api.teachers(
            dataset,
            archs=archs,
            epochs=epochs,
            out=out,
            seed=seed,
            device=device,
            data_dir=data_dir,
            subset=subset,
            progress=render,
        )
    summary = result.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    for t in summary["teachers"]:
        state = "trained" if t["trained_now"] else "reused"
        flag = "" if t["verified"] else " (unverified preset)"
        typer.echo(f"{t['arch']}: test accuracy {t['test_accuracy'] * 100:.2f}% ({state}, {t['epochs']} epochs){flag}")
    typer.echo(f"teachers in {summary['out']}")


def register(app: typer.Typer) -> None:
    """Add ``haba teachers`` to the app."""
    app.command("teachers", epilog=EPILOG)(teachers_command)
