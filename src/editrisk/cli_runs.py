"""`editrisk run CONFIG` (resumable protocol runs) and `editrisk analyze RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from editrisk.cli import cli_errors, console


def register_runs(app: typer.Typer) -> None:
    """Add the `run` and `analyze` commands to `app`."""

    @app.command("run")
    @cli_errors
    def run_cmd(
        config: Path = typer.Argument(..., help="YAML run config (see examples/sequential_*.yaml)"),
        run_dir: Path = typer.Option(None, help="run directory (default: runs/<config name>)"),
        device: str = typer.Option(None, help="override the config's device"),
        progress: bool = typer.Option(True, help="show a progress bar"),
        threads: int = typer.Option(
            0, help="torch CPU threads (0: torch's default); on a busy machine 1 is fastest"
        ),
    ) -> None:
        """Run (or resume: same command, same directory) the protocol study of CONFIG."""
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        from editrisk.protocols.config import load_config, resolve_config
        from editrisk.protocols.runner import run_config

        cfg = load_config(config)
        if device:
            cfg = resolve_config({**cfg, "device": device}, str(config))
        out = run_dir or Path("runs") / cfg["name"]
        rd = run_config(cfg, out, show_progress=progress, console=console)
        console.print(f"{len(rd.results)} rows in {rd.results.path}")

    @app.command("analyze")
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
