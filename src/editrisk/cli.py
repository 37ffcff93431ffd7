"""The `editrisk` command line. Bad input exits with code 2 and a one-line reason."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from editrisk.errors import EditriskError

app = typer.Typer(
    help="Edit trained networks and measure what each edit costs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and inspect models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn editrisk's input errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EditriskError as err:
            print(f"editrisk: error: {err}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
DtypeOpt = typer.Option("float32", help="float32, bfloat16 or float16")


@models_app.command("list")
def models_list() -> None:
    """Built-in models (a local folder, .gguf file or hub id works wherever a name does)."""
    from editrisk.models import BUILTIN_MODELS

    table = Table("name", "description")
    for name, desc in BUILTIN_MODELS.items():
        table.add_row(name, desc)
    console.print(table)


@models_app.command("show")
@cli_errors
def models_show(model: str, device: str = DeviceOpt, dtype: str = DtypeOpt) -> None:
    """Family, layer count, sizes, parameter count and editable locations of MODEL."""
    from editrisk.models import load_model

    h = load_model(model, device=device, dtype=dtype)
    table = Table(show_header=False)
    for key, value in (
        ("model", h.name),
        ("family", h.arch.family),
        ("model_type", h.model.config.model_type),
        ("layers", h.arch.n_layers),
        ("hidden size", h.arch.hidden_size),
        ("MLP size", h.arch.intermediate_size),
        ("parameters", f"{h.n_params:,}"),
        ("device / dtype", f"{h.device} / {h.dtype}"),
        ("fingerprint", h.fingerprint()),
    ):
        table.add_row(key, str(value))
    for loc, template in h.arch.editable().items():
        table.add_row(f"location {loc}", template.replace("{}", "{layer}"))
    console.print(table)


@app.command()
@cli_errors
def generate(
    model: str,
    prompt: str,
    max_new_tokens: int = typer.Option(12, min=1, help="tokens to generate"),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Greedy completion of PROMPT by MODEL (to check facts by hand)."""
    from editrisk.models import load_model

    h = load_model(model, device=device, dtype=dtype)
    console.print(f"[bold]{prompt}[/bold]{h.generate(prompt, max_new_tokens)}", highlight=False)


@app.command()
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


from editrisk.cli_data import data_app, register_eval  # noqa: E402

app.add_typer(data_app, name="data")
register_eval(app)

from editrisk.cli_vision import vision_app  # noqa: E402

app.add_typer(vision_app, name="vision")

from editrisk.cli_edit import register_edit, register_interpolate  # noqa: E402

register_edit(app)
register_interpolate(app)

from editrisk.cli_runs import register_runs  # noqa: E402

register_runs(app)


def main() -> None:
    app()
