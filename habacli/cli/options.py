"""The options every command shares, declared once (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the real data lives (default: $HABA_DATA, system folders, then the Hub)."),
]
