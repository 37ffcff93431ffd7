"""Tables and plots from a vision study's rows (every figure is rebuilt from rows.jsonl)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from editrisk.runs import RunDir, atomic_write_text

COLUMNS = (
    ("clean_acc", "clean"), ("shifted_acc", "shifted"), ("relative_robustness", "rel.rob"),
    ("effective_robustness", "eff.rob"), ("mce", "mCE"), ("untouched_acc", "untouched"),
    ("edit_success", "edit"), ("errors_corrected", "fixed"),
    ("edit_success_shifted", "edit@shift"), ("errors_corrected_shifted", "fixed@shift"),
    ("heldout_style_acc", "held-out style"),
)  # fmt: skip


def summary(run: RunDir) -> list[dict[str, Any]]:
    """One dict per (model, method, layer, alpha) with the summary metrics."""
    cells: dict[str, dict[str, Any]] = {}
    for r in run.results:
        if r.get("schedule") not in ("unedited", "after-edit") or r["metric"] == "accuracy":
            continue
        c = cells.setdefault(
            r["cell"],
            {
                "cell": r["cell"],
                "model": r["model"],
                "method": r["method"],
                "layer": r.get("layer") or "-",
                "layer_index": r.get("layer_index", -1),
                "alpha": r["alpha"],
            },
        )
        c[r["metric"]] = r["value"]
    return sorted(
        cells.values(),
        key=lambda c: (
            c["model"],
            c["method"] != "none",
            c["method"],
            c["layer_index"],
            c["alpha"],
        ),
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:+.3f}" if abs(v) < 10 else f"{v:.0f}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "method", "layer", "alpha", *(short for _, short in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["model"],
            r["method"],
            r["layer"],
            f"{r['alpha']:g}",
            *(_fmt(r.get(k, float("nan"))) for k, _ in COLUMNS),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plots(run: RunDir, rows: list[dict[str, Any]]) -> list[Path]:
    """robustness.png (relative robustness and edit success per method x layer) and
    effective_robustness.png (testbed fit with base and edited models)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from editrisk.vision.metrics import logit

    out = []
    edited = [r for r in rows if r["method"] != "none" and r["alpha"] == 1.0]
    models = sorted({r["model"] for r in edited})
    if edited:
        fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 6.5), squeeze=False)
        for j, model in enumerate(models):
            mrows = [r for r in edited if r["model"] == model]
            methods = sorted({r["method"] for r in mrows})
            layers = sorted({(r["layer_index"], r["layer"]) for r in mrows})
            width = 0.8 / max(1, len(methods))
            for i, m in enumerate(methods):
                for row_i, metric in enumerate(("relative_robustness", "edit_success")):
                    ys = [
                        next(
                            (
                                r.get(metric, math.nan)
                                for r in mrows
                                if r["method"] == m and r["layer"] == ly
                            ),
                            math.nan,
                        )
                        for _, ly in layers
                    ]
                    xs = [k + i * width for k in range(len(layers))]
                    axes[row_i][j].bar(xs, ys, width, label=m)
            for row_i, label in enumerate(("relative robustness", "edit success (test)")):
                ax = axes[row_i][j]
                ax.set_xticks(
                    [k + 0.4 - width / 2 for k in range(len(layers))],
                    [ly for _, ly in layers],
                    rotation=20,
                    fontsize=7,
                )
                ax.axhline(0, color="k", lw=0.5)
                ax.set_ylabel(label)
                ax.set_title(model, fontsize=9)
            axes[0][j].legend(fontsize=7)
        fig.tight_layout()
        out.append(run.path / "robustness.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    bed = [r for r in run.results if r.get("schedule") == "testbed"]
    if bed:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        pts: dict[str, dict[str, float]] = {}
        for r in bed:
            pts.setdefault(r["model"], {})[r["metric"]] = r["value"]
        xs = [logit(p["clean_acc"]) for p in pts.values() if "shifted_acc" in p]
        ys = [logit(p["shifted_acc"]) for p in pts.values() if "shifted_acc" in p]
        ax.scatter(xs, ys, c="grey", label="testbed")
        for m in sorted({r["method"] for r in rows}):
            sel = [r for r in rows if r["method"] == m and "shifted_acc" in r]
            ax.scatter(
                [logit(r["clean_acc"]) for r in sel],
                [logit(r["shifted_acc"]) for r in sel],
                label=m,
                marker="x",
            )
        ax.set_xlabel("logit(clean accuracy)")
        ax.set_ylabel("logit(mean corrupted accuracy)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(run.path / "effective_robustness.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out


def write_report(path: str | Path) -> Path:
    """report.md (summary table) plus plots in the run directory."""
    run = RunDir(path)
    rows = summary(run)
    figs = plots(run, rows)
    text = "\n\n".join([
        f"# Vision study: {run.path.name}",
        "Rows: `rows.jsonl`. Metrics (accuracy in [0, 1]): clean / shifted (mean over "
        "corruptions x severities) accuracy on all classes; rel.rob = shifted minus unedited "
        "shifted; eff.rob = shifted minus the testbed's logit-linear fit; mCE relative to the "
        "unedited model (1 = unchanged); untouched = clean accuracy on classes outside the "
        "edit; edit / fixed = accuracy and % errors corrected on the edit's styled test set, "
        "clean and @shift (mean over corruptions); held-out style = edit test set rendered "
        "with other styles.",
        markdown_table(rows),
        *(f"![{f.stem}]({f.name})" for f in figs),
    ])  # fmt: skip
    atomic_write_text(run.path / "report.md", text + "\n")
    return run.path / "report.md"
