"""`editrisk run CONFIG` (any study: protocol runs, 1-LI grids, the vision study; resumable,
local or on Ray), `sweep` (an alias of run), `analyze RUN_DIR` and `report RUN_DIR ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from editrisk.cli._common import cli_errors, console, next_steps, q, run_with_progress, set_threads

ThreadsOpt = typer.Option(
    0, min=0, help="torch CPU threads (0: chosen from the cores other processes leave free)"
)


@cli_errors
def run_cmd(
    config: Path = typer.Argument(..., help="YAML study config (see examples/*.yaml)"),
    run_dir: Path = typer.Option(None, help="run directory (default: runs/<config name>)"),
    device: str = typer.Option(None, help="override the config's device"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    threads: int = ThreadsOpt,
    workers: int = typer.Option(
        0, min=0, help="jobs at once in forked processes sharing the cores (0: the config's value)"
    ),
    only: str = typer.Option(
        None, help="comma-separated method labels: run just these methods of CONFIG"
    ),
    report: bool = typer.Option(False, help="write the HTML report when done"),
    dtype: str = typer.Option(None, help="override the config's dtype"),
) -> None:
    """Run (or resume: same command, same directory) the study of CONFIG."""
    from editrisk.engine import load_config, select_methods

    cfg = load_config(config, device=device, dtype=dtype)
    if only:
        cfg = select_methods(cfg, only.split(","), str(config))
    set_threads(threads)
    out = run_dir or Path("runs") / cfg.name
    rd = run_with_progress(cfg, out, progress, workers=workers or None)
    console.print(f"{len(rd.results)} rows in {rd.results.path}")
    if report:
        from editrisk.report import write_report

        page = write_report(rd.path)
        next_steps(page, f"editrisk analyze {q(rd.path)}")
    else:
        next_steps(rd.path, f"editrisk analyze {q(rd.path)}", f"editrisk report {q(rd.path)}")


@cli_errors
def sweep_cmd(
    config: Path = typer.Argument(..., help="YAML study config with a grid"),
    run_dir: Path = typer.Option(None, help="run directory (default: runs/<config name>)"),
    workers: int = typer.Option(0, min=0, help="local executor workers (0: the config's value)"),
    threads: int = ThreadsOpt,
    report: bool = typer.Option(True, help="write the HTML report when done"),
) -> None:
    """`editrisk run` of CONFIG with its HTML report (kept for grid studies)."""
    run_cmd(config, run_dir, None, True, threads, workers, None, report, None)


@cli_errors
def analyze_cmd(
    run_dirs: list[Path] = typer.Argument(
        ..., help="a run directory written by `editrisk run`, or several to compare"
    ),
    out: Path = typer.Option(
        None, help="output folder (default: RUN_DIR/analysis; required for several runs)"
    ),
    metric: str = typer.Option(
        None, help="edit-accuracy metric (default: efficacy.prob_compare or edit_success.top1)"
    ),
    threshold: float = typer.Option(0.5, min=0, max=1, help="collapse: accuracy below this value"),
) -> None:
    """Curves, L1-vs-accuracy correlations, collapse steps: PNG plots and a table."""
    from editrisk.report import analyze_runs

    report = analyze_runs(run_dirs, out, metric=metric, threshold=threshold)
    print(report.table_markdown)
    runs = " ".join(q(r) for r in run_dirs)
    again = f"editrisk report {runs}" + ("" if len(run_dirs) == 1 else " --out FOLDER")
    next_steps(report.folder, again)


@cli_errors
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="one run directory, or several to compare"),
    out: Path = typer.Option(
        None, help="output folder (default: RUN_DIR/report; required for several runs)"
    ),
) -> None:
    """A self-contained HTML page (summary, interactive plots, per-edit view) and CSV tables of
    one run, or of several runs on one page."""
    from editrisk.report import write_report

    page = write_report(run_dirs, out)
    runs = " ".join(q(r) for r in run_dirs)
    again = (
        f"editrisk analyze {q(run_dirs[0])}"
        if len(run_dirs) == 1
        else f"editrisk report {runs} OTHER_RUN --out FOLDER  (add a run to compare)"
    )
    next_steps(page, "open it in a browser (one self-contained file)", again)
