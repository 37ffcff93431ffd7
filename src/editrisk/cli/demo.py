"""`editrisk demo`: the main job on the built-in default model, ending with an HTML report."""

from __future__ import annotations

import typer

from editrisk.cli._common import DeviceOpt, cli_errors, console


@cli_errors
def demo(
    model: str = typer.Option("smollm2-135m", help="model to run on"),
    out: str = typer.Option("runs/demo", help="run directory for the rows"),
    facts: int = typer.Option(4, min=1, help="facts to edit"),
    vision: bool = typer.Option(True, help="also edit the digits classifier"),
    device: str = DeviceOpt,
) -> None:
    """The main job on the built-in default (real model, real facts, offline), ending with an
    HTML report of the run."""
    from editrisk.demo import run_demo

    run_demo(model, device=device, out=out, n_facts=facts, vision=vision, console=console)
