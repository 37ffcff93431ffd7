"""Views of the one row schema: curves against the number of edits, trade-off points along
alpha, and collapse detection."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]
Point = tuple[int, float]

# The first of these a run holds is the axis of its trade-off plot (language, vision).
EDIT_KEYS = ("edit_success.top1", "efficacy.prob_compare")
ROBUST_KEYS = ("shifted_acc.top1", "heldout.prob_compare", "clean_acc.top1")


# Numeric identity columns: never averaged as metrics.
NOT_METRICS = frozenset(
    {"alpha", "seed", "step", "n_steps", "edits", "batch_size", "layer", "n", "severity"}
)


def methods(rows: Iterable[Row]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows if "method" in r))


def _whole_edit(r: Row) -> bool:
    """A row of the whole edit (alpha 1) or of the unedited model."""
    return r.get("alpha") in (None, 1.0) or r.get("schedule") == "unedited"


def curve(
    rows: Iterable[Row], method: str, metric: str, schedule: str, kind: str = "summary"
) -> list[Point]:
    """(edits so far, value) of `metric` for `method` under evaluation `schedule`, for the
    whole edit (alpha 1).

    `schedule` is an exact label ("immediate", "final") or a prefix ("retention@",
    "general@"); general curves start at the unedited model (0 edits)."""
    pts = {}
    for r in rows:
        if r.get("method") != method or r.get("kind") != kind or not _whole_edit(r):
            continue
        s = r.get("schedule", "")
        prefix = schedule.endswith("@") and s.startswith(schedule)
        if not (s == schedule or prefix or (schedule == "general@" and s == "unedited")):
            continue
        v = r.get(metric)
        if isinstance(v, (int, float)):
            pts[r["edits"]] = float(v)
    return sorted(pts.items())


def l1_curve(rows: Iterable[Row], method: str, field: str = "weight.l1_sum") -> list[Point]:
    """Sum of `field` over every edited matrix, per step (from `diagnostics` rows)."""
    by_step: dict[int, float] = defaultdict(float)
    for r in rows:
        if r.get("method") == method and r.get("kind") == "diagnostics":
            by_step[r["edits"]] += float(r[field])
    return sorted(by_step.items())


def collapse_step(points: Sequence[Point], threshold: float) -> int | None:
    """Edit count at which the curve falls below `threshold` and stays below to the end
    (None if it ends at or above it). Staying below makes one noisy dip not count."""
    at = None
    for x, v in points:
        at = (x if at is None else at) if v < threshold else None
    return at


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def line_label(r: Row) -> str:
    """A trade-off line: method, the grid layer when it was set, and the 1-LI path."""
    layer = r.get("layer")
    at = "" if layer in (None, "default") else f" @L{layer}"
    return f"{r.get('method')}{at} / {r.get('path')}"


def job_key(r: Row) -> tuple:
    """The job a row belongs to: method, grid layer, seed, edit set."""
    return (r.get("method"), r.get("layer"), r.get("seed"), r.get("edit_set"))


def trade_off_points(rows: Sequence[Row]) -> list[Row]:
    """One point per (line, alpha): edit success from the evaluation of all edits at the end
    (`final`, else the mean of `immediate` over steps) and general ability after the last
    step, averaged over seeds and edit sets (n = how many); alpha 0 is the unedited model."""
    last: dict[tuple, int] = defaultdict(int)
    lines: dict[tuple, set[str]] = defaultdict(set)
    for r in rows:
        last[job_key(r)] = max(last[job_key(r)], r.get("step") or 0)
        if r.get("schedule") != "unedited" and r.get("path"):
            lines[job_key(r)].add(line_label(r))
    has_final = {r.get("method") for r in rows if r.get("schedule") == "final"}
    per_job: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        kind, sched, job = r.get("kind"), r.get("schedule"), job_key(r)
        if kind not in ("summary", "general"):
            continue
        if sched == "unedited":
            targets = [(line, 0.0) for line in lines[job]]
        elif (kind == "general" and r.get("step") == last[job]) or (
            kind == "summary"
            and (sched == "final" or (sched == "immediate" and r.get("method") not in has_final))
        ):
            targets = [(line_label(r), float(r["alpha"]))]
        else:
            continue
        for line, alpha in targets:
            for k, v in r.items():
                if _num(v) and k not in NOT_METRICS:
                    per_job[(line, alpha, job)][k].append(float(v))
    groups: dict[tuple[str, float], list[dict[str, float]]] = defaultdict(list)
    for (line, alpha, _), metrics in per_job.items():
        groups[(line, alpha)].append({k: sum(v) / len(v) for k, v in metrics.items()})
    out = []
    for (line, alpha), ms in sorted(groups.items()):
        keys = sorted({k for m in ms for k in m})
        mean = {k: sum(m[k] for m in ms if k in m) / sum(k in m for m in ms) for k in keys}
        out.append({"line": line, "alpha": alpha, "n": len(ms), **mean})
    return out
