"""The package's shape, checked: no import cycle among habacli's modules, and `haba --help` /
`import habacli` stay torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest

grimp = pytest.importorskip("grimp")


def _cycles() -> list[list[str]]:
    """Strongly connected components (> 1 module) of habacli's runtime import graph, function-level
    imports included (TYPE_CHECKING imports are not run, so they are left out)."""
    graph = grimp.build_graph("habacli", exclude_type_checking_imports=True)
    edges = {m: {t for t in graph.find_modules_directly_imported_by(m) if t in graph.modules} for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan, iterative enough for ~100 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycle_anywhere() -> None:
    assert _cycles() == []


@pytest.mark.parametrize("argv", [["--help"], ["distill", "--help"], ["evaluate", "--help"], ["experts", "--help"]])
def test_help_imports_no_torch(argv: list[str]) -> None:
    code = (
        "import sys; from habacli.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# What `haba --help` defers besides torch (docs/benchmarks.md, "haba --help start-up"): typer's help renderer
# imports rich.markdown / rich.traceback (markdown-it, pygments) only for modes haba does not use.
DEFERRED_FROM_HELP = ("numpy", "PIL", "yaml", "huggingface_hub", "markdown_it", "pygments", "rich.markdown", "tomllib")


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"]])
def test_help_defers_heavy_modules(argv: list[str]) -> None:
    code = (
        "import sys; from habacli.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"loaded = [m for m in {DEFERRED_FROM_HELP!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import rich.markdown, rich.traceback\n"  # the placeholders are gone: the real modules load
        "assert hasattr(rich.markdown, 'MarkdownIt') and hasattr(rich.traceback, 'install')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_import_habacli_imports_no_torch() -> None:
    code = "import sys, habacli, habacli.api, habacli.data, habacli.artifact; assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
