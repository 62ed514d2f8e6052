"""Every error haba raises on purpose. The CLI maps them to one line and an exit code.

Exit codes: 2 for bad input (:class:`UsageError` and its subclasses), 1 for a runtime
failure (:class:`HabaError` otherwise).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


class HabaError(Exception):
    """Root of haba's errors. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(HabaError, ValueError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A registry lookup failed; the message suggests close names."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (choose from: {', '.join(choices)})")
        self.kind, self.name, self.choices = kind, name, choices


class ConfigError(UsageError):
    """An invalid option value or combination of options."""


class ArtifactError(UsageError):
    """A file is not a valid haba artifact. The message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """The artifact path does not exist (or is not a file)."""


class DataNotFoundError(UsageError, FileNotFoundError):
    """Real data is not available locally; the message says where to put which files."""


class ExpertsError(UsageError):
    """Expert trajectories are missing, corrupted or do not match the run."""


class HubError(HabaError):
    """A Hugging Face Hub operation failed (network, server, permissions)."""


class HubAuthError(HubError):
    """The Hub rejected the credentials (or none were given where they are needed)."""

    exit_code = 2


class Interrupted(HabaError):
    """A long run was interrupted by the user after saving its state."""

    exit_code = 130
