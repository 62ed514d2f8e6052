"""The one progress event of long work (distill, validation, experts, evaluate, data loading).

Library code never prints: it calls a :data:`ProgressFn` with :class:`Progress` events and the CLI
renders them (``habacli/cli/progress.py``: rich bars on a terminal, one line per stage otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One event of a stage of work.

    ``description`` names the stage (one bar per description: ``distill``, ``validation``, ``expert 3``,
    ``convnet run 1/5``, ``data``). ``done`` of ``total`` units (iterations, epochs, images) when
    ``total`` is set; ``total=None`` makes the event a one-off line (``message``). ``kind`` is the
    producer's word for the event (distill: start, iteration, validating, validation, checkpoint,
    done; experts: start, skip, expert, epoch, expert_done, done; evaluate: epoch; data: note);
    ``kind == "done"`` ends the work. ``stats`` are numbers shown next to the bar (losses, accuracy)."""

    kind: str
    description: str
    done: int = 0
    total: int | None = None
    stats: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


ProgressFn = Callable[[Progress], None]


def note(progress: ProgressFn | None, description: str, message: str) -> None:
    """Send a one-off line (``kind="note"``) when there is a callback."""
    if progress is not None:
        progress(Progress("note", description, message=message))
