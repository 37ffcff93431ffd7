"""`editrisk run CONFIG` (resumable protocol runs), `editrisk sweep CONFIG` (resumable grids,
local or on Ray), `editrisk analyze RUN_DIR` and `editrisk report RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from editrisk.cli._common import cli_errors, console


@cli_errors
def run_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see examples/sequential_*.yaml)"),
    run_dir: Path = typer.Option(None, help="run directory (default: runs/<config name>)"),
    device: str = typer.Option(None, help="override the config's device"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    threads: int = typer.Option(
        0, help="torch CPU threads (0: torch's default); on a busy machine 1 is fastest"
    ),
    workers: int = typer.Option(
        1, help="methods run at once, in forked processes sharing the cores (CPU only)"
    ),
    only: str = typer.Option(
        None, help="comma-separated method labels: run just these methods of CONFIG"
    ),
) -> None:
    """Run (or resume: same command, same directory) the protocol study of CONFIG."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    from editrisk.protocols.config import load_config, resolve_config, select_methods
    from editrisk.protocols.runner import run_config

    cfg = load_config(config)
    if device:
        cfg = resolve_config({**cfg, "device": device}, str(config))
    if only:
        cfg = select_methods(cfg, only.split(","), str(config))
    out = run_dir or Path("runs") / cfg["name"]
    rd = run_config(cfg, out, show_progress=progress, console=console, workers=workers)
    console.print(f"{len(rd.results)} rows in {rd.results.path}")


@cli_errors
def analyze_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory written by `editrisk run`"),
    metric: str = typer.Option("efficacy.prob_compare", help="edit-accuracy metric"),
    threshold: float = typer.Option(0.5, help="collapse: accuracy below this value"),
) -> None:
    """Curves, L1-vs-accuracy correlations, collapse steps: PNG plots and a table."""
    from editrisk.analysis import analyze_run

    report = analyze_run(run_dir, metric=metric, threshold=threshold)
    print(report.table_markdown)
    console.print(f"written to {report.folder}")


@cli_errors
def sweep_cmd(
    config: Path = typer.Argument(..., help="YAML sweep config (see examples/sweep_*.yaml)"),
    run_dir: Path = typer.Option(None, help="run directory (default: runs/<config name>)"),
    workers: int = typer.Option(0, help="local executor workers (0: the config's value)"),
    report: bool = typer.Option(True, help="write the HTML report when done"),
) -> None:
    """Run (or resume: same command, same directory) the grid of CONFIG."""
    from editrisk.sweep import expand, load_sweep, run_sweep

    cfg = load_sweep(config)
    out = run_dir or Path("runs") / cfg["name"]
    ex = cfg["executor"]
    console.print(
        f"{len(expand(cfg))} cells; executor {ex['kind']}"
        + (f" with {workers or ex['workers']} worker(s)" if ex["kind"] == "local" else "")
    )

    def progress(task, i: int, n: int) -> None:  # noqa: ANN001 - a sweep Task
        console.print(f"  [{i}/{n}] {task.id}: {len(task.cells)} cell(s)")

    rd = run_sweep(cfg, out, workers=workers or None, on_task=progress)
    console.print(f"{len(rd.results)} rows in {rd.results.path}")
    if report:
        from editrisk.report import write_report

        console.print(f"report: {write_report(rd.path)}")


@cli_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (run, sweep, study or demo)"),
    out: Path = typer.Option(None, help="output folder (default: RUN_DIR/report)"),
) -> None:
    """A self-contained HTML page, PNG/SVG plots and CSV tables of everything RUN_DIR holds."""
    from editrisk.report import write_report

    console.print(f"report: {write_report(run_dir, out)}")
