"""The report's interactive plots as plotly figure specs (plain dicts: `data` and `layout`),
drawn in the page by the plotly.js inlined there.

Every curve has the unedited model as a dashed reference; edit-count axes are integers (log
scale when the edits span two decades or more); trade-off curves show alpha on hover and mark
the alphas the selection rules choose.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from editrisk.report.curves import curve, l1_curve

Row = dict[str, Any]

FONT = {"family": "system-ui, sans-serif", "size": 14}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star")
DASHES = ("solid", "dot", "dash", "longdash", "dashdot")
REFERENCE = {"color": "#555", "dash": "dash", "width": 2}


@dataclass
class Figure:
    key: str  # unique in the page (letters, digits, '-')
    title: str
    caption: str
    data: list[dict[str, Any]] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return {"key": self.key, "data": self.data, "layout": self.layout}


def _layout(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
    """Readable fonts, a white grid, the legend below the plot (the title is the page's)."""
    return {
        "font": FONT,
        "height": 460,
        "margin": {"l": 70, "r": 20, "t": 30, "b": 20},
        "xaxis": {"gridcolor": "#e5e5e5", "zeroline": False, "automargin": True, **x},
        "yaxis": {"gridcolor": "#e5e5e5", "zeroline": False, "automargin": True, **y},
        "legend": {"font": {"size": 13}, "orientation": "h", "y": -0.3, "yanchor": "top"},
        "hovermode": "closest",
        "plot_bgcolor": "white",
    }


def _style(i: int, n_points: int = 0) -> dict[str, Any]:
    """Distinct marker and dash per series, so coinciding lines stay visible; small markers
    on long series."""
    return {
        "marker": {"symbol": SYMBOLS[i % len(SYMBOLS)], "size": 8 if n_points <= 40 else 4},
        "line": {"dash": DASHES[i % len(DASHES)], "width": 2.5},
    }


def edit_axis(xs: Sequence[int]) -> dict[str, Any]:
    """An integer edit-count axis; log scale when the positive counts span >= 2 decades."""
    pos = [x for x in xs if x > 0]
    title = {"text": "number of edits"}
    if pos and max(pos) / min(pos) >= 100:
        ticks = [
            m * 10**e
            for e in range(int(math.log10(min(pos))), int(math.log10(max(pos))) + 1)
            for m in (1, 2, 5)
        ]
        ticks = [t for t in ticks if min(pos) <= t <= max(pos)] or pos
        return {
            "type": "log",
            "tickvals": ticks,
            "ticktext": [str(t) for t in ticks],
            "title": title,
        }
    span = max(xs, default=1) - min(xs, default=0)
    step = next(s * 10**e for e in range(9) for s in (1, 2, 5) if s * 10**e * 8 >= span)
    return {"tickmode": "linear", "tick0": 0, "dtick": step, "tickformat": "d", "title": title}


def _reference(name: str, x0: float, x1: float, y: float) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": [x0, x1],
        "y": [y, y],
        "line": REFERENCE,
        "hovertemplate": f"{name}: %{{y:.4g}}<extra></extra>",
    }


def _references(values: dict[str, float], x0: float, x1: float) -> list[dict[str, Any]]:
    """One dashed line per distinct unedited value; named by the series it belongs to when
    they differ (several models on one page)."""
    groups: dict[float, list[str]] = defaultdict(list)
    for series, v in values.items():
        groups[round(v, 9)].append(series)
    if len(groups) == 1:
        return [_reference("unedited", x0, x1, next(iter(groups)))]
    return [_reference(f"unedited ({', '.join(s)})", x0, x1, v) for v, s in groups.items()]


def _unedited(rows: Sequence[Row], method: str, metric: str, kind: str) -> float | None:
    vals = [
        float(r[metric])
        for r in rows
        if r.get("method") == method
        and r.get("schedule") == "unedited"
        and r.get("kind") == kind
        and isinstance(r.get(metric), (int, float))
    ]
    return sum(vals) / len(vals) if vals else None


def _running_mean(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    out, total = [], 0.0
    for i, (x, v) in enumerate(points, 1):
        total += v
        out.append((x, total / i))
    return out


def edit_count_figures(rows: Sequence[Row], names: Sequence[str]) -> list[Figure]:
    """Curves against the number of edits, for runs of several steps."""
    cols = {k for r in rows if r.get("kind") in ("summary", "general") for k in r}
    conv = "prob_compare" if "efficacy.prob_compare" in cols else "token_acc"
    edit = "edit_success.top1" if "edit_success.top1" in cols else f"efficacy.{conv}"
    specs = [
        (
            edit,
            "retention@",
            "summary",
            "Edit success of all edits so far",
            "Retention checks: every edit made so far, evaluated together.",
        ),
        (
            f"generalization.{conv}",
            "retention@",
            "summary",
            "Paraphrases of all edits so far",
            "Retention checks on the edits' paraphrases.",
        ),
        (
            f"specificity.{conv}",
            "retention@",
            "summary",
            "Neighbours keep their answer",
            "Retention checks on neighbouring facts: 1 means no neighbour was disturbed.",
        ),
        (
            edit,
            "immediate",
            "summary",
            "Edit success right after each step (running mean)",
            "Each step's own edits evaluated right after it, averaged over the steps so far.",
        ),
        (
            "heldout.prob_compare",
            "general@",
            "general",
            "Held-out knowledge",
            "Facts never edited: share whose true answer still beats every alternative.",
        ),
        (
            "perplexity",
            "general@",
            "general",
            "Perplexity",
            "Token-level perplexity of plain sentences (lower is better).",
        ),
        (
            "shifted_acc.top1",
            "general@",
            "general",
            "Accuracy under distribution shift",
            "General test set, every corruption at every severity.",
        ),
    ]
    out = []
    for metric, sched, kind, title, caption in specs:
        if metric not in cols:
            continue
        series = {m: curve(rows, m, metric, sched, kind) for m in names}
        if sched == "immediate":
            series = {m: _running_mean(p) for m, p in series.items()}
        base = {m: v for m in names if (v := _unedited(rows, m, metric, kind)) is not None}
        fig = _curves(f"edits-{len(out)}", title, caption, series, base, metric)
        if fig is not None:
            out.append(fig)
    l1 = {m: l1_curve(rows, m) for m in names}
    l1_base = {m: v for m in names if (v := _l1_unedited(rows, m)) is not None}
    title = "L1 norm of the edited weights"
    caption = "Sum of |w| over every edited matrix after each step (the D4S paper's measure"
    if l1_base.keys() == l1.keys():  # a ratio: methods edit different numbers of matrices
        l1 = {m: [(x, v / l1_base[m]) for x, v in pts] for m, pts in l1.items()}
        caption += " of norm growth), over the unedited weights' sum."
        fig = _curves("edits-l1", title, caption, l1, dict.fromkeys(l1, 1.0), "L1 / unedited L1")
    else:  # rows written before diagnostics recorded the unedited L1
        caption += "); this run's rows do not record the unedited value."
        fig = _curves("edits-l1", title, caption, l1, {}, "L1 (sum)")
    return out + ([fig] if fig is not None else [])


def _l1_unedited(rows: Sequence[Row], method: str) -> float | None:
    """Sum over the edited matrices of their unedited L1, from the first step's rows."""
    diag = [
        r
        for r in rows
        if r.get("method") == method and r.get("kind") == "diagnostics" and "unedited.l1_sum" in r
    ]
    if not diag:
        return None
    first = min(r["edits"] for r in diag)
    return sum(float(r["unedited.l1_sum"]) for r in diag if r["edits"] == first)


def _curves(
    key: str,
    title: str,
    caption: str,
    series: dict[str, list[tuple[int, float]]],
    base: dict[str, float],
    ylabel: str,
) -> Figure | None:
    if not any(len(p) > 1 for p in series.values()):
        return None
    xs = [x for pts in series.values() for x, _ in pts]
    axis = edit_axis(xs)
    log = axis.get("type") == "log"
    data = []
    for i, (name, pts) in enumerate(series.items()):
        pts = [(x, v) for x, v in pts if x > 0 or not log]
        if pts:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": name,
                    "x": [p[0] for p in pts],
                    "y": [p[1] for p in pts],
                    **_style(i, len(pts)),
                    "hovertemplate": f"{name}<br>%{{x}} edits: %{{y:.4g}}<extra></extra>",
                }
            )
    pos = [x for x in xs if x > 0 or not log]
    data += _references(base, min(pos), max(pos)) if base else []
    ys = [v for pts in series.values() for _, v in pts] + list(base.values())
    ylog = min(ys) > 0 and max(ys) / min(ys) >= 100
    y = {"title": {"text": ylabel}, **({"type": "log"} if ylog else {})}
    return Figure(key, title, caption, data, _layout(axis, y))


def trade_off_figure(
    points: Sequence[Row], edit: str, robust: str, choices: Sequence[Row]
) -> Figure:
    """Edit success against general ability along alpha, one line per 1-LI path, with the
    unedited model (alpha 0) as reference lines and the chosen alphas marked."""
    data = []
    lines = list(dict.fromkeys(p["line"] for p in points))
    for i, line in enumerate(lines):
        pts = [p for p in points if p["line"] == line and edit in p and robust in p]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": line,
                **_style(i, len(pts)),
                "x": [p[robust] for p in pts],
                "y": [p[edit] for p in pts],
                "customdata": [[p["alpha"], p["n"]] for p in pts],
                "hovertemplate": f"{line}<br>alpha %{{customdata[0]}} (n %{{customdata[1]}})"
                f"<br>{edit} %{{y:.4g}}<br>{robust} %{{x:.4g}}<extra></extra>",
            }
        )
    for policy, symbol in (("threshold", "star"), ("knee", "diamond-open")):
        chosen = [c for c in choices if c.get("policy") == policy and c.get("alpha") is not None]
        by = {(p["line"], p["alpha"]): p for p in points}
        hit = [(c, by[(c["line"], c["alpha"])]) for c in chosen if (c["line"], c["alpha"]) in by]
        if hit:
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"chosen alpha: {policy}",
                    "x": [p[robust] for _, p in hit],
                    "y": [p[edit] for _, p in hit],
                    "customdata": [[c["line"], c["alpha"]] for c, _ in hit],
                    "marker": {
                        "symbol": symbol,
                        "size": 18,
                        "color": "#d62728",
                        "line": {"width": 2, "color": "#d62728"},
                    },
                    "hovertemplate": f"{policy} choice<br>%{{customdata[0]}}<br>alpha "
                    "%{customdata[1]}<extra></extra>",
                }
            )
    zero = [p for p in points if p["alpha"] == 0.0 and edit in p and robust in p]
    if zero:
        ex = sum(p[edit] for p in zero) / len(zero)
        rx = sum(p[robust] for p in zero) / len(zero)
        xs = [p[robust] for p in points if robust in p]
        ys = [p[edit] for p in points if edit in p]
        data.append(_reference("unedited", min(xs), max(xs), ex))
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "unedited",
                "showlegend": False,
                "legendgroup": "unedited",
                "x": [rx, rx],
                "y": [min(ys), max(ys)],
                "line": REFERENCE,
                "hovertemplate": "unedited: %{x:.4g}<extra></extra>",
            }
        )
        data[-2]["legendgroup"] = "unedited"
    title = f"Trade-off along alpha: {edit} against {robust}"
    caption = (
        "Each line scales one edit's change by alpha (1-layer interpolation; 'all layers' scales "
        f"every edited layer together). y: {edit} of all edits at the end; x: {robust} after "
        "the last step; alpha 0 is the unedited model (dashed). Hover a point for its alpha; "
        "red marks: the alphas the threshold and knee rules choose."
    )
    layout = _layout(
        {"title": {"text": f"general ability: {robust}"}},
        {"title": {"text": f"edit success: {edit}"}},
    )
    return Figure("trade-off", title, caption, data, layout)


def severity_figure(table: Sequence[Row]) -> Figure:
    """Accuracy against corruption severity; the unedited model dashed."""
    data = []
    labels = list(dict.fromkeys(t["line"] for t in table))
    for i, label in enumerate(labels):
        pts = [t for t in table if t["line"] == label]
        trace = {
            "type": "scatter",
            "mode": "lines+markers",
            "name": label,
            **_style(i, len(pts)),
            "x": [t["severity"] for t in pts],
            "y": [t["accuracy"] for t in pts],
            "hovertemplate": f"{label}<br>severity %{{x}}: %{{y:.4g}}<extra></extra>",
        }
        if label.startswith("unedited"):
            trace["line"] = REFERENCE
        data.append(trace)
    title = "Accuracy against corruption severity"
    layout = _layout(
        {"title": {"text": "corruption severity (0 = clean)"}, "dtick": 1, "tickformat": "d"},
        {"title": {"text": "accuracy"}},
    )
    caption = (
        "General test set after the last step, every corruption at every severity, averaged "
        "over corruptions; the unedited model dashed."
    )
    return Figure("severity", title, caption, data, layout)
