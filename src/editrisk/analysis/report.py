"""`editrisk analyze RUN_DIR`: per-method curves, L1-vs-accuracy correlations and collapse
steps, written as PNG plots, summary.csv and summary.md under RUN_DIR/analysis/."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrisk.analysis.curves import Point, collapse_step, curve, l1_curve, methods
from editrisk.analysis.stats import pearson, spearman
from editrisk.errors import EditriskError
from editrisk.runs import RunDir, atomic_write_text

EDIT_METRICS = ("efficacy", "generalization", "specificity")
GENERAL_METRICS = ("heldout.prob_compare", "perplexity")


@dataclass
class Report:
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
    proto = next((r["protocol"] for r in rows if r.get("method") == method), None)
    return {
        "method": method,
        "protocol": proto,
        "edits": max((r.get("edits", 0) for r in rows if r.get("method") == method), default=0),
        f"immediate {metric}": (
            sum(v for _, v in immediate) / len(immediate) if immediate else None
        ),
        f"final {metric}": _last(final),
        "heldout before": _first(held),
        "heldout after": _last(held),
        "ppl before": _first(ppl),
        "ppl after": _last(ppl),
        "L1 growth": (_last(l1) / _first(l1)) if l1 and _first(l1) else None,
        "pearson r": pearson(xs, ys),
        "spearman rho": spearman(xs, ys),
        "n": len(paired),
        "collapse at edit": collapse_step(retention, threshold),
    }


def _plot(
    rows: list[dict[str, Any]],
    names: list[str],
    metric: str,
    schedule: str,
    kind: str,
    path: Path,
    ylabel: str,
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for m in names:
        pts = l1_curve(rows, m) if metric == "L1" else curve(rows, m, metric, schedule, kind)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("number of edits")
    ax.set_ylabel(ylabel)
    labels = sorted(
        {
            r["schedule"]
            for r in rows
            if r.get("kind") == kind and str(r.get("schedule", "")).startswith(schedule)
        }
    )
    ax.set_title(f"{ylabel}\nschedule: {', '.join(labels)}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyze_run(
    run_dir: str | Path, metric: str = "efficacy.prob_compare", threshold: float = 0.5
) -> Report:
    """Analyse a run directory; collapse = retention `metric` below `threshold` for good."""
    rd = RunDir(run_dir)
    rd.config()  # refuses a folder that is not a run
    rows = rd.results.rows()
    if not rows:
        raise EditriskError(f"{rd.path}: no result rows yet")
    names = methods(rows)
    rep = Report(rd.path / "analysis")
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
        f"retention `{metric}`, over the retention checks (n points).\n\n"
    )
    atomic_write_text(rep.folder / "summary.md", note + rep.table_markdown + "\n")
    atomic_write_text(
        rep.folder / "summary.json",
        json.dumps({"metric": metric, "threshold": threshold, "rows": rep.rows}, indent=2),
    )
    return rep
