"""Progress of long loops, for the command line: bars with an ETA on a terminal, plain lines
otherwise (a log file, CI, a pipe).

Library loops take an optional callback `progress(task, done, total)` and stay quiet by
default; a command opens `report_progress(console)` and hands its callback down. One task is
one named loop (a job of a study, the edit metrics of one state); `done` counts its items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressFn = Callable[[str, int, int], None]


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class PlainLines:
    """A progress callback that prints one line when a task starts, at every tenth of its
    total and when it ends: `task: done/total (pct%) elapsed m:ss, ETA m:ss`."""

    def __init__(self, console: Any, steps: int = 10) -> None:
        self.console = console
        self.steps = steps
        self._start: dict[str, float] = {}
        self._shown: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        now = time.perf_counter()
        first = task not in self._start
        start = self._start.setdefault(task, now)
        bucket = self.steps if total <= 0 else min(self.steps, done * self.steps // total)
        if not first and bucket <= self._shown.get(task, -1):
            return
        self._shown[task] = bucket
        elapsed = now - start
        pct = f"{100 * done / total:.0f}%" if total > 0 else "?"
        eta = ""
        if 0 < done < total and elapsed > 0:
            eta = f", ETA {_clock(elapsed * (total - done) / done)}"
        self.console.print(
            f"{task}: {done}/{total} ({pct}) elapsed {_clock(elapsed)}{eta}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


class Bars:
    """A progress callback drawing one rich bar per task with done/total, elapsed and ETA."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self._tasks: dict[str, Any] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self._tasks:
            self._tasks[task] = self.progress.add_task(task, total=total)
        self.progress.update(self._tasks[task], completed=done, total=total)


@contextmanager
def report_progress(console: Any = None, *, enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback for the duration of the block: rich bars on a terminal, plain
    lines when the console is not one, nothing when `enabled` is False."""
    if not enabled:
        yield lambda task, done, total: None
        return
    if console is None:
        from rich.console import Console

        console = Console()
    if not console.is_terminal:
        yield PlainLines(console)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=console) as bar:
        yield Bars(bar)


def track(items: list[Any], task: str, progress: ProgressFn | None) -> Iterator[Any]:
    """Iterate `items`, reporting each one done to `progress` (if any) under `task`."""
    n = len(items)
    if progress is not None:
        progress(task, 0, n)
    for i, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(task, i, n)
