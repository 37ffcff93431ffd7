"""`editrisk demo`: the main job on the built-in default (real model, real facts, offline):
the shipped configs `editrisk/configs/demo_language.yaml` and `demo_vision.yaml` run through
the engine, their results printed, and an HTML report of each."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import typer

from editrisk.cli._common import (
    cli_errors,
    console,
    fmt,
    next_steps,
    q,
    run_with_progress,
    set_threads,
    table,
)

# Columns of the printed results (header -> metric); the report has them all.
COLUMNS = {
    "language": {"efficacy": "efficacy.prob_compare", "paraphrase": "generalization.prob_compare",
                 "neighbours": "specificity.prob_compare", "held-out": "heldout.prob_compare"},
    "vision": {"edit": "edit_success.top1", "edit shifted": "edit_success_shifted.top1",
               "clean": "clean_acc.top1", "shifted": "shifted_acc.top1"},
}  # fmt: skip
CAPTION = {
    "language": "ROME/MEMIT probability comparison, all edits after the last one",
    "vision": "top-1 accuracy; shifted: mean over corruptions and severities",
}


@cli_errors
def demo(
    model: str = typer.Option(None, help="language model (default: the config's smollm2-135m)"),
    out: Path = typer.Option(Path("runs/demo"), help="folder for the two run directories"),
    vision: bool = typer.Option(True, help="also edit the digits classifier"),
    device: str = typer.Option(None, help="override the configs' device"),
    threads: int = typer.Option(0, min=0, help="torch CPU threads (0: the free cores)"),
) -> None:
    """Edit real facts in the real model (ROME, MEMIT, D4S in a row, then their 1-LI paths)
    and a concept in the digits classifier, measure what the edits cost, write HTML reports.
    Run again to resume (or reuse) the same run directories."""
    from editrisk.engine import load_config
    from editrisk.report import trade_off_points, write_report

    set_threads(threads)
    parts = ["language", "vision"] if vision else ["language"]
    pages = []
    for part in parts:
        path = files("editrisk.configs").joinpath(f"demo_{part}.yaml")
        cfg = load_config(str(path), model=model if part == "language" else None, device=device)
        console.print(f"[bold]{cfg.name}[/bold]: {len(cfg.methods)} editor(s) on {cfg.model}")
        rd = run_with_progress(cfg, out / part)
        cols = COLUMNS[part]
        title = f"{cfg.name}: results at the end"
        tab = table("method / 1-LI path", "alpha", *cols, caption=CAPTION[part], title=title,
                    wrap=("method / 1-LI path",))  # fmt: skip
        for p in trade_off_points(rd.results.rows()):
            tab.add_row(p["line"], fmt(p["alpha"]), *(fmt(p.get(c)) for c in cols.values()))
        console.print(tab)
        pages.append(write_report(rd.path))
        console.print(f"[bold]report:[/bold] {pages[-1]}")
    lm = q(model or "smollm2-135m")
    own = f'editrisk edit {lm} --subject Paris --prompt "{{}} is the capital of" --target-new Rome'
    next_steps(", ".join(map(str, pages)), f"editrisk analyze {q(out / parts[0])}", own)
