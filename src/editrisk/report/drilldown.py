"""Per-edit view: for every edited fact of every line, the prompt, both targets, P(new) and
P(true) on the prompt and the greedy generation, before editing and after (language request
rows; see `editrisk.evaluation.metrics.request_detail`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from editrisk.report.curves import job_key, line_label

Row = dict[str, Any]

P_NEW, P_TRUE, GEN = "p_new.per_token", "p_true.per_token", "generation.greedy"


def _rank(r: Row) -> tuple[int, int]:
    """Which evaluation of a request is 'after': final, else the latest retention check,
    else the evaluation right after its own step."""
    s = str(r.get("schedule"))
    order = 2 if s == "final" else 1 if s.startswith("retention@") else 0
    return order, r.get("step") or 0


def edit_records(rows: Sequence[Row]) -> list[Row]:
    """One record per (line, seed, edit set, request) with the unedited and the last
    whole-edit evaluation of the request side by side."""
    before: dict[tuple, Row] = {}
    after: dict[tuple, Row] = {}
    for r in rows:
        if r.get("kind") != "request" or "prompt" not in r:
            continue
        if r.get("schedule") == "unedited":
            before[(job_key(r), r.get("request"))] = r
        elif r.get("alpha") == 1.0 and r.get("path"):
            key = (line_label(r), job_key(r), r.get("request"))
            if key not in after or _rank(r) >= _rank(after[key]):
                after[key] = r
    out = []
    for (line, job, req), a in after.items():
        b = before.get((job, req), {})
        out.append(
            {
                "line": line,
                "seed": job[2],
                "edit_set": job[3],
                "request": req,
                "prompt": a.get("prompt"),
                "target_new": a.get("target_new"),
                "target_true": a.get("target_true"),
                "p_new before": b.get(P_NEW),
                "p_new after": a.get(P_NEW),
                "p_true before": b.get(P_TRUE),
                "p_true after": a.get(P_TRUE),
                "generation before": b.get(GEN),
                "generation after": a.get(GEN),
                "after": f"{a.get('schedule')} (edit {a.get('edits')})",
            }
        )
    return out
