"""`haba push` and `haba pull`: share artifacts on the Hugging Face Hub (dataset repos)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from habacli.cli.options import JsonOption, QuietOption
from habacli.cli.progress import ProgressRenderer

_TOKEN_HELP = (
    "Hugging Face token (default: huggingface_hub's own: the HF_TOKEN env var, then the file "
    "`hf auth login` writes). Never printed."
)


_PUSH_EXAMPLES = """Examples:

  haba push runs/fm-ipc10.safetensors my-org/fashion-mnist-haba-ipc10

  haba push fm.safetensors my-org/fm --private --with-images -m "IPC 10, 5 hallucinators"
"""
_PULL_EXAMPLES = """Examples:

  haba pull my-org/fashion-mnist-haba-ipc10 --out ./fm

  haba pull my-org/fm@v1          (a branch, tag or commit)

  HF_HUB_OFFLINE=1 haba pull my-org/fm   (from the cache, no network)
"""


def _progress(quiet: bool) -> ProgressRenderer:
    """The progress renderer on stderr; also silences huggingface_hub's bars off a terminal."""
    if not sys.stderr.isatty():
        from huggingface_hub.utils import disable_progress_bars  # lazy: huggingface_hub

        disable_progress_bars()
    return ProgressRenderer(quiet=quiet)


def push_command(
    artifact: Annotated[str, typer.Argument(help="Artifact file (or hf://datasets/... reference) to upload.")],
    repo_id: Annotated[str, typer.Argument(metavar="ORG/NAME", help="Dataset repo to create or update.")],
    private: Annotated[bool, typer.Option("--private", help="Make the repo private (new or existing).")] = False,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch to commit to (created from main if missing).")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", help=_TOKEN_HELP, show_default=False)] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    with_images: Annotated[
        bool,
        typer.Option(
            "--with-images",
            help="Also upload the expanded images as parquet (enables the Hub's dataset viewer and load_dataset).",
        ),
    ] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Upload an artifact, its dataset card and a preview grid to a Hub dataset repo in one atomic commit."""
    from habacli import api  # lazy: haba --help never loads the library

    with _progress(quiet) as progress:
        result = api.push(
            artifact,
            repo_id,
            private=private,
            revision=revision,
            token=token,
            message=message,
            with_images=with_images,
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(
        f"pushed {len(result.files)} files to {result.repo_id}@{result.revision} "
        f"(commit {result.commit_sha[:12]}): {result.url}"
    )
    typer.echo(f"use it as: {result.ref}")


def pull_command(
    repo: Annotated[
        str, typer.Argument(metavar="ORG/NAME[@REV]", help="Dataset repo (or an hf://datasets/... reference).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also copy the artifact and its card into this folder.")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", help=_TOKEN_HELP, show_default=False)] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download an artifact through the Hugging Face cache (works offline once cached) and verify it."""
    from habacli import api  # lazy: haba --help never loads the library

    with _progress(quiet) as progress:
        result = api.pull(repo, out=out, token=token, progress=progress)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    at = f"@{result.commit_sha[:12]}" if result.commit_sha else ""
    typer.echo(f"pulled {result.repo_id}{at}, checksum verified: {result.path}")


def register(app: typer.Typer) -> None:
    """Add ``haba push`` and ``haba pull`` to the app."""
    app.command("push", epilog=_PUSH_EXAMPLES)(push_command)
    app.command("pull", epilog=_PULL_EXAMPLES)(pull_command)
