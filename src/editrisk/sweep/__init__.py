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
    "Cell", "LocalExecutor", "RayExecutor", "Task", "expand", "interpolate_run", "load_sweep",
    "plan_tasks", "resolve_sweep", "run_sweep", "threads_per_worker",
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


def interpolate_run(
    run_dir: str | Path,
    alphas: list[float],
    out: str | Path | None = None,
    threshold: float = 0.9,
) -> tuple[RunDir, list[dict[str, Any]]]:
    """1-LI of every edit a sweep saved: each edited layer alone and all layers together at
    every alpha, with the threshold and knee choices; rows go to `out` (default
    RUN_DIR/interpolate). Returns that run and its choices."""
    from editrisk.delta import Delta
    from editrisk.errors import EditriskError
    from editrisk.interpolation import paths, select_knee, select_threshold, trade_off
    from editrisk.sweep.worker import Worker

    src = RunDir(run_dir)
    stored = src.config()
    if "grid" not in stored or "family" not in stored:
        raise EditriskError(f"{src.path} is not a sweep run (its config has no grid/family)")
    cfg = resolve_sweep(stored, str(src.config_path))
    files = sorted(src.deltas.glob("*.safetensors"))
    if not files:
        raise EditriskError(f"{src.path} has no saved edits under deltas/")
    edit, robust = ("efficacy", "heldout") if cfg["family"] == "language" else (
        "edit_success", "shifted_acc")  # fmt: skip
    run = RunDir(out or src.path / "interpolate")
    run.start({"source": str(src.path.resolve()), "alphas": alphas, "threshold": threshold})
    worker = Worker(cfg, src.path)
    choices: list[dict[str, Any]] = []
    for f in files:
        d = Delta.load(f)
        meta = d.metadata.get("sweep")
        if not isinstance(meta, dict):
            raise EditriskError(f"{f}: not a sweep edit (no 'sweep' entry in its metadata)")
        task, edit_set = meta["task"], meta["edit_set"]
        ctx = worker.context(int(meta["seed"]))
        rows = trade_off(ctx.model, d, lambda _m, c=ctx, es=edit_set: c.evaluate(es), alphas)
        for r in rows:
            r.update({"kind": "1-LI", "editor": meta["editor"], "task": task})
        run.results.append(rows)
        for p in paths(d):
            for c in (
                select_threshold(rows, p, edit, robust, threshold),
                select_knee(rows, p, edit, robust),
            ):
                choices.append({"kind": "choice", "task": task, **c.to_dict()})
    run.results.append(choices)
    run.export()
    return run, choices
