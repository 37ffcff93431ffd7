"""The `editrisk` command line. Bad input exits with code 2 and a one-line reason.

This module builds the app from the command modules; they share `_common` and never import
this module, so the package has no import cycle.
"""

from __future__ import annotations

import sys

import typer

from editrisk.cli import data, demo, edit, models, runs, vision
from editrisk.cli._common import console, fail

# click's error classes, wherever this typer takes click from (its own copy since typer 0.22)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

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
    """Entry point of the `editrisk` script. Usage errors (a missing argument, an unknown
    option, a value out of range) are one line on stderr and exit code 2, like input errors."""
    try:
        code = app(prog_name="editrisk", standalone_mode=False)
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(2)
        hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx else ""
        fail(f"{err.format_message()}{hint}")
        sys.exit(2)
    except _ClickError as err:
        err.show()
        sys.exit(err.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
