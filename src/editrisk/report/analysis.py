"""`editrisk analyze RUN_DIR [RUN_DIR ...]`: per-method curves against the number of edits,
L1-vs-accuracy correlations and collapse steps, as PNG plots (one per metric and a four-panel
overview), summary.csv, summary.md and summary.json under RUN_DIR/analysis/ (or `--out` for
several runs side by side). Works on every run (a run without steps gets a one-point table).
Edit counts spanning a decade or more are drawn on a log axis, perplexity on a log axis."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text
from editrisk.report.curves import EDIT_KEYS, Point, collapse_step, curve, l1_curve, methods
from editrisk.report.stats import correlation_p, pearson, spearman

EDIT_METRICS = ("efficacy", "generalization", "specificity")
GENERAL_METRICS = ("heldout.prob_compare", "perplexity", "shifted_acc.top1")


@dataclass
class Analysis:
    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)

    @property
    def table_markdown(self) -> str:
        if not self.rows:
            return "(no methods)"
        cols = list(self.rows[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in self.rows]
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def _at(points: list[Point], x: int) -> float | None:
    return dict(points).get(x)


def _last(points: list[Point]) -> float | None:
    return points[-1][1] if points else None


def _first(points: list[Point]) -> float | None:
    return points[0][1] if points else None


def method_summary(
    rows: list[dict[str, Any]], method: str, metric: str, threshold: float
) -> dict[str, Any]:
    """One table row: final numbers, L1 growth, correlation of L1 with `metric` over the
    retention checks, and the collapse step."""
    retention = curve(rows, method, metric, "retention@")
    immediate = curve(rows, method, metric, "immediate")
    final = curve(rows, method, metric, "final")
    l1 = l1_curve(rows, method)
    paired = [(v1, acc) for x, acc in retention if (v1 := _at(l1, x)) is not None]
    xs, ys = [p[0] for p in paired], [p[1] for p in paired]
    held = curve(rows, method, "heldout.prob_compare", "general@", kind="general")
    ppl = curve(rows, method, "perplexity", "general@", kind="general")
    mine = [r for r in rows if r.get("method") == method]
    return {
        "method": method,
        "protocol": next((r["protocol"] for r in mine if "protocol" in r), None),
        "edits": max((r.get("edits") or 0 for r in mine), default=0),
        f"immediate {metric}": (
            sum(v for _, v in immediate) / len(immediate) if immediate else None
        ),
        f"final {metric}": _last(final),
        "heldout before": _first(held),
        "heldout after": _last(held),
        "ppl before": _first(ppl),
        "ppl after": _last(ppl),
        "L1 growth": (_last(l1) / _first(l1)) if l1 and _first(l1) else None,
        "pearson r": (r := pearson(xs, ys)),
        "pearson p": correlation_p(r, len(paired)),
        "spearman rho": (rho := spearman(xs, ys)),
        "spearman p": correlation_p(rho, len(paired)),
        "n": len(paired),
        "collapse at edit": collapse_step(retention, threshold),
        "ppl collapse at edit": next(
            (r.get("edits") for r in mine if r.get("kind") == "collapsed"), None
        ),
        "failed steps": sum(1 for r in mine if r.get("kind") == "failed"),
    }


def _series(
    rows: list[dict[str, Any]], names: list[str], metric: str, schedule: str, kind: str
) -> dict[str, list[tuple[int, float, float | None]]]:
    """Per method: (edits, value, 95 % half-width or None) of one curve."""
    out = {}
    for m in names:
        if metric == "L1":
            out[m] = [(x, v, None) for x, v in l1_curve(rows, m)]
            continue
        ci = dict(curve(rows, m, f"{metric}.ci95", schedule, kind))
        out[m] = [(x, v, ci.get(x)) for x, v in curve(rows, m, metric, schedule, kind)]
    return out


def _draw(ax: Any, series: dict[str, list[tuple[int, float, float | None]]], ylabel: str) -> None:
    """One panel: a line per method, sampled retention with its 95 % interval; the x-axis is
    logarithmic when the edit counts span a decade or more (the unedited point, at 0 edits,
    is then a dotted line), perplexity on a log y-axis."""
    xs = [x for pts in series.values() for x, _, _ in pts if x > 0]
    log_x = bool(xs) and max(xs) / min(xs) >= 10
    unedited = False
    for i, (m, pts) in enumerate(series.items()):
        colour = f"C{i % 10}"
        if log_x:
            for x, v, _ in pts:
                if x == 0:
                    ax.axhline(v, color=colour, ls=":", lw=1, alpha=0.7)
                    unedited = True
            pts = [p for p in pts if p[0] > 0]
        if not pts:
            continue
        err = [e or 0.0 for _, _, e in pts] if any(e for _, _, e in pts) else None
        ax.errorbar(
            [p[0] for p in pts], [p[1] for p in pts], yerr=err, marker="o", ms=3,
            capsize=2 if err else 0, color=colour, label=m,
        )  # fmt: skip
    if log_x:
        ax.set_xscale("log")
        lo, hi = min(xs), max(xs)
        ticks = [m * 10**e for e in range(len(str(hi)) + 1) for m in (1, 2, 5)]
        ax.set_xticks([t for t in ticks if lo <= t <= hi], minor=False)
        ax.set_xticklabels([f"{t:,}" for t in ticks if lo <= t <= hi])
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if ylabel.startswith("perplexity"):
        ax.set_yscale("log")
    scale = " (log scale; dotted: unedited)" if unedited else " (log scale)" if log_x else ""
    ax.set_xlabel("number of edits" + scale)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both" if log_x else "major")


def _schedules(rows: list[dict[str, Any]], schedule: str, kind: str) -> str:
    labels = sorted(
        {r["schedule"] for r in rows if r.get("kind") == kind
         and str(r.get("schedule", "")).startswith(schedule)}
    )  # fmt: skip
    return ", ".join(labels) if len(labels) <= 3 else f"{labels[0]} ... ({len(labels)} checks)"


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(
    rows: list[dict[str, Any]], names: list[str], metric: str, schedule: str, kind: str,
    path: Path, ylabel: str,
) -> Path | None:  # fmt: skip
    plt = _pyplot()
    series = _series(rows, names, metric, schedule, kind)
    if not any(len(pts) > 1 for pts in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw(ax, series, ylabel)
    ax.set_title(f"{ylabel}\nschedule: {_schedules(rows, schedule, kind)}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _overview(
    rows: list[dict[str, Any]], names: list[str], panels: list[tuple[str, str, str, str]],
    path: Path,
) -> Path | None:  # fmt: skip
    """The four curves a reader asks for first, side by side, one legend."""
    plt = _pyplot()
    drawn = [(p, _series(rows, names, *p[:3])) for p in panels]
    drawn = [(p, s) for p, s in drawn if any(len(pts) > 1 for pts in s.values())]
    if len(drawn) < 2:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.2 * len(drawn), 3.6), squeeze=False)
    for ax, ((_, _, _, label), series) in zip(axes[0], drawn):
        _draw(ax, series, label)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _merge(paths: list[Path]) -> list[dict[str, Any]]:
    """All runs' rows; a method name found in more than one run is labelled '<run>: <method>'
    (the run labels of `editrisk report`: config name, or folder when two runs share one)."""
    from editrisk.report.html import _load

    runs = _load(paths)
    if len(runs) == 1:
        return runs[0].rows
    seen: dict[str, int] = {}
    for run in runs:
        for m in methods(run.rows):
            seen[m] = seen.get(m, 0) + 1
    return [
        {**r, "method": f"{run.label}: {r['method']}"} if seen.get(r.get("method"), 0) > 1 else r
        for run in runs
        for r in run.rows
    ]


def analyze_run(run_dir: str | Path, metric: str | None = None, threshold: float = 0.5) -> Analysis:
    """Analyse a run directory into RUN_DIR/analysis; collapse = retention `metric` below
    `threshold` for good. `metric` defaults to the family's edit success
    (efficacy.prob_compare, edit_success.top1)."""
    return analyze_runs([run_dir], None, metric, threshold)


def analyze_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    metric: str | None = None,
    threshold: float = 0.5,
) -> Analysis:
    """Analyse one run (into RUN_DIR/analysis unless `out` is given) or several side by side
    (into `out`, required: no run's folder is written by another run's analysis)."""
    if not run_dirs:
        raise EditriskError("no run directory to analyse")
    if len(run_dirs) > 1 and out is None:
        raise EditriskError("several runs are analysed into one folder: give --out FOLDER")
    rds = [RunDir(p) for p in run_dirs]
    paths = [rd.path.resolve() for rd in rds]
    if len(set(paths)) < len(paths):
        raise EditriskError("a run directory is listed twice; list each run once")
    if out is not None:
        target = Path(out)
        if target.exists() and not target.is_dir():
            raise EditriskError(f"--out {target}: exists and is not a folder")
        if (target / "config.yaml").exists() or (target / "rows.jsonl").exists():
            raise EditriskError(
                f"--out {target}: is a run directory; analyses go to a folder of their own"
            )
    rows = _merge([rd.path for rd in rds])
    label = ", ".join(str(rd.path) for rd in rds)
    if metric is None:
        metric = next((k for k in EDIT_KEYS if any(k in r for r in rows)), EDIT_KEYS[-1])
    if not any(metric in r for r in rows):
        have = sorted({k for r in rows if r.get("kind") == "summary" for k in r if "." in k})
        raise EditriskError(f"{label}: no rows measure {metric!r}; metrics here: {have}")
    names = methods(rows)
    rep = Analysis(Path(out) if out is not None else rds[0].path / "analysis")
    rep.folder.mkdir(parents=True, exist_ok=True)
    rep.rows = [method_summary(rows, m, metric, threshold) for m in names]
    convention = metric.split(".", 1)[1] if "." in metric else "prob_compare"
    plots = [
        (f"{e}.{convention}", "retention@", "summary", f"{e} ({convention})") for e in EDIT_METRICS
    ]
    plots += [(metric, "immediate", "summary", f"{metric} of the step's edits")]
    plots += [(g, "general@", "general", g) for g in GENERAL_METRICS]
    plots += [("L1", "immediate", "diagnostics", "L1 norm of edited weights (sum)")]
    for mt, sched, kind, label in plots:
        slug = label.split(" ")[0].replace(".", "_") + "_" + sched.rstrip("@")
        out_png = _plot(rows, names, mt, sched, kind, rep.folder / f"{slug}.png", label)
        if out_png is not None:
            rep.plots.append(out_png)
    panels = [plots[0], plots[1], *[p for p in plots if p[2] == "general"][:2]]
    overview = _overview(rows, names, panels, rep.folder / "overview.png")
    if overview is not None:
        rep.plots.append(overview)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rep.rows[0]))
    w.writeheader()
    w.writerows(rep.rows)
    atomic_write_text(rep.folder / "summary.csv", buf.getvalue())
    note = (
        f"Collapse: the retention check (all edits so far) of `{metric}` falls below "
        f"{threshold} and stays below; ppl collapse: the run stopped at a general evaluation "
        "above its `collapse_perplexity`. Correlations: edited weights' L1 (sum) vs "
        f"retention `{metric}`, over the retention checks (n points), with two-sided p-values "
        "(t-test, n - 2 degrees of freedom; both move with the number of edits, so a small p "
        "is no evidence of cause).\n\n"
    )
    atomic_write_text(rep.folder / "summary.md", note + rep.table_markdown + "\n")
    atomic_write_text(
        rep.folder / "summary.json",
        json.dumps({"metric": metric, "threshold": threshold, "rows": rep.rows}, indent=2),
    )
    return rep
