"""What every command module of the CLI shares: the console, the error handler and options.

Command modules import this module only (never `editrisk.cli`), so no file imports the app
that imports it.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from editrisk.errors import EditriskError, FileError

console = Console()
F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
DtypeOpt = typer.Option("float32", help="float32, bfloat16 or float16")


def fail(message: str) -> typer.Exit:
    """Print `message` as one line on stderr; return the exit (code 2) for the caller to raise."""
    line = " ".join(str(message).split())
    print(f"editrisk: error: {line}", file=sys.stderr)
    return typer.Exit(2)


def cli_errors(fn: F) -> F:
    """Turn editrisk's input errors, and files that cannot be read or written (a read-only
    folder, a file where a folder is needed), into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EditriskError as err:
            raise fail(str(err)) from None
        except OSError as err:
            raise fail(str(FileError.of(err))) from None

    return wrapper  # type: ignore[return-value]


def load_delta(path: Any) -> Any:
    """The Delta saved at `path` for a command to apply: refused when it holds no update."""
    from editrisk.delta import Delta

    d = Delta.load(path)
    if not len(d):
        raise EditriskError(f"{path}: the delta holds no update")
    return d


def fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits, None as empty."""
    return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)


def set_threads(threads: int = 0) -> int:
    """Set torch's CPU threads: `threads`, or (0) as many as the cores other processes
    leave free, so a competing process slows editrisk down, not to a crawl."""
    import torch

    from editrisk.settings import free_cores

    n = threads if threads > 0 else free_cores()
    torch.set_num_threads(n)
    return n


def choices(text: str, known: tuple[str, ...], option: str, empty_ok: bool) -> list[str]:
    """A comma-separated option value as a list, refusing unknown or repeated names (and an
    empty list unless `empty_ok`) before any work is done."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in known]
    if unknown:
        raise EditriskError(f"{option}: unknown {unknown}; choose from {list(known)}")
    if len(set(names)) != len(names):
        raise EditriskError(f"{option}: repeats a name: {names}")
    if not names and not empty_ok:
        raise EditriskError(f"{option}: name at least one of {list(known)}")
    return names


def _stacked(header: str, width: int = 12) -> str:
    """`header` broken into lines of about `width` characters after `.`, `_`, `-` or spaces
    (metric names such as knowledge.prob_compare), so a column is as wide as its values."""
    parts = re.findall(r"[^._\- ]*[._\- ]?", header)
    lines = [""]
    for part in filter(None, parts):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.strip() for line in lines)


class FitTable(Table):
    """A rich table that, when it is wider than the console, first stacks the long headers
    of its one-line columns (names and numbers keep their width), then lets the free-text
    columns wrap."""

    def __rich_console__(self, console: Any, options: Any) -> Any:
        headers = {id(c): c.header for c in self.columns if c.no_wrap}
        for width in (12, 9):  # stack more tightly only while the table is still too wide
            if self.__rich_measure__(console, options).maximum <= options.max_width:
                break
            for col in self.columns:
                if isinstance(headers.get(id(col)), str):
                    col.header = _stacked(headers[id(col)], width)
        yield from super().__rich_console__(console, options)


def table(
    *headers: str,
    wrap: tuple[str, ...] = (),
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> Table:
    """A table that fits the console: the columns named in `wrap` (free text: prompts,
    completions) wrap and give up the room the others need; every other column (names,
    numbers, short values) stays on one line under a header stacked when room is short, cut
    with an ellipsis only when nothing is left."""
    t = FitTable(title=title, caption=caption, show_header=show_header)
    for h in headers:
        if h in wrap:
            t.add_column(h, overflow="fold", min_width=10)
        else:
            t.add_column(h, no_wrap=True, overflow="ellipsis")
    return t


def next_steps(output: str | Path | None, *commands: str) -> None:
    """End a command: where its output is, and the next command(s) to run."""
    if output is not None:
        console.print(f"[bold]output:[/bold] {output}", soft_wrap=True)
    for i, cmd in enumerate(commands):
        label = "next:" if i == 0 else "  or:"
        console.print(f"[bold]{label}[/bold]   {cmd}", soft_wrap=True, highlight=False)


def q(path: str | Path) -> str:
    """A path or name quoted for a shell command line."""
    return shlex.quote(str(path))


def study_progress(progress: Callable[[str, int, int], None], n_jobs: int) -> Callable[..., None]:
    """Forward the engine's per-job progress to `progress`, plus one `all jobs` task that
    counts finished jobs (its ETA is the study's)."""
    finished: set[str] = set()
    progress("all jobs", 0, n_jobs)

    def on_job(job: str, done: int, total: int) -> None:
        progress(job, done, total)
        if done >= total and job not in finished:
            finished.add(job)
            progress("all jobs", len(finished), n_jobs)

    return on_job


def run_with_progress(cfg: Any, out: Path, enabled: bool = True, **kwargs: Any) -> Any:
    """`run_study` of `cfg` into `out` with bars (terminal) or plain lines (otherwise)."""
    from editrisk.engine import plan_jobs, run_study
    from editrisk.progress import report_progress

    with report_progress(console, enabled=enabled) as bar:
        on = study_progress(bar, len(plan_jobs(cfg))) if enabled else None
        return run_study(cfg, out, on_progress=on, **kwargs)
