"""One evaluation pass over a request set, optionally before and after applying a Delta."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from editrisk.delta import Delta
from editrisk.evaluation.general import default_text_sample, heldout_accuracy, perplexity
from editrisk.evaluation.metrics import (
    GEN_MATCH_TOKENS,
    TEACHER_FORCED,
    Sampling,
    edit_generations,
    edit_metrics,
    generation_metrics,
    keep_questions,
    summarize,
)
from editrisk.evaluation.shifts import PERTURBATIONS, relative_robustness, shift_table
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


@dataclass
class EvalResult:
    """Per-request rows and summary rows (each with `state` and `kind`), plus shift rows."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)  # state -> metric -> value
    shift_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class EditMetricSpec:
    """Which edit metrics to measure: conventions, gen_match's token budget and sampling
    (`gen_match_sampled`), question kinds."""

    conventions: Sequence[str] = TEACHER_FORCED
    gen_match_tokens: int = GEN_MATCH_TOKENS
    questions: Sequence[str] = ()
    sampling: Sampling = Sampling()


def _measure(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    state: str,
    gen_tokens: int,
    shifts: Sequence[str],
    heldout: Sequence[EditRequest] | None,
    ppl: bool,
    batch_size: int,
    metrics: EditMetricSpec,
    out: EvalResult,
    step: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    gens, sampled, requests = None, None, keep_questions(requests, metrics.questions)
    if "gen_match" in metrics.conventions:
        gens = edit_generations(h, requests, metrics.gen_match_tokens, batch_size)
        step()
    if "gen_match_sampled" in metrics.conventions:
        tokens, how = metrics.gen_match_tokens, metrics.sampling
        sampled = edit_generations(h, requests, tokens, batch_size, sampling=how)
        step()
    rows = edit_metrics(
        h, requests, batch_size, None, metrics.conventions, gens, metrics.questions, sampled
    )
    step()
    if gen_tokens > 0:
        for row, g in zip(rows, generation_metrics(h, requests, gen_tokens)):
            row.update({k: v for k, v in g.items() if k != "id"})
        step()
    summary: dict[str, Any] = summarize(rows)
    if heldout:
        summary.update(heldout_accuracy(h, heldout, batch_size))
        step()
    if ppl:
        summary.update(perplexity(h, default_text_sample()))
        step()
    table: list[dict[str, Any]] = []
    if shifts:
        table = [
            {**k, **e}
            for k, e in zip(
                shift_table(h, requests, shifts, wanted="true", batch_size=batch_size),
                shift_table(h, requests, shifts, wanted="new", batch_size=batch_size),
            )
        ]
        for r in table:
            r["state"] = state
        step()
    out.rows += [{"kind": "request", "state": state, **r} for r in rows]
    out.rows.append({"kind": "summary", "state": state, "n": len(rows), **summary})
    out.summary[state] = summary
    return table


def evaluate(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    delta: Delta | None = None,
    gen_tokens: int = 0,
    shifts: bool | Sequence[str] = False,
    heldout: Sequence[EditRequest] | None = None,
    perplexity: bool = False,
    batch_size: int = 32,
    metrics: EditMetricSpec | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """Edit metrics (and optionally generation, held-out, perplexity and shift measurements)
    of `h`; with `delta`, of the unedited and the edited model (restored afterwards).

    `shifts`: True for every perturbation kind, or the kinds to measure; `metrics`: which
    conventions and question kinds (default: the teacher-forced three, no questions);
    `progress(task, done, total)`, if given, hears each measurement (a stage) as it ends."""
    out = EvalResult()
    metrics = metrics or EditMetricSpec()
    kinds = list(PERTURBATIONS) if shifts is True else list(shifts or [])
    states = [("unedited", nullcontext())] + ([("edited", delta.applied(h.model))] if delta else [])
    stages = 1 + sum(map(bool, ("gen_match" in metrics.conventions,
                                "gen_match_sampled" in metrics.conventions, gen_tokens > 0,
                                heldout, perplexity, kinds)))  # fmt: skip
    done, total = [0], stages * len(states)

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress("evaluate", done[0], total)

    if progress is not None:
        progress("evaluate", 0, total)
    tables = {}
    for state, ctx in states:
        with ctx:
            tables[state] = _measure(
                h, requests, state, gen_tokens, kinds, heldout, perplexity, batch_size,
                metrics, out, step,
            )  # fmt: skip
    if delta and kinds:
        for key in ("knowledge.prob_compare", "edit.prob_compare"):
            rel = relative_robustness(tables["edited"], tables["unedited"], key)
            for row, r in zip(tables["edited"], rel):
                row.update({k: v for k, v in r.items() if k.startswith("relative.")})
    out.shift_rows = [r for t in tables.values() for r in t]
    out.rows += [{"kind": "shift", **r} for r in out.shift_rows]
    return out
