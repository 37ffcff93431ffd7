"""`editrisk report RUN_DIR`: one self-contained HTML page (plots inline as SVG, no network
needed to open it) of everything a run directory measured, with PNG/SVG plots and CSV tables
beside it.

Sections appear when the run has the rows for them: trade-off curves (edit success against
general robustness along alpha, one line per method/layer; from sweeps, `interpolate`, the
demo and the vision study), accuracy against corruption severity, efficacy/retention/norm
against the number of edits (sequential runs), and any other result tables.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrisk.errors import EditriskError
from editrisk.interpolation import monotonicity_violations, select_knee, select_threshold
from editrisk.runs import RunDir, atomic_write_text

Row = dict[str, Any]
EDIT_KEYS = ("edit_success", "edit_margin", "efficacy")  # first present is the y axis
ROBUST_KEYS = ("shifted_acc", "heldout", "clean_acc", "specificity")  # first present is x
SKIP_TABLE_KINDS = {"trade_off", "1-LI", "summary", "diagnostics", "request", "general"}


@dataclass
class Section:
    title: str
    text: str = ""
    plots: list[tuple[str, str]] = field(default_factory=list)  # (file stem, inline svg)
    tables: list[tuple[str, list[Row]]] = field(default_factory=list)  # (csv stem, rows)


# -- row views ------------------------------------------------------------------------------


def _study_wide(rows: Sequence[Row]) -> list[Row]:
    """Vision-study rows (one metric per row) pivoted to one row per edited cell."""
    cells: dict[str, Row] = {}
    for r in rows:
        if r.get("schedule") not in ("after-edit", "unedited") or r.get("metric") == "accuracy":
            continue
        c = cells.setdefault(
            r["cell"],
            {
                "line": f"{r['model']} {r['method']} / {r.get('layer') or 'unedited'}",
                "alpha": float(r.get("alpha", 1.0)),
            },
        )
        c[r["metric"]] = r["value"]
    return list(cells.values())


def trade_off_rows(rows: Sequence[Row]) -> list[Row]:
    """Rows {line, alpha, metrics...}: one point of one trade-off curve each, averaged over
    seeds and edit sets (n = how many went into the mean)."""
    points: list[Row] = []
    for r in rows:
        if r.get("kind") == "trade_off":  # sweeps
            path = "all layers" if r["layer"] == "default" else f"layer {r['layer']}"
            points.append({**r, "line": f"{r['editor']} / {path}"})
        elif r.get("kind") == "1-LI" or r.get("protocol") == "1-LI":  # interpolate, demo
            prefix = f"{r['editor']} / " if r.get("editor") else ""
            points.append({**r, "line": prefix + r["path"]})
    points += _study_wide([r for r in rows if "metric" in r and "cell" in r])
    groups: dict[tuple[str, float], list[Row]] = defaultdict(list)
    for p in points:
        groups[(p["line"], float(p["alpha"]))].append(p)
    out = []
    for (line, alpha), ps in sorted(groups.items()):
        keys = {k for p in ps for k, v in p.items() if _num(v) and k not in ("alpha", "seed")}
        mean = {k: sum(p[k] for p in ps if _num(p.get(k))) / len(ps) for k in sorted(keys)}
        out.append({"line": line, "alpha": alpha, "n": len(ps), **mean})
    return out


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _first_key(rows: Sequence[Row], keys: Iterable[str]) -> str | None:
    return next((k for k in keys if any(k in r for r in rows)), None)


# -- plots ----------------------------------------------------------------------------------


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
    """One section per (edit, robustness) metric pair: language and vision curves measure
    different things and get separate plots."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for line in dict.fromkeys(p["line"] for p in points):
        pts = [p for p in points if p["line"] == line]
        edit, robust = _first_key(pts, EDIT_KEYS), _first_key(pts, ROBUST_KEYS)
        if edit is not None and robust is not None:
            groups[(edit, robust)] += pts
    return [_trade_off_section(pts, e, r, folder) for (e, r), pts in groups.items()]


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
        f"scales every edited layer together). y: {edit}; x: {robust}. Points average over "
        f"seeds and edit sets (n). Choices: 'threshold' takes the most robust alpha whose "
        f"{edit} reaches the threshold, 'knee' the point farthest from the curve's chord.",
        plots=[(stem, _save(fig, folder, stem))],
    )
    as_path = [{**p, "path": p["line"]} for p in points if edit in p and robust in p]
    threshold = 0.5 if edit != "edit_margin" else 0.0
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
    acc = [r for r in rows if r.get("metric") == "accuracy" and r.get("set") == "general"]
    if not acc:
        return None
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in acc:
        label = f"{r['model']} {r['method']}" + (f" / {r['layer']}" if r.get("layer") else "")
        if r.get("alpha", 1.0) not in (0.0, 1.0):
            label += f" a={r['alpha']:g}"
        groups[(label, int(r["severity"]))].append(float(r["value"]))
    table = [
        {"model / method / layer": k[0], "severity": k[1], "accuracy": sum(v) / len(v), "n": len(v)}
        for k, v in sorted(groups.items())
    ]
    fig, ax = _figure()
    for label in dict.fromkeys(t["model / method / layer"] for t in table):
        pts = [t for t in table if t["model / method / layer"] == label]
        ax.plot([t["severity"] for t in pts], [t["accuracy"] for t in pts], marker="o", ms=3,
                label=label)  # fmt: skip
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("accuracy (mean over corruptions)")
    ax.grid(alpha=0.3)
    _legend(ax)
    return Section(
        "Accuracy against corruption severity",
        "General test set, every corruption at every severity, averaged over corruptions.",
        plots=[("corruption_severity", _save(fig, folder, "corruption_severity"))],
        tables=[("corruption_severity", table)],
    )


def _sequential_section(run: RunDir, rows: Sequence[Row], folder: Path) -> Section | None:
    if not any(r.get("kind") == "summary" and "edits" in r for r in rows):
        return None
    from editrisk.analysis import analyze_run

    rep = analyze_run(run.path)
    sec = Section(
        "Sequential editing: efficacy, retention and weight norm against the number of edits",
        "Schedules as labelled in each plot: 'immediate' evaluates a step's own edits right "
        "after it, 'retention@N' all edits so far after N edits, 'general@N' general ability.",
        tables=[("sequential_summary", rep.rows)],
    )
    for png in rep.plots:
        svg = png.with_suffix(".svg")
        text = svg.read_text() if svg.exists() else None
        sec.plots.append((png.stem, text or _png_img(png)))
    return sec


def _png_img(png: Path) -> str:
    import base64

    data = base64.b64encode(png.read_bytes()).decode()
    return f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


def _other_tables(rows: Sequence[Row]) -> Section | None:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if "metric" in r or r.get("kind") in SKIP_TABLE_KINDS or r.get("protocol") == "1-LI":
            continue
        groups[str(r.get("kind") or r.get("protocol") or "rows")].append(r)
    if not groups:
        return None
    return Section(
        "Results", "Other result rows, as stored.",
        tables=[(f"rows_{k.replace(' ', '_')}", v) for k, v in groups.items()],
    )  # fmt: skip


# -- HTML -----------------------------------------------------------------------------------


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
    sections = [s for s in (_other_tables(rows),) if s is not None]  # headline results first
    sections += _trade_off_sections(trade_off_rows(rows), folder)
    sections += [
        s
        for s in (_corruption_section(rows, folder), _sequential_section(run, rows, folder))
        if s is not None
    ]
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
        "<h2>Configuration</h2><pre>"
        + html.escape(json.dumps(config, indent=2, default=str))
        + "</pre>"
    )
    for extra in ("model.json", "environment.json"):
        if (run.path / extra).exists():
            parts.append(
                f"<h3>{extra}</h3><pre>{html.escape((run.path / extra).read_text())}</pre>"
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
