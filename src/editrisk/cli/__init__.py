"""The `editrisk` command line. Bad input exits with code 2 and a one-line reason.

This module builds the app from the command modules; they share `_common` and never import
this module, so the package has no import cycle.
"""

from __future__ import annotations

import typer

from editrisk.cli import data, demo, edit, models, runs, vision
from editrisk.cli._common import console

app = typer.Typer(
    help="Edit trained networks and measure what each edit costs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from editrisk import __version__

        console.print(f"editrisk {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Edit trained networks and measure what each edit costs."""


app.add_typer(models.models_app, name="models")
app.command()(models.generate)
app.command()(demo.demo)
app.add_typer(data.data_app, name="data")
app.command("eval")(data.eval_cmd)
app.add_typer(vision.vision_app, name="vision")
app.command()(edit.edit)
app.command()(edit.export)
app.command()(edit.interpolate)
app.command("run")(runs.run_cmd)
app.command("analyze")(runs.analyze_cmd)
app.command("sweep")(runs.sweep_cmd)
app.command("report")(runs.report_cmd)


def main() -> None:
    """Entry point of the `editrisk` script."""
    app()


__all__ = ["app", "main"]
