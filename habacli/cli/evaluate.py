"""`haba evaluate`: train fresh networks on a distilled set (or random real images) and test them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from habacli.cli.options import DataDirOption, DeviceOption, JsonOption, QuietOption
from habacli.cli.progress import ProgressRenderer
from habacli.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from rich.table import Table

    from habacli.evaluate.run import EvalResult


def evaluate_command(
    target: Annotated[
        str, typer.Argument(help="Artifact (file or hf:// reference), or a dataset with --baseline random.")
    ],
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            "-m",
            help="Comma-separated networks, e.g. convnet,resnet18,vgg11,alexnet (default: the dataset's ConvNet).",
        ),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", help="Fresh networks per model (run r uses seed + r).")] = 5,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Training epochs (default: the artifact's recipe's, else 1000; the standard protocol runs epochs + 1).",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="artifact: follow the artifact's evaluation recipe when it has one (INFER: soft labels, MixUp, KL "
            "at T, AdamW, final epoch reported); standard: the hard-label protocol for every artifact.",
        ),
    ] = "artifact",
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help="Learning rate for every network (default: the artifact's learned lr for the network it was learned on, 0.01 for the others).",
        ),
    ] = None,
    expansion: Annotated[
        str,
        typer.Option(
            "--expansion", help="sampled: each basis under a random hallucinator per epoch (official); full: all pairs."
        ),
    ] = "sampled",
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="'random': evaluate IPC random real images of DATASET instead.")
    ] = None,
    ipc: Annotated[int | None, typer.Option("--ipc", help="Images per class for --baseline random.")] = None,
    teachers: Annotated[
        Path | None,
        typer.Option(
            "--teachers",
            help="--baseline random: label the images with this teacher folder's ensemble (soft labels) and train "
            "under INFER's recipe (400 epochs unless --epochs): INFER's random-real-images row.",
            rich_help_panel="INFER",
        ),
    ] = None,
    compensators: Annotated[
        bool,
        typer.Option(
            "--compensators/--no-compensators",
            help="An INFER artifact: --no-compensators trains on its natural images and their soft labels alone "
            "(INFER's no-compensator ablation: what the compensators add).",
            rich_help_panel="INFER",
        ),
    ] = True,
    zca: Annotated[
        bool | None,
        typer.Option(
            "--zca/--no-zca",
            help="--baseline random: whiten with ZCA (default: as the dataset's paper preset for MTT at this IPC).",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="test: score on the real test split; val: on the held-out part of train that distill validated on "
            "(choose settings here, never on test; --baseline random: distill's default split, fraction 0.1, seed 0).",
        ),
    ] = "test",
    seed: Annotated[int, typer.Option("--seed", help="Base seed.")] = 0,
    device: DeviceOption = "auto",
    amp: Annotated[
        str | None,
        typer.Option(
            "--amp",
            help="bf16 or auto (bf16 where this CPU/GPU computes it natively, else fp32): autocast training and the test pass (opt-in).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 256,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    curve: Annotated[Path | None, typer.Option("--curve", help="Write a learning-curve PNG here.")] = None,
    test_every: Annotated[
        int | None, typer.Option("--test-every", help="Also test every N epochs (for --curve).")
    ] = None,
    standardize_batches: Annotated[
        bool,
        typer.Option(
            "--standardize-batches",
            help="Reproduce the official HaBa code's per-batch standardisation (off: see docs/fidelity.md).",
        ),
    ] = False,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile each network: a one-off compile (seconds to a minute) for faster steps; pays off on long protocols.",
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Train fresh networks from scratch on a distilled set and report test accuracy (mean ± std)."""
    if baseline is not None and baseline != "random":
        raise UnknownNameError("baseline", baseline, ["random"])
    if baseline is None and ipc is not None:
        raise ConfigError("--ipc only applies to --baseline random")
    if baseline == "random" and ipc is None:
        raise ConfigError("--baseline random needs --ipc N")
    if baseline is None and teachers is not None:
        raise ConfigError("--teachers only applies to --baseline random (an INFER artifact stores its soft labels)")
    if baseline is None and zca is not None:
        raise ConfigError("--zca/--no-zca only apply to --baseline random (an artifact records its own ZCA)")
    if baseline == "random" and (expansion != "sampled" or standardize_batches):
        raise ConfigError("--expansion and --standardize-batches do not apply to --baseline random")
    if baseline == "random" and not compensators:
        raise ConfigError("--no-compensators applies to an INFER artifact, not to --baseline random")

    from rich.console import Console  # lazy: rich only when a command runs

    from habacli import api  # lazy: haba --help never loads the library

    err = Console(stderr=True)
    kw = {
        "models": models,
        "runs": runs,
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
        "device": device,
        "data_dir": data_dir,
        "amp": amp,
        "batch_size": batch_size,
        "test_every": test_every,
        "compile": compile_,
        "split": split,
    }
    with ProgressRenderer(quiet=quiet, transient=True) as progress:
        if baseline == "random":
            result = api.evaluate_random(target, ipc, zca=zca, teachers=teachers, progress=progress, **kw)
        else:
            result = api.evaluate(
                target,
                expansion=expansion,
                standardize_batches=standardize_batches,
                recipe=recipe,
                compensators=compensators,
                progress=progress,
                **kw,
            )
    if curve is not None:
        from habacli.evaluate.report import save_curves  # lazy: haba --help never loads the library

        save_curves(result, curve)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        Console().print(results_table(result))
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}")
    if curve is not None and not as_json:
        err.print(f"learning curves: {curve}")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def results_table(result: EvalResult) -> Table:
    """The terminal table: One row per model: mean +- std (%), runs, each run's accuracy."""
    from rich.table import Table  # lazy: rich is loaded only to render

    s = result.settings
    what = f"{result.source} ({result.dataset}"
    if s.get("baseline") == "random":
        what += f", {s['ipc']} random real images per class"
        if s.get("recipe") == "infer":
            what += f", the teachers' soft labels at T = {s['temperature']:g}, INFER's recipe"
    elif s.get("recipe") == "artifact":
        what += f", {s['num_instances']} instances, the artifact's recipe: soft labels at T = {s['temperature']:g}"
    else:
        what += f", {s.get('num_bases', '?')} bases x {s.get('num_hallucinators', 0)} hallucinators, {s.get('expansion')} expansion"
    what += ")"
    table = Table(title=f"haba evaluate: {what}", title_justify="left", min_width=96)
    table.add_column("model", style="bold")
    table.add_column("accuracy %", justify="right", style="green")
    table.add_column("runs", justify="right")
    table.add_column("per run %", style="dim")
    for name, r in result.models.items():
        table.add_row(
            name, f"{_pct(r.mean)} ± {_pct(r.std)}", str(len(r.accuracies)), " ".join(_pct(a) for a in r.accuracies)
        )
    by_model = s.get("lr_by_model") or {}
    if len(set(by_model.values())) > 1:
        sources = s.get("lr_source_by_model") or {}
        lr_note = "lr " + ", ".join(f"{n} {v:g} ({sources.get(n, '?')})" for n, v in by_model.items())
    else:
        lr_note = f"lr {s['lr']:g} ({s['lr_source']})"
    table.caption = (
        f"{s['epochs_run']} epochs{' (final epoch reported)' if s.get('reported') else ''}, {lr_note}, "
        f"batch {s['batch_size']}, DSA {s['dsa']}"
        f"{', ZCA' if s.get('zca') else ''}{', bf16 autocast' if s.get('amp') else ''}; "
        f"tested on all {s['test_images']} real "
        f"{'held-out validation (train split)' if s.get('split') == 'val' else 'test'} images; ± is the {s['std']}; "
        f"seed {s['seed']}, {s['device']}, {result.wall_time_s:.1f} s"
    )
    table.caption_justify = "left"
    return table


def register(app: typer.Typer) -> None:
    """Add ``haba evaluate`` to the app."""
    app.command("evaluate")(evaluate_command)
