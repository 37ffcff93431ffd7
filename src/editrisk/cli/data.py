"""`editrisk data ...` (build edit sets) and `editrisk eval` (measure a model or an edit)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from editrisk.cli._common import (
    DeviceOpt,
    DtypeOpt,
    choices,
    cli_errors,
    console,
    fmt,
    load_delta,
    next_steps,
    q,
    table,
)

data_app = typer.Typer(help="Build edit datasets (WorldFacts, MQD).", no_args_is_help=True)
build_app = typer.Typer(help="Build a built-in edit set.", no_args_is_help=True)
data_app.add_typer(build_app, name="build")


@build_app.command("worldfacts")
@cli_errors
def build_worldfacts_cmd(
    model: str = typer.Option(..., "--model", help="model whose known facts are kept"),
    out: Path = typer.Option(..., "--out", help="output file (editrisk JSONL)"),
    seed: int = typer.Option(0, help="seed for counterfactual targets and neighbours"),
    relations: str = typer.Option("", help="comma-separated relations (default: all)"),
    limit_per_relation: int = typer.Option(
        0, min=0, help="sample this many candidates per relation"
    ),
    no_filter: bool = typer.Option(False, "--no-filter", help="keep facts the model does not know"),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """WorldFacts from packaged geonames data, keeping the facts MODEL knows."""
    from editrisk.data.jsonl import write_jsonl
    from editrisk.data.worldfacts import build_worldfacts
    from editrisk.models import load_model
    from editrisk.progress import report_progress

    rels = [r.strip() for r in relations.split(",") if r.strip()] or None
    h = None if no_filter else load_model(model, device=device, dtype=dtype)
    t = time.perf_counter()
    with report_progress(console) as progress:
        reqs = build_worldfacts(h, seed, rels, limit_per_relation or None, progress=progress)
    write_jsonl(reqs, out)
    cand = Counter(
        r.relation for r in build_worldfacts(None, seed, rels, limit_per_relation or None)
    )
    kept = Counter(r.relation for r in reqs)
    tab = table("relation", "known" if h else "kept", "candidates")
    for rel in cand:
        tab.add_row(rel, str(kept[rel]), str(cand[rel]))
    tab.add_row("total", str(len(reqs)), str(sum(cand.values())))
    console.print(tab)
    console.print(f"wrote {len(reqs)} requests to {out} ({time.perf_counter() - t:.0f} s)")
    next_steps(out, f"editrisk eval {q(model)} --requests {q(out)} --limit 20",
               f"editrisk data mqd --facts {q(out)} --out mqd.jsonl")  # fmt: skip


@data_app.command("mqd")
@cli_errors
def mqd_cmd(
    facts: Path = typer.Option(..., "--facts", help="fact requests (any supported format)"),
    out: Path = typer.Option(..., "--out", help="output file (editrisk JSONL)"),
    types: str = typer.Option("tf,mcq,gen", help="question types: tf, mcq, gen"),
    k: int = typer.Option(4, min=2, help="options per multiple-choice question"),
    seed: int = typer.Option(0),
    max_distinct_targets: int = typer.Option(
        0, min=0, help="cap distinct gen targets per relation"
    ),
) -> None:
    """The Multi-Question Dataset: FACTS as true/false, multiple-choice and generation questions."""
    from editrisk.data import load_requests
    from editrisk.data.jsonl import write_jsonl
    from editrisk.data.mqd import build_mqd

    qs = build_mqd(
        load_requests(str(facts)),
        [t.strip() for t in types.split(",")],
        k,
        seed,
        max_distinct_targets or None,
    )
    write_jsonl(qs, out)
    counts = Counter(q.extra["question_type"] for q in qs)
    console.print(f"wrote {len(qs)} questions to {out}: {dict(counts)}")
    next_steps(out, f"editrisk eval MODEL --requests {q(out)} --limit 20")


@cli_errors
def eval_cmd(
    model: str = typer.Argument(..., help="model name, folder, .gguf file or hub id"),
    requests: Path = typer.Option(
        ..., "--requests", help="edit requests (JSONL/CounterFact/zsRE/MQuAKE/RippleEdits)"
    ),
    delta: Path | None = typer.Option(None, "--delta", help="saved Delta to apply first"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="default: runs/eval-<time>"),
    limit: int = typer.Option(0, min=0, help="evaluate only the first N requests"),
    gen_tokens: int = typer.Option(0, min=0, help="tokens per generation for fluency/consistency"),
    conventions: str = typer.Option(
        "prob_compare,prob_margin,token_acc",
        help="edit-metric conventions, comma-separated: prob_compare, prob_margin, token_acc "
        "(teacher-forced), gen_match (greedy generation states the wanted answer), "
        "gen_match_sampled (the same on a sampled generation)",
    ),
    gen_match_tokens: int = typer.Option(16, min=1, help="gen_match: new tokens per prompt"),
    temperature: float = typer.Option(0.7, help="gen_match_sampled: softmax temperature (> 0)"),
    top_p: float = typer.Option(0.95, help="gen_match_sampled: nucleus mass in (0, 1]"),
    sample_seed: int = typer.Option(0, help="gen_match_sampled: seed (with each prompt's text)"),
    questions: str = typer.Option(
        "", help="question kinds to measure, comma-separated: portability, reverse, subject_other"
    ),
    shifts: bool = typer.Option(False, help="also measure knowledge and edit under shifts"),
    shift_kinds: str = typer.Option(
        "typo,case,noise,paraphrase,prefix", help="perturbations measured with --shifts"
    ),
    heldout: Path | None = typer.Option(None, help="unedited facts for held-out accuracy"),
    ppl: bool = typer.Option(False, "--perplexity", help="perplexity on a built-in text sample"),
    lm_eval_tasks: str = typer.Option(
        "", "--lm-eval", help="lm-evaluation-harness tasks, comma-separated (through its HFLM)"
    ),
    lm_eval_limit: float = typer.Option(
        0, min=0, help="--lm-eval: documents per task (a fraction when below 1; 0: all)"
    ),
    lm_eval_fewshot: int = typer.Option(None, min=0, help="--lm-eval: few-shot examples"),
    lm_eval_include: Path | None = typer.Option(None, help="--lm-eval: a folder of task YAMLs"),
    batch_size: int = typer.Option(32, min=1),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Edit metrics of MODEL (with --delta: of the edited model) on REQUESTS; prints a table and
    writes one row per request and a summary row to the run directory. --lm-eval adds
    lm-evaluation-harness tasks to the summary (columns lm_eval.<task>.<metric>)."""
    from editrisk.data import load_requests
    from editrisk.engine.store import RunDir
    from editrisk.errors import InputError
    from editrisk.evaluation.metrics import CONVENTIONS, GENERATED, Sampling
    from editrisk.evaluation.shifts import check_kinds
    from editrisk.evaluation.suite import EditMetricSpec, evaluate
    from editrisk.models import load_model
    from editrisk.progress import report_progress
    from editrisk.requests import QUESTION_KINDS
    from editrisk.tokens import check_fits

    kinds = check_kinds([k.strip() for k in shift_kinds.split(",") if k.strip()])
    try:
        sampling = Sampling(temperature, top_p, sample_seed)
    except ValueError as e:
        raise InputError(f"--temperature/--top-p: {e}") from None
    metrics = EditMetricSpec(
        conventions=choices(conventions, CONVENTIONS, "--conventions", empty_ok=False),
        gen_match_tokens=gen_match_tokens,
        questions=choices(questions, QUESTION_KINDS, "--questions", empty_ok=True),
        sampling=sampling,
    )
    tasks = [t.strip() for t in lm_eval_tasks.split(",") if t.strip()]
    manager = None
    if tasks:  # unknown tasks are refused before the model loads
        from editrisk.evaluation.general import lm_eval_tasks as task_manager

        manager = task_manager(tasks, lm_eval_include)
    reqs = load_requests(str(requests), limit=limit or None)  # bad input stops before any edit
    held = load_requests(str(heldout)) if heldout else None
    d = load_delta(delta) if delta else None
    h = load_model(model, device=device, dtype=dtype)
    if d is not None:
        d.check_applies(h.model, h.fingerprint(), str(delta))
    generates = any(c in GENERATED for c in metrics.conventions)
    reserve = max(gen_tokens, gen_match_tokens if generates else 0)
    for file, rs in ((requests, reqs), (heldout, held or [])):
        check_fits(h.tokenizer, h.context_length, rs, reserve=reserve, model=h.name,
                   file=str(file))  # fmt: skip
    run = RunDir(run_dir or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S"))
    config = {
        "command": "eval",
        "model": model,
        "requests": str(requests),
        "delta": str(delta) if delta else None,
        "limit": limit,
        "gen_tokens": gen_tokens,
        "conventions": list(metrics.conventions),
        "gen_match_tokens": gen_match_tokens,
        "questions": list(metrics.questions),
        **(
            {"sampling": dataclasses.asdict(sampling)}
            if "gen_match_sampled" in metrics.conventions
            else {}
        ),
        "shifts": shift_kinds if shifts else None,
        "heldout": str(heldout) if heldout else None,
        "perplexity": ppl,
        **(
            {
                "lm_eval": {
                    "tasks": tasks,
                    "limit": lm_eval_limit or None,
                    "num_fewshot": lm_eval_fewshot,
                    "include_path": str(lm_eval_include) if lm_eval_include else None,
                }
            }
            if tasks
            else {}
        ),
    }
    with run.writer():
        run.start(
            config,
            {
                "name": h.name,
                "family": h.arch.family,
                "fingerprint": h.fingerprint(),
                "delta_metadata": d.metadata if d else None,
            },
        )
        with report_progress(console) as progress:
            result = evaluate(
                h,
                reqs,
                delta=d,
                gen_tokens=gen_tokens,
                shifts=kinds if shifts else False,
                heldout=held,
                perplexity=ppl,
                batch_size=batch_size,
                metrics=metrics,
                progress=progress,
            )
        if tasks:
            _add_lm_eval(h, d, result, tasks, manager, lm_eval_limit, lm_eval_fewshot,
                         batch_size)  # fmt: skip
        method = (d.metadata.get("editor") or "delta") if d else "none"
        ident = {"run": run.path.name, "family": "language", "model": model,
                 "fingerprint": h.fingerprint(), "method": method, "editor": method,
                 "protocol": "eval", "layer": "default", "seed": 0}  # fmt: skip
        rows = []
        for r in result.rows:  # the engine's row schema: identity columns, schedule = state
            edited = r["state"] == "edited"
            sub = [r[c] for c in ("id", "shift", "severity") if c in r]
            at = {"alpha": 1.0 if edited else 0.0, "path": "whole edit" if edited else "unedited",
                  "step": int(edited), "edits": len(reqs) if edited else 0}  # fmt: skip
            key = "|".join(str(x) for x in (r["state"], r["kind"], *sub))
            rows.append({**ident, **at, "schedule": r["state"], **r, "key": key,
                         "request": r.get("id") if r["kind"] == "request" else None})  # fmt: skip
        run.results.append(rows)
        run.export()
    states = list(result.summary)
    title = f"{h.name}{' + ' + delta.name if delta else ''}: {len(reqs)} requests"
    tab = table("metric", *states, title=title)
    for k in dict.fromkeys(k for v in result.summary.values() for k in v):
        tab.add_row(k, *(fmt(result.summary[s].get(k)) for s in states))
    console.print(tab)
    if result.shift_rows:
        keys = dict.fromkeys(k for r in result.shift_rows for k in r)
        cols = ["state", "shift", "severity", "mean_edit_distance"] + [
            k for k in keys if k.endswith("prob_compare")
        ]
        st = table(*cols, title="under distribution shifts")
        for r in result.shift_rows:
            st.add_row(*(fmt(r.get(c)) for c in cols))
        console.print(st)
    console.print(f"rows written to {run.results.path}")
    if delta is None:
        nxt = [
            f"editrisk edit {q(model)} --request {q(requests)} --save-delta delta.safetensors",
            f"editrisk eval {q(model)} --requests {q(requests)} --delta delta.safetensors",
        ]
    else:
        nxt = [
            f"editrisk export {q(model)} --delta {q(delta)} --out edited-model",
            f"editrisk interpolate {q(model)} --delta {q(delta)} --request {q(requests)}",
        ]
    next_steps(run.path, *nxt)  # fmt: skip


def _add_lm_eval(
    h: Any, d: Any, result: Any, tasks: list[str], manager: Any, limit: float,
    fewshot: int | None, batch_size: int,
) -> None:  # fmt: skip
    """lm-eval `tasks` on each state `result` measured (unedited; edited with `d`), through
    lm-eval's HFLM, added to that state's summary (columns lm_eval.<task>.<metric>)."""
    from editrisk.evaluation.general import lm_eval_columns, run_lm_eval

    for state in list(result.summary):
        delta = d if state == "edited" else None
        cols = lm_eval_columns(
            run_lm_eval(
                h,
                tasks,
                limit=limit or None,
                batch_size=batch_size,
                num_fewshot=fewshot,
                delta=delta,
                manager=manager,
            )
        )
        result.summary[state].update(cols)
        for row in result.rows:
            if row["kind"] == "summary" and row["state"] == state:
                row.update(cols)
