"""`haba expand`: decode an artifact into plain images (image folder, safetensors or parquet)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from habacli.cli.options import DeviceOption, JsonOption
from habacli.cli.progress import ProgressRenderer
from habacli.errors import UnknownNameError

FORMATS = ("imagefolder", "safetensors", "parquet")  # habacli.artifact.expand.FORMATS (kept torch-free here)


def expand_command(
    artifact: Annotated[str, typer.Argument(help="Artifact file or hf://datasets/ORG/NAME\\[@REV]\\[/FILE].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; must be empty or absent).")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="imagefolder (PNG + metadata.csv), safetensors, or parquet.")
    ] = "imagefolder",
    per_basis: Annotated[
        int | None, typer.Option("--per-basis", help="Keep k random hallucinators per basis instead of all.")
    ] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png, a contact sheet (rows: classes).")] = False,
    grid_columns: Annotated[int, typer.Option("--grid-columns", help="Column cap of the contact sheet.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --per-basis draw.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = False,
    device: DeviceOption = "cpu",
    as_json: JsonOption = False,
) -> None:
    """Expand an artifact: every basis x hallucinator pair becomes one labelled image."""
    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)
    from habacli import api  # lazy: haba --help never loads the library

    with ProgressRenderer(quiet=as_json and not sys.stderr.isatty(), transient=True) as progress:
        result = api.expand(
            artifact,
            out,
            fmt=fmt,
            per_basis=per_basis,
            grid=grid,
            seed=seed,
            overwrite=overwrite,
            device=device,
            max_grid_columns=grid_columns,
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.console import Console  # lazy: rich only when a command renders

    console = Console()
    pairs = f"{result.num_bases} bases x {result.per_basis or max(result.num_hallucinators, 1)}"
    console.print(
        f"[green]wrote[/green] {result.num_images} images ({pairs}, {result.num_classes} classes) "
        f"as {result.fmt} to [bold]{result.out}[/bold]"
    )
    if result.grid is not None:
        console.print(f"contact sheet: {result.grid}" + (f" ({result.grid_note})" if result.grid_note else ""))


def register(app: typer.Typer) -> None:
    """Add ``haba expand`` to the app."""
    app.command("expand")(expand_command)
