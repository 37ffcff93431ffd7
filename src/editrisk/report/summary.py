"""The report's headline: per line (method, grid layer, 1-LI path) the numbers a reader asks
first, each beside the unedited model's, with a bootstrap interval and the n behind it.

Intervals are over the units a number averages: the facts of request rows (or the 0/1 cases
behind a stored share and its count: a held-out share of n facts, an accuracy over n images),
else the jobs (seeds, edit sets) of the line. A single unit gets no interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from editrisk.report.curves import job_key, line_label
from editrisk.report.stats import bootstrap_ci

Row = dict[str, Any]


@dataclass(frozen=True)
class Measure:
    """One headline column: `metric` of the edit set (`source` 'edits', at the end or
    `immediate`ly after each step) or of general ability (`source` 'general')."""

    label: str
    metric: str
    source: str
    when: str = "end"
    higher_is_better: bool = True


@dataclass(frozen=True)
class Estimate:
    mean: float | None
    ci: tuple[float, float] | None
    n: int
    unit: str


@dataclass
class Headline:
    measures: list[Measure]
    schedules: dict[str, str]  # measure label -> the schedules its numbers come from
    rows: list[tuple[str, dict[str, tuple[Estimate, Estimate]]]]  # line -> (edited, unedited)


def measures_for(rows: Sequence[Row]) -> list[Measure]:
    """The headline columns a run's rows can fill (language or vision)."""
    cols = {k for r in rows for k in r}
    out: list[Measure] = []
    if "edit_success.top1" in cols:  # vision
        out += [
            Measure("edit success", "edit_success.top1", "edits"),
            Measure("edit success, shifted", "edit_success_shifted.top1", "edits"),
            Measure("clean accuracy", "clean_acc.top1", "general"),
            Measure("shifted accuracy", "shifted_acc.top1", "general"),
        ]
    elif any(c.startswith("efficacy.") for c in cols):
        conv = "prob_compare" if "efficacy.prob_compare" in cols else "token_acc"
        sequential = max((r.get("n_steps") or 0 for r in rows), default=0) > 1
        out.append(Measure("edit success", f"efficacy.{conv}", "edits"))
        if sequential and any(r.get("schedule") == "immediate" for r in rows):
            out.append(
                Measure("edit success right after its step", f"efficacy.{conv}", "edits", "now")
            )
        out += [
            Measure("paraphrases", f"generalization.{conv}", "edits"),
            Measure("neighbours keep their answer", f"specificity.{conv}", "edits"),
            Measure("held-out knowledge", "heldout.prob_compare", "general"),
            Measure("perplexity", "perplexity", "general", higher_is_better=False),
        ]
    return [m for m in out if m.metric in cols]


# Shares of 0/1 outcomes stored with their count: the bootstrap resamples the outcomes.
ZERO_ONE_COUNT = {
    "efficacy.prob_compare": "n",  # a summary row: requests, one rewrite prompt each
    "heldout.prob_compare": "heldout.n",
    "edit_success.top1": "n",  # images of the edit set
}


def _units(selected: Sequence[Row], metric: str) -> tuple[list[float], str]:
    """The values a mean is over: per fact (request rows), per 0/1 outcome behind a share
    and its count, else one per row (a job)."""
    req = [r for r in selected if r.get("kind") == "request" and _num(r.get(metric))]
    if req:
        return [float(r[metric]) for r in req], "facts"
    vals: list[float] = []
    unit = "jobs"
    for r in selected:
        v, count = r.get(metric), r.get(ZERO_ONE_COUNT.get(metric, ""))
        if not _num(v):
            continue
        if isinstance(count, int) and count > 0:
            hits = round(v * count)
            vals += [1.0] * hits + [0.0] * (count - hits)
            unit = "images" if metric.endswith(".top1") else "facts"
        else:
            vals.append(float(v))
    return vals, unit


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def estimate(selected: Sequence[Row], metric: str) -> Estimate:
    """Mean of `metric` over the units of `selected`, its bootstrap interval and n."""
    vals, unit = _units(selected, metric)
    if not vals:
        return Estimate(None, None, 0, unit)
    return Estimate(sum(vals) / len(vals), bootstrap_ci(vals), len(vals), unit)


def _edited_rows(mine: Sequence[Row], m: Measure) -> list[Row]:
    """The line's whole-edit rows that `m` reads: `immediate` after every step, or per job
    `final`, else its last retention check, else `immediate`."""
    kinds = ("request", "summary") if m.source == "edits" else ("general",)
    rows = [r for r in mine if r.get("kind") in kinds]
    if m.when == "now":
        return [r for r in rows if r.get("schedule") == "immediate"]
    by_job: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        by_job[job_key(r)].append(r)
    out = []
    for job_rows in by_job.values():
        if m.source == "general":
            out += _at_last_step(job_rows)
            continue
        final = [r for r in job_rows if r.get("schedule") == "final"]
        ret = [r for r in job_rows if str(r.get("schedule")).startswith("retention@")]
        if final:
            out += final
        elif ret:
            out += _at_last_step(ret)
        else:
            out += [r for r in job_rows if r.get("schedule") == "immediate"]
    return out


def _at_last_step(rows: list[Row]) -> list[Row]:
    last = max(r.get("step") or 0 for r in rows)
    return [r for r in rows if (r.get("step") or 0) == last]


def _prefer_requests(rows: list[Row]) -> list[Row]:
    req = [r for r in rows if r.get("kind") == "request"]
    return req or rows


def headline(rows: Sequence[Row]) -> Headline:
    """Per line: every measure of `measures_for(rows)` after editing and unedited."""
    measures = measures_for(rows)
    lines: dict[str, list[Row]] = defaultdict(list)
    unedited: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.get("schedule") == "unedited":
            unedited[job_key(r)].append(r)
        elif r.get("alpha") == 1.0 and r.get("path"):
            lines[line_label(r)].append(r)
    schedules: dict[str, set[str]] = defaultdict(set)
    table = []
    for line, mine in lines.items():
        cells = {}
        jobs = {job_key(r) for r in mine}
        for m in measures:
            edited = _prefer_requests(_edited_rows(mine, m))
            kinds = ("request", "summary") if m.source == "edits" else ("general",)
            base = [r for j in jobs for r in unedited[j] if r.get("kind") in kinds]
            if m.source == "edits":
                asked = {(job_key(r), r.get("request")) for r in edited}
                base = _prefer_requests(base)
                if edited and edited[0].get("kind") == "request":
                    base = [r for r in base if (job_key(r), r.get("request")) in asked]
            cells[m.label] = (estimate(edited, m.metric), estimate(base, m.metric))
            for r in edited:
                schedules[m.label].add(_schedule_text(r, m))
        table.append((line, cells))
    return Headline(measures, {k: "; ".join(sorted(v)) for k, v in schedules.items()}, table)


def _schedule_text(r: Row, m: Measure) -> str:
    if m.when == "now":
        return "immediate: each step's edits right after it, over all steps"
    s = r.get("schedule")
    if s == "final":
        return f"final: all {r.get('edits')} edits after the last step"
    if str(s).startswith("retention@"):
        return f"{s}: all {r.get('edits')} edits at the last check"
    if str(s).startswith("general@"):
        return f"{s} after edit {r.get('edits')}"
    return f"{s} at edit {r.get('edits')}"
