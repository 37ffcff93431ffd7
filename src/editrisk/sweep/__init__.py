"""Sweeps: `editrisk sweep CONFIG` expands editor x layer x alpha x seed x edit set into cells,
skips the cells a run directory already holds, and runs the rest on a local process pool or a
Ray cluster; every cell is one row of the run's store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from editrisk.runs import RunDir
from editrisk.sweep.executors import LocalExecutor, RayExecutor, make_executor, threads_per_worker
from editrisk.sweep.grid import Cell, Task, expand, load_sweep, plan_tasks, resolve_sweep

__all__ = [
    "Cell", "LocalExecutor", "RayExecutor", "Task", "expand", "load_sweep", "plan_tasks",
    "resolve_sweep", "run_sweep", "threads_per_worker",
]  # fmt: skip


def done_cells(run: RunDir) -> set[str]:
    return {r["cell"] for r in run.results if r.get("kind") == "trade_off"}


def run_sweep(
    cfg: dict[str, Any],
    out: str | Path,
    workers: int | None = None,
    on_task: Callable[[Task, int, int], None] | None = None,
) -> RunDir:
    """Run (or resume) the sweep `cfg` into run directory `out`; returns the run.

    `on_task(task, finished, total)` is called as each task's rows are stored."""
    run = RunDir(out)
    run.start({k: v for k, v in cfg.items() if k != "executor"})  # resumable anywhere
    tasks = plan_tasks(expand(cfg), done_cells(run))
    executor = make_executor(cfg, run.path, workers)
    for i, (_task, rows) in enumerate(executor.run(tasks), 1):
        run.results.append(rows)
        if on_task is not None:
            on_task(_task, i, len(tasks))
    run.export()
    return run
