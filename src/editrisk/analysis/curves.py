"""Curves (metric vs number of edits) from result rows, and collapse detection."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]
Point = tuple[int, float]


def methods(rows: Iterable[Row]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows if "method" in r))


def curve(
    rows: Iterable[Row], method: str, metric: str, schedule: str, kind: str = "summary"
) -> list[Point]:
    """(edits so far, value) of `metric` for `method` under evaluation `schedule`.

    `schedule` is an exact label ("immediate", "final") or a family prefix ("retention@",
    "general@"). Steps are ordered by edit count."""
    pts = {}
    for r in rows:
        if r.get("method") != method or r.get("kind") != kind:
            continue
        s = r.get("schedule", "")
        if not (s == schedule or (schedule.endswith("@") and s.startswith(schedule))):
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
