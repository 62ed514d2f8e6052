"""The one renderer of :class:`habacli.runtime.progress.Progress` events, on stderr.

On a terminal: one rich bar per stage (``event.description``), its numbers and message on the bar's
line, one-off events (``total is None``) printed above the bars; a finished stage's bar goes away
except the first (the command's own). Off a terminal: one plain line per stage (when it starts and
when it ends), when a stage's message changes, one-off lines, and a line every ``log_every``
iterations of distill (``kind == "iteration"``).
"""

from __future__ import annotations

import time
from typing import Any

from habacli.runtime.progress import Progress

_SHOWN_STATS = ("loss_dd", "loss_cos", "loss_adv", "val_acc", "test_accuracy")


def _fmt_stats(stats: Any) -> str:
    keys = [k for k in _SHOWN_STATS if k in stats] or list(stats)[:3]
    return " ".join(f"{k}={stats[k]:.4g}" for k in keys)


class ProgressRenderer:
    """A callable for the library's ``progress=`` arguments; use it as a context manager."""

    def __init__(self, *, quiet: bool = False, log_every: int | None = None, prefix: str = "", transient: bool = False):
        from rich.console import Console  # lazy: rich only when a command runs

        self.err = Console(stderr=True)
        self.quiet = quiet
        self.tty = self.err.is_terminal
        self.log_every = log_every or 10
        self.prefix = prefix
        self.transient = transient
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.first: str | None = None
        self.last_message: dict[str, str] = {}
        self.started: dict[str, tuple[float, int]] = {}  # description -> (time, done) at its first event

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def print(self, line: str) -> None:
        if not self.quiet:
            (self.bar.console if self.bar is not None else self.err).print(self.prefix + line, highlight=False)

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        if event.kind == "done":
            self.close()
            return
        if event.total is None:
            self.print(f"{event.description}: {event.message}" if event.message else event.description)
            return
        if self.tty:
            self._bar(event)
        else:
            self._line(event)

    # ------------------------------------------------------------------ terminal

    def _bar(self, event: Progress) -> None:
        if self.bar is None:
            from rich.progress import (  # lazy: rich only when a command runs
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bars  # lazy: rich only when a command renders

            self.bar = Bars(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.err,
                transient=self.transient,
            )
            self.bar.start()
        info = " ".join(x for x in (_fmt_stats(event.stats), event.message) if x)
        key = event.description
        if key not in self.tasks:
            self.first = self.first or key
            self.tasks[key] = self.bar.add_task(self.prefix + key, total=event.total, completed=event.done, info=info)
        else:
            self.bar.update(self.tasks[key], total=event.total, completed=event.done, info=info, visible=True)
        if event.total is not None and event.done >= event.total and key != self.first:
            self.bar.update(self.tasks.pop(key), visible=False)

    # ------------------------------------------------------------------ plain lines

    def _line(self, event: Progress) -> None:
        key = event.description
        now = time.perf_counter()
        first = key not in self.started
        if first:
            self.started[key] = (now, event.done)
        t0, done0 = self.started[key]
        changed = bool(event.message) and self.last_message.get(key) != event.message
        self.last_message[key] = event.message
        ended = event.total is not None and event.done >= event.total
        periodic = event.kind == "iteration" and event.done % self.log_every == 0
        if not (first or ended or changed or periodic):
            return
        rate = (event.done - done0) / max(now - t0, 1e-9)
        parts = [f"{key} {event.done}/{event.total}", _fmt_stats(event.stats), event.message]
        if not first and rate > 0 and event.total is not None:
            parts.append(f"{rate:.3g}/s eta {(event.total - event.done) / rate:.0f}s")
        self.print(" ".join(p for p in parts if p))
        if ended:
            del self.started[key]
