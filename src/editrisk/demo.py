"""The main job on the built-in default: real facts edited in the real model, offline.

Known WorldFacts are edited in smollm2-135m with ROME, MEMIT and D4S, one at a time on the
unedited model (protocol `single`) and as a short sequence (protocol `sequential`, retention
of every edit checked after the last step); then a 1-LI sweep of one MEMIT edit trades edit
success against knowledge of held-out facts. The vision part edits the built-in digits
classifier (a concept rewrite), measures it under corruptions and sweeps its 1-LI curve. Every
row goes to a run directory, and the HTML report of the run is written at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from editrisk.data.worldfacts import build_worldfacts, round_robin
from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.errors import EditriskError
from editrisk.evaluation.general import heldout_accuracy
from editrisk.evaluation.metrics import edit_metrics, summarize
from editrisk.interpolation import monotonicity_violations, select_threshold, trade_off
from editrisk.models import load_model
from editrisk.requests import EditRequest
from editrisk.runs import RunDir

EDITORS = ("rome", "memit", "d4s")
# The vision part: the digits VGG, digits 0-4 drawn on a checker texture rewritten at its
# last editable layer (where the vision study found the largest edit success), and 1-LI.
VISION = {
    "name": "demo-vision",
    "family": "vision",
    "model": {"family": "vgg", "width": 8, "epochs": 8, "size": 32},
    "grid": {
        "editor": ["rewrite"],
        "layer": [5],
        "alpha": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "edit_set": ["checker"],
    },
    "edit_sets": {"checker": {"style": "checker", "n_train": 10}},
    "evaluation": {
        "n_images": 300,
        "corruptions": ["gaussian_noise", "defocus_blur", "contrast", "fog", "pixelate"],
        "severities": [1, 3, 5],
    },
}
KEYS = ("efficacy.prob_compare", "generalization.prob_compare", "specificity.prob_compare")


def _scores(h: Any, reqs: Sequence[EditRequest], heldout: Sequence[EditRequest]) -> dict:
    s = summarize(edit_metrics(h, reqs))
    out = {k: s[k] for k in KEYS}
    out["heldout.prob_compare"] = heldout_accuracy(h, heldout)["heldout.prob_compare"]
    return out


def run_demo(
    model: str = "smollm2-135m",
    device: str = "auto",
    out: str | Path = "runs/demo",
    n_facts: int = 4,
    n_heldout: int = 40,
    vision: bool = True,
    console: Console | None = None,
) -> RunDir:
    console = console or Console()
    start = time.perf_counter()
    h = load_model(model, device=device)
    console.print(
        f"[bold]{h.name}[/bold]: {h.arch.family}, {h.arch.n_layers} layers, "
        f"{h.n_params:,} parameters"
    )
    known = build_worldfacts(h, seed=0)
    chosen = round_robin(known, n_facts + n_heldout)
    facts, heldout = chosen[:n_facts], chosen[n_facts:]
    console.print(
        f"{len(known)} WorldFacts known by the model; editing {len(facts)}, {len(heldout)} held out"
    )
    config = {
        "model": model,
        "n_facts": n_facts,
        "n_heldout": n_heldout,
        "editors": EDITORS,
        "facts": [r.id for r in facts],
    }
    run = RunDir(out)
    _clear(run)
    run.start(config, {"name": h.name, "fingerprint": h.fingerprint()})
    base = _scores(h, facts, heldout)
    rows: list[dict[str, Any]] = [
        {"protocol": "none", "editor": "unedited", "schedule": "before editing", **base}
    ]

    memit_first: Delta | None = None
    for name in EDITORS:
        per_edit = []
        t = time.perf_counter()
        for r in facts:  # protocol single: each edit on the unedited model, then reverted
            d = get_editor(name).edit(h, [r])  # a fresh editor: no memory of other cases
            if name == "memit" and memit_first is None:
                memit_first = d
            with d.applied(h.model):
                per_edit.append(_scores(h, [r], heldout))
        mean = {k: sum(p[k] for p in per_edit) / len(per_edit) for k in per_edit[0]}
        rows.append(
            {
                "protocol": "single",
                "editor": name,
                "schedule": "immediately after each edit",
                **mean,
                "s/edit": (time.perf_counter() - t) / len(facts),
            }
        )
        seq = get_editor(name)
        applied = []
        t = time.perf_counter()
        try:  # protocol sequential: edits accumulate; retention of all checked at the end
            for r in facts:
                d = seq.edit(h, [r])
                d.apply(h.model)
                applied.append(d)
            after = _scores(h, facts, heldout)
        finally:
            for d in reversed(applied):
                d.revert(h.model)
        rows.append(
            {
                "protocol": f"sequential x{len(facts)}",
                "editor": name,
                "schedule": "after the last step, all edits",
                **after,
                "s/edit": (time.perf_counter() - t) / len(facts),
            }
        )
        console.print(f"  {name}: done")
    run.results.append(rows)
    _table(console, rows, "Edits of real facts (ROME/MEMIT probability-comparison convention)")

    assert memit_first is not None
    fact, last = facts[0], f"layer {memit_first.layers[-1]}"
    curve = trade_off(
        h.model,
        memit_first,
        lambda m: {
            "edit_success": summarize(edit_metrics(h, [fact]))["efficacy.prob_margin"],
            "heldout": heldout_accuracy(h, heldout)["heldout.prob_compare"],
        },
        alphas=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        only=(last, "all layers"),
    )
    for r in curve:
        r.update({"kind": "1-LI", "protocol": "1-LI", "editor": "memit", "fact": fact.id})
    run.results.append(curve)
    choice = select_threshold(curve, "all layers", "edit_success", "heldout", 0.0)
    _table(
        console,
        curve,
        f"1-LI of the MEMIT edit '{fact.rendered} {fact.target_new}' "
        "(edit_success = P(new) - P(true))",
        cols=("path", "alpha", "edit_success", "heldout"),
    )
    console.print(
        f"alpha chosen ({choice.policy}): {choice.alpha} on {choice.path}: {choice.reason}"
    )
    bad = monotonicity_violations(curve, "edit_success")
    console.print(f"monotonicity violations of edit_success along the paths: {len(bad)}")
    if vision:
        _vision(run, console)
    run.export()
    console.print(
        f"rows written to {run.path / 'rows.jsonl'} ({time.perf_counter() - start:.0f} s)"
    )
    from editrisk.report import write_report

    console.print(f"[bold]report:[/bold] {write_report(run.path)}")
    return run


def _clear(run: RunDir) -> None:
    """The demo starts afresh each time: remove what an earlier demo wrote (only that)."""
    import shutil

    if not run.config_path.exists():
        return
    if set(run.config()) != {"model", "n_facts", "n_heldout", "editors", "facts"}:
        raise EditriskError(f"{run.path} holds another kind of run; choose another --out")
    for name in ("rows.jsonl", "rows.csv", "rows.parquet", "config.yaml"):
        (run.path / name).unlink(missing_ok=True)
    for sub in ("deltas", "report"):
        shutil.rmtree(run.path / sub, ignore_errors=True)


def _vision(run: RunDir, console: Console) -> None:
    """The digits classifier: a concept rewrite, its 1-LI curve, accuracy by severity."""
    from editrisk.sweep import expand, plan_tasks, resolve_sweep
    from editrisk.sweep.worker import Worker

    cfg = resolve_sweep(VISION, "editrisk.demo.VISION")
    worker = Worker(cfg, run.path)
    t = time.perf_counter()
    ctx = worker.context(0)
    console.print(
        f"vision: {ctx.clf.name} ({time.perf_counter() - t:.0f} s to train or load, build "
        f"{len(ctx.general.sets)} shifted test sets)"
    )
    tasks = plan_tasks(expand(cfg), done=set())
    rows = [row for task in tasks for row in worker.run(task)]
    run.results.append(rows)
    _table(
        console,
        rows,
        "1-LI of the digits rewrite (edit success: styled digits classified right; "
        "shifted: mean accuracy under corruptions)",
        cols=("path", "alpha", "edit_success", "edit_success_shifted", "clean_acc", "shifted_acc"),
    )
    (edit,) = [task for task in tasks if task.kind == "edit"]
    delta, _ = worker.delta(edit)
    layer = ctx.clf.layer(edit.layer)
    for alpha, method in ((0.0, "none"), (1.0, "rewrite")):
        with delta.scale(alpha).applied(ctx.model):
            acc = ctx.general.accuracies(ctx.general.predictions(ctx.clf))
        meta = {
            "cell": f"demo/{method}",
            "model": ctx.clf.name,
            "method": method,
            "layer": layer if alpha else None,
            "alpha": alpha,
        }
        run.results.append(
            [
                {
                    **meta,
                    "metric": "accuracy",
                    "set": "general",
                    "corruption": c,
                    "severity": sev,
                    "value": v,
                }
                for (c, sev), v in acc.items()
            ]
        )


def _table(
    console: Console, rows: list[dict[str, Any]], title: str, cols: Sequence[str] | None = None
) -> None:
    cols = cols or ("protocol", "editor", "schedule", *KEYS, "heldout.prob_compare", "s/edit")
    table = Table(*[c.replace(".prob_compare", "") for c in cols], title=title)
    for r in rows:
        table.add_row(
            *[f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        )
    console.print(table)
