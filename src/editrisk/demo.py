"""The main job on the built-in default: the real model answering real facts, offline."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from editrisk.models import ModelHandle, load_model

DEMO_COUNTRIES = ("France", "Germany", "Japan", "Italy", "Spain", "Egypt", "Canada", "Russia")


def capital_facts(countries: tuple[str, ...] = DEMO_COUNTRIES) -> list[tuple[str, str]]:
    """(prompt, true capital) pairs from countryinfo's real data."""
    from countryinfo import CountryInfo

    return [(f"The capital of {c} is", CountryInfo(c).capital()) for c in countries]


def run_demo(
    model: str = "smollm2-135m", device: str = "auto", console: Console | None = None
) -> ModelHandle:
    console = console or Console()
    h = load_model(model, device=device)
    console.print(
        f"[bold]{h.name}[/bold]: {h.arch.family}, {h.arch.n_layers} layers, "
        f"{h.n_params:,} parameters, fingerprint {h.fingerprint()}"
    )
    table = Table("prompt", "greedy completion", "true answer", "known")
    known = 0
    for prompt, answer in capital_facts():
        completion = h.generate(prompt, max_new_tokens=6)
        ok = completion.strip().startswith(answer)
        known += ok
        table.add_row(
            prompt,
            completion.strip().splitlines()[0] if completion.strip() else "",
            answer,
            "yes" if ok else "no",
        )
    console.print(table)
    console.print(f"{known}/{len(DEMO_COUNTRIES)} real facts known by {h.name}")
    return h
