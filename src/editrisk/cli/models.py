"""`editrisk models list|show` and `editrisk generate`: what a model is and what it says."""

from __future__ import annotations

import typer
from rich.table import Table

from editrisk.cli._common import DeviceOpt, DtypeOpt, cli_errors, console

models_app = typer.Typer(help="List and inspect models.", no_args_is_help=True)


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
    """Family, layer count, sizes, parameter count, editable locations of MODEL and the
    editing preset each editor would use on it (and which rule chose it)."""
    from editrisk.models.sources import resolve_source

    resolve_source(model)  # a bad name or an unreachable hub: said before torch loads
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
    _print_presets(h)


PRESET_EDITORS = ("rome", "memit", "d4s", "alphaedit", "ft")


def _set_value(value: object) -> str:
    """A hyperparameter as `--set` reads it (YAML)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_set_value(v) for v in value) + "]"
    return str(value)


def _print_presets(h: object) -> None:
    """The preset each editor would use on `h`, and which rule chose it."""
    from editrisk.models.presets import preset_for

    table = Table("editor", "layers", "settings (--set)", "rule", title="editing presets")
    why = source = ""
    for editor in PRESET_EDITORS:
        p = preset_for(h, editor)
        sets = " ".join(f"{k}={_set_value(v)}" for k, v in p.settings.items())
        table.add_row(editor, _set_value(p.layers), sets or "(editor defaults)", p.rule)
        why, source = p.why, p.source
    console.print(table)
    console.print(f"matched on: {why}\nsource: {source}", highlight=False)
    console.print(
        "Layers apply when an editor's `layers` is empty; pass the other settings with "
        "--set key=value (or editrisk.models.presets.editor_for in Python).",
        highlight=False,
    )


@cli_errors
def generate(
    model: str,
    prompt: str,
    max_new_tokens: int = typer.Option(12, min=1, help="tokens to generate"),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Greedy completion of PROMPT by MODEL (to check facts by hand)."""
    from editrisk.models.sources import resolve_source

    resolve_source(model)  # a bad name or an unreachable hub: said before torch loads
    from editrisk.models import load_model

    h = load_model(model, device=device, dtype=dtype)
    console.print(f"[bold]{prompt}[/bold]{h.generate(prompt, max_new_tokens)}", highlight=False)
