"""`editrisk analyze RUN_DIR`: per-method curves against the number of edits, L1-vs-accuracy
correlations and collapse steps, as PNG plots, summary.csv, summary.md and summary.json under
RUN_DIR/analysis/. Works on every run (a run without steps gets a one-point table)."""

from __future__ import annotations

import csv
import io
import json
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
        "failed steps": sum(1 for r in mine if r.get("kind") == "failed"),
    }


def _plot(
    rows: list[dict[str, Any]], names: list[str], metric: str, schedule: str, kind: str,
    path: Path, ylabel: str,
) -> Path | None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        m: l1_curve(rows, m) if metric == "L1" else curve(rows, m, metric, schedule, kind)
        for m in names
    }
    if not any(len(pts) > 1 for pts in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, pts in series.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m)
    ax.set_xlabel("number of edits")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    labels = sorted(
        {r["schedule"] for r in rows if r.get("kind") == kind
         and str(r.get("schedule", "")).startswith(schedule)}
    )  # fmt: skip
    ax.set_title(f"{ylabel}\nschedule: {', '.join(labels)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyze_run(run_dir: str | Path, metric: str | None = None, threshold: float = 0.5) -> Analysis:
    """Analyse a run directory; collapse = retention `metric` below `threshold` for good.
    `metric` defaults to the family's edit success (efficacy.prob_compare, edit_success.top1)."""
    rd = RunDir(run_dir)
    rd.config()  # refuses a folder that is not a run
    rows = rd.results.rows()
    if not rows:
        raise EditriskError(f"{rd.path}: no result rows yet")
    if metric is None:
        metric = next((k for k in EDIT_KEYS if any(k in r for r in rows)), EDIT_KEYS[-1])
    if not any(metric in r for r in rows):
        have = sorted({k for r in rows if r.get("kind") == "summary" for k in r if "." in k})
        raise EditriskError(f"{rd.path}: no rows measure {metric!r}; metrics here: {have}")
    names = methods(rows)
    rep = Analysis(rd.path / "analysis")
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
        out = _plot(rows, names, mt, sched, kind, rep.folder / f"{slug}.png", label)
        if out is not None:
            rep.plots.append(out)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rep.rows[0]))
    w.writeheader()
    w.writerows(rep.rows)
    atomic_write_text(rep.folder / "summary.csv", buf.getvalue())
    note = (
        f"Collapse: the retention check (all edits so far) of `{metric}` falls below "
        f"{threshold} and stays below. Correlations: edited weights' L1 (sum) vs "
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
