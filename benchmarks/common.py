"""Runner convention: each benchmark prints a table and writes JSON to benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def setup_threads() -> int:
    """Use the threads the machine offers (override with $EDITRISK_BENCH_THREADS)."""
    n = int(os.environ.get("EDITRISK_BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def report(name: str, rows: list[dict[str, Any]], note: str = "") -> Path:
    """Print `rows` as a table and save them with machine details as JSON."""
    table = Table(title=f"{name}  ({platform.machine()}, {torch.get_num_threads()} threads)")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    Console().print(table)
    if note:
        Console().print(note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": name,
                "rows": rows,
                "note": note,
                "threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
    )
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def timed(fn, repeat: int = 3) -> float:
    """Best-of-`repeat` wall seconds of `fn()`."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
