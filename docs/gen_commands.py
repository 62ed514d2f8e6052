"""Regenerate the `--help` blocks of docs/commands.md from the installed CLI (run from the repo root):

    python docs/gen_commands.py

Each "## haba CMD" section's first ```text block is replaced by `haba CMD --help` rendered 110 columns wide."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent / "commands.md"


def help_text(command: str) -> str:
    env = {**os.environ, "COLUMNS": "110", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "habacli", command, "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    return "\n".join(line.rstrip() for line in out.splitlines()).strip("\n")


def main() -> None:
    text = DOC.read_text()

    def block(m: re.Match[str]) -> str:
        return f"## haba {m.group(1)}\n\n```text\n\n{help_text(m.group(1))}\n\n```"

    new = re.sub(r"## haba (\w+)\n\n```text\n.*?\n```", block, text, flags=re.S)
    DOC.write_text(new)
    print("docs/commands.md:", "updated" if new != text else "unchanged")


if __name__ == "__main__":
    main()
