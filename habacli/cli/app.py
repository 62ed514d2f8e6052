"""The ``haba`` command line: a thin Typer app over :mod:`habacli.api`.

Each command lives in ``habacli/cli/<name>.py`` and registers itself on :data:`app`.
Nothing here (or in the command modules' top level) imports torch, so ``haba --help`` is fast.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from habacli import __version__

app = typer.Typer(
    name="haba",
    help="Dataset distillation by factorization (HaBa): distill a dataset into bases and "
    "hallucinators, expand, evaluate, and share it on the Hugging Face Hub.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"haba {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Dataset distillation by factorization (HaBa)."""


def _register_commands() -> None:
    from habacli.cli import datasets, distill, evaluate, expand, experts, hub, info

    for module in (info, datasets, distill, experts, expand, evaluate, hub):
        module.register(app)


_register_commands()


def _debug() -> bool:
    return os.environ.get("HABA_DEBUG", "") not in ("", "0", "false", "False")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as one line on stderr, like errors (``HABA_DEBUG=1`` keeps Python's form with its source)."""
    (file or sys.stderr).write(f"warning: {message}\n")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn known errors into one line on stderr."""
    from habacli.errors import HabaError

    if not _debug():
        warnings.showwarning = _show_warning
    try:
        app(args=argv, prog_name="haba")
    except HabaError as e:
        if _debug():
            raise
        sys.stderr.write(f"error: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if _debug():
            raise
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except (OSError, MemoryError) as e:
        if _debug():
            raise
        sys.stderr.write(f"error: {type(e).__name__}: {e}\n")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if _debug():
            raise
        sys.stderr.write(f"error: internal error ({type(e).__name__}: {e}); set HABA_DEBUG=1 for a traceback\n")
        sys.exit(1)
