"""What every command module of the CLI shares: the console, the error handler and options.

Command modules import this module only (never `editrisk.cli`), so no file imports the app
that imports it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

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
