"""The ``haba`` command line: a thin Typer app over :mod:`habacli.api` (console script ``habacli.cli:main``).

One module per command registers itself on :data:`app` (see :mod:`habacli.cli.app`). Nothing here
imports torch at module level, so ``haba --help`` is fast.
"""

from habacli.cli.app import app, main

__all__ = ["app", "main"]
