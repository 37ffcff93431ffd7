"""`editrisk report RUN_DIR`: one self-contained HTML page (plots inline as SVG, no network
needed to open it) of any run, with PNG/SVG plots and CSV tables beside it.

Every section reads the one row schema: the results at the end of each job (per method,
layer, 1-LI path and alpha), trade-off curves along alpha, accuracy against corruption
severity (vision), and efficacy/retention/general ability/norm against the number of edits.
File names are fixed by the report, never taken from the rows.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text
from editrisk.interpolation import monotonicity_violations, select_knee, select_threshold
from editrisk.report.curves import EDIT_KEYS, ROBUST_KEYS, line_label, trade_off_points

Row = dict[str, Any]


@dataclass
class Section:
    title: str
    text: str = ""
    plots: list[tuple[str, str]] = field(default_factory=list)  # (file stem, inline svg)
    tables: list[tuple[str, list[Row]]] = field(default_factory=list)  # (csv stem, rows)


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8.0, 4.2))


def _legend(ax: Any) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _save(fig: Any, folder: Path, stem: str) -> str:
    """PNG and SVG beside the page; the SVG text (for inlining) is returned."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig.savefig(folder / f"{stem}.png", dpi=110, bbox_inches="tight")
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": stem}):  # ids unique among inlined SVGs
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    atomic_write_text(folder / f"{stem}.svg", svg)
    return svg[svg.find("<svg") :]


def _trade_off_sections(points: list[Row], folder: Path) -> list[Section]:
    """One section per (edit, robustness) metric pair present in the run."""
    edit = next((k for k in EDIT_KEYS if any(k in p for p in points)), None)
    robust = next((k for k in ROBUST_KEYS if any(k in p for p in points)), None)
    alphas = {p["alpha"] for p in points}
    if edit is None or robust is None or len(alphas) < 2:
        return []
    return [_trade_off_section(points, edit, robust, folder)]


def _trade_off_section(points: list[Row], edit: str, robust: str, folder: Path) -> Section:
    stem = f"trade_off_{robust}"
    fig, ax = _figure()
    lines = list(dict.fromkeys(p["line"] for p in points))
    for line in lines:
        pts = [p for p in points if p["line"] == line and edit in p and robust in p]
        ax.plot([p[robust] for p in pts], [p[edit] for p in pts], marker="o", ms=4, label=line)
        for p in pts:
            ax.annotate(f"{p['alpha']:g}", (p[robust], p[edit]), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel(f"general robustness: {robust}")
    ax.set_ylabel(f"edit success: {edit}")
    ax.set_title("Trade-off along alpha (numbers: alpha)", fontsize=9)
    ax.grid(alpha=0.3)
    _legend(ax)
    sec = Section(
        f"Trade-off: {edit} against {robust}",
        f"Each line scales one edit's change by alpha (1-layer interpolation; 'all layers' "
        f"scales every edited layer together; alpha 0 is the unedited model). y: {edit} of "
        f"all edits at the end; x: {robust} after the last step. Points average over "
        f"seeds and edit sets (n). Choices: 'threshold' takes the most robust alpha whose "
        f"{edit} reaches the threshold, 'knee' the point farthest from the curve's chord.",
        plots=[(stem, _save(fig, folder, stem))],
    )
    as_path = [{**p, "path": p["line"]} for p in points if edit in p and robust in p]
    threshold = 0.5
    choices, bad = [], []
    for line in lines:
        if not any(p["path"] == line for p in as_path):
            continue
        for c in (
            select_threshold(as_path, line, edit, robust, threshold),
            select_knee(as_path, line, edit, robust),
        ):
            choices.append({"line": line, **{k: v for k, v in c.to_dict().items() if k != "path"}})
    for metric in (edit, robust):
        bad += monotonicity_violations(as_path, metric)
    sec.tables = [(stem, points), (f"alpha_choices_{robust}", choices)]
    if bad:
        sec.tables.append((f"monotonicity_violations_{robust}", bad))
    sec.text += f" Monotonicity violations along the lines: {len(bad)}."
    return sec


def _corruption_section(rows: Sequence[Row], folder: Path) -> Section | None:
    acc = [r for r in rows if r.get("kind") == "accuracy" and r.get("set") == "general"]
    if not acc:
        return None
    last: dict[tuple, int] = defaultdict(int)
    for r in acc:
        key = (r.get("method"), r.get("layer"), r.get("seed"))
        last[key] = max(last[key], r.get("step") or 0)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in acc:
        if r.get("step") not in (0, last[(r.get("method"), r.get("layer"), r.get("seed"))]):
            continue
        label = "unedited" if r.get("schedule") == "unedited" else line_label(r)
        if r.get("alpha") not in (0.0, 1.0):
            label += f" a={r['alpha']:g}"
        groups[(label, int(r["severity"]))].append(float(r["acc.top1"]))
    table = [
        {"line": k[0], "severity": k[1], "accuracy": sum(v) / len(v), "n": len(v)}
        for k, v in sorted(groups.items())
    ]
    fig, ax = _figure()
    for label in dict.fromkeys(t["line"] for t in table):
        pts = [t for t in table if t["line"] == label]
        ax.plot([t["severity"] for t in pts], [t["accuracy"] for t in pts], marker="o", ms=3,
                label=label)  # fmt: skip
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("accuracy (mean over corruptions)")
    ax.grid(alpha=0.3)
    _legend(ax)
    return Section(
        "Accuracy against corruption severity",
        "General test set after the last step, every corruption at every severity, averaged "
        "over corruptions.",
        plots=[("corruption_severity", _save(fig, folder, "corruption_severity"))],
        tables=[("corruption_severity", table)],
    )


def _sequential_section(run: RunDir, rows: Sequence[Row]) -> Section | None:
    if max((r.get("n_steps") or 0 for r in rows), default=0) < 2:
        return None
    from editrisk.report.analysis import analyze_run

    metric = next((k for k in EDIT_KEYS if any(k in r for r in rows)), EDIT_KEYS[-1])
    rep = analyze_run(run.path, metric=metric)
    sec = Section(
        "Editing over many steps: efficacy, retention and weight norm against the number of edits",
        "Schedules as labelled in each plot: 'immediate' evaluates a step's own edits right "
        "after it, 'retention@N' all edits so far every N steps, 'general@N' general ability.",
        tables=[("sequential_summary", rep.rows)],
    )
    for png in rep.plots:
        sec.plots.append((png.stem, _png_img(png)))
    return sec


def _png_img(png: Path) -> str:
    import base64

    data = base64.b64encode(png.read_bytes()).decode()
    return f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


def _write_csv(path: Path, rows: Sequence[Row]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v))
    return html.escape("" if v is None else str(v))


def _table_html(stem: str, rows: Sequence[Row]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return (
        f'<p class="csv">{html.escape(stem)}.csv ({len(rows)} rows; click a header to sort)</p>'
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots svg,.plots img{width:32em;height:auto}
table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:.2em .5em}
th{background:#f3f3f3;cursor:pointer}.scroll{max-height:28em;overflow:auto}
.csv{color:#666;font-size:.8em}pre{background:#f6f6f6;padding:.5em;font-size:.8em}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th').forEach(function (th, i) {
    th.addEventListener('click', function () {
      var rows = Array.from(t.tBodies[0].rows), asc = th.dataset.asc !== '1';
      rows.sort(function (a, b) {
        var x = a.cells[i].textContent, y = b.cells[i].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
      th.dataset.asc = asc ? '1' : '0';
    });
  });
});
document.body.dataset.ready = '1';
"""


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report/index.html (plus plots and CSVs); returns the page's path."""
    run = RunDir(run_dir)
    config = run.config()
    rows = run.results.rows()
    if not rows:
        raise EditriskError(f"{run.path}: no result rows to report")
    folder = Path(out) if out else run.path / "report"
    folder.mkdir(parents=True, exist_ok=True)
    points = trade_off_points(rows)
    sections = [
        Section(
            "Results at the end of each job",
            "Per method, layer, 1-LI path and alpha: edit metrics of all edits at the end "
            "and general ability after the last step (alpha 0: the unedited model), "
            "averaged over seeds and edit sets (n).",
            tables=[("results", points)],
        )
    ]
    sections += _trade_off_sections(points, folder)
    sections += [
        s for s in (_corruption_section(rows, folder), _sequential_section(run, rows)) if s
    ]
    failed = [r for r in rows if r.get("kind") == "failed"]
    if failed:
        sections.append(
            Section("Failed steps", "Edits refused as not finite.", tables=[("failed", failed)])
        )
    parts = [
        f"<h1>editrisk report: {html.escape(str(config.get('name', run.path.name)))}</h1>",
        f"<p>{len(rows)} rows from <code>{html.escape(str(run.path.resolve()))}</code>.</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>")
        if s.plots:
            parts.append('<div class="plots">' + "".join(p for _, p in s.plots) + "</div>")
        for stem, table in s.tables:
            _write_csv(folder / f"{stem}.csv", table)
            if table:
                parts.append(_table_html(stem, table))
    parts.append(
        "<details><summary>Configuration</summary><pre>"
        + html.escape(json.dumps(config, indent=2, default=str))
        + "</pre></details>"
    )
    for extra in ("model.json", "environment.json"):
        if (run.path / extra).exists():
            parts.append(
                f"<details><summary>{extra}</summary>"
                f"<pre>{html.escape((run.path / extra).read_text())}</pre></details>"
            )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>editrisk report</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{SCRIPT}</script></body></html>"
    )
    index = folder / "index.html"
    atomic_write_text(index, page)
    return index
