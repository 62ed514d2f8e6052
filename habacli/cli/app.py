"""The ``haba`` command line: a thin Typer app over :mod:`habacli.api`.

Each command lives in ``habacli/cli/<name>.py`` and registers itself on :data:`app`.
Nothing here (or in the command modules' top level) imports torch, so ``haba --help`` is fast.
"""

from __future__ import annotations

import difflib
import os
import sys
import types
import warnings
from typing import Any

import typer

from habacli import __version__
from habacli.errors import HabaError

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
    from habacli.cli import (  # lazy: the command modules register on the app defined here
        datasets,
        distill,
        evaluate,
        expand,
        experts,
        hub,
        info,
        teachers,
    )

    for module in (info, datasets, distill, experts, teachers, expand, evaluate, hub):
        module.register(app)


_register_commands()


def _debug() -> bool:
    return os.environ.get("HABA_DEBUG", "") not in ("", "0", "false", "False")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as one line on stderr, like errors (``HABA_DEBUG=1`` keeps Python's form with its source)."""
    (file or sys.stderr).write(f"warning: {message}\n")


class _DeferredMarkdown:
    """Stands in for ``rich.markdown.Markdown`` in typer's help renderer (used only in markdown mode)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        from rich.markdown import Markdown  # lazy: markdown-it and pygments cost ~50 ms of every --help

        return Markdown(*args, **kwargs)


class _DeferredTraceback:
    """Stands in for ``rich.traceback.Traceback`` (used only by typer's pretty exceptions, off here)."""

    @classmethod
    def from_exception(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        from rich.traceback import Traceback  # lazy: pygments costs ~20 ms of every --help

        return Traceback.from_exception(*args, **kwargs)


def _light_typer_rich_utils() -> None:
    """Import ``typer.rich_utils`` (the help renderer) without ``rich.markdown`` / ``rich.traceback``.

    typer imports both at module level but uses them only in ``rich_markup_mode="markdown"`` and for
    pretty exceptions, neither of which haba uses; together with markdown-it and pygments they were
    ~100 ms of ``haba --help`` (docs/benchmarks.md). Placeholder modules stand in while typer's module
    runs and are removed at once, so any later ``import rich.markdown`` gets the real module.
    """
    if "typer.rich_utils" in sys.modules:
        return
    stubs = {
        "rich.markdown": _DeferredMarkdown,
        "rich.traceback": _DeferredTraceback,
    }
    placed = {}
    for name, cls in stubs.items():
        if name not in sys.modules:
            module = types.ModuleType(name)
            setattr(module, cls.__name__.replace("_Deferred", ""), cls)
            placed[name] = sys.modules[name] = module
    try:
        import typer.rich_utils  # noqa: F401  # lazy: imported here under the placeholders above
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn known errors into one line on stderr."""
    if not _debug():
        warnings.showwarning = _show_warning
    _light_typer_rich_utils()
    try:
        # not standalone: click's parse errors come back here and print as one line, like haba's own
        rv = app(args=argv, prog_name="haba", standalone_mode=False)
    except typer.TyperException as e:  # typer's (vendored) click: parse errors, bad values, missing arguments
        if _debug():
            raise
        if type(e).__name__ != "NoArgsIsHelpError":  # bare `haba`: the help was printed, exit 2 as before
            sys.stderr.write(f"error: {usage_error_line(e)}\n")
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(1)
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
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)  # as click's standalone mode does


def usage_error_line(e: Exception) -> str:
    """A click parse error (bad value, unknown option, missing argument) as one line, with the command's
    ``--help`` to look at. Unknown options suggest only close spellings (``--bogus`` suggests nothing)."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoSuchOption":
        option = str(getattr(e, "option_name", ""))
        names = [o for p in (ctx.command.params if ctx else []) for o in (*p.opts, *p.secondary_opts)]
        close = difflib.get_close_matches(option, names, n=2, cutoff=0.75)
        msg = f"no such option {option}" + (f"; did you mean {' or '.join(close)}?" if close else "")
    else:
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
    where = ctx.command_path if ctx is not None else "haba"
    return " ".join(f"{msg} (see '{where} --help')".split())
