"""`editrisk report RUN_DIR [RUN_DIR ...]`: one self-contained HTML page of one run, or of
several side by side, with CSV tables beside it.

The page reads top-down as a reader asks: the headline summary (per method, after editing
and unedited, with bootstrap intervals and n), interactive plots (plotly.js inlined: the page
opens with no network), the per-edit view (searchable), how the numbers were measured, and
the raw tables and configuration folded away. Every section reads the one row schema. File
names are fixed by the report, never taken from the rows.
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text
from editrisk.interpolation import monotonicity_violations, select_knee, select_threshold
from editrisk.report.curves import EDIT_KEYS, ROBUST_KEYS, line_label, methods, trade_off_points
from editrisk.report.drilldown import edit_records
from editrisk.report.figures import Figure, edit_count_figures, severity_figure, trade_off_figure
from editrisk.report.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE
from editrisk.report.summary import Estimate, Headline, headline

Row = dict[str, Any]
THRESHOLD = 0.5  # the threshold rule's edit success


@dataclass
class RunInfo:
    """One run on the page: `label` prefixes its methods when several runs share a page."""

    label: str
    path: Path
    config: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    rows: list[Row]


def _load(paths: Sequence[Path]) -> list[RunInfo]:
    runs = []
    for p in paths:
        rd = RunDir(p)
        config = rd.config()
        rows = rd.results.rows()
        if not rows:
            raise EditriskError(f"{rd.path}: no result rows to report")
        env_path = rd.path / "environment.json"
        env = json.loads(env_path.read_text()) if env_path.exists() else {}
        name = str(config.get("name") or rd.path.name)
        runs.append(RunInfo(name, rd.path, config, rd.model_info(), env, rows))
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):
        if labels.count(r.label) > 1:  # two runs of one config: their folders, then numbers
            r.label = (
                f"{r.label} ({r.path.name})" if r.path.name != r.label else f"{r.label} #{i + 1}"
            )
    return runs


def _merged_rows(runs: Sequence[RunInfo]) -> list[Row]:
    """All rows; with several runs each method is labelled '<run>: <method>'."""
    if len(runs) == 1:
        return runs[0].rows
    return [
        {**r, "method": f"{run.label}: {r['method']}"} if "method" in r else r
        for run in runs
        for r in run.rows
    ]


# -- formatting ----------------------------------------------------------------------------------


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2g}"


def _ci(e: Estimate) -> str:
    return f"[{_num(e.ci[0])}, {_num(e.ci[1])}]" if e.ci else ""


def _unit(e: Estimate) -> str:
    return e.unit if e.n != 1 else e.unit.rstrip("s")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v))
    return html.escape("" if v is None else str(v))


def _esc(v: Any) -> str:
    return html.escape(str(v))


# -- sections ------------------------------------------------------------------------------------


def _summary_html(head: Headline, rows: Sequence[Row]) -> str:
    if not head.measures:
        return "<p>No edit or general-ability metrics in these rows.</p>"
    heads = "".join(
        f"<th>{_esc(m.label)}<div class='sub'>{_esc(m.metric)}"
        f"{'' if m.higher_is_better else ' (lower is better)'}<br>"
        f"{_esc(head.schedules.get(m.label, ''))}</div></th>"
        for m in head.measures
    )
    body = []
    for line, cells in head.rows:
        tds = []
        for m in head.measures:
            after, before = cells[m.label]
            tds.append(
                f"<td><span class='v'>{_num(after.mean)}</span> <span class='ci'>{_ci(after)}"
                f"</span><div class='base'>unedited {_num(before.mean)} {_ci(before)}</div>"
                f"<div class='n'>n = {after.n} {_unit(after)}{'' if after.ci else ', no interval'}"
                "</div></td>"
            )
        body.append(f"<tr><th class='line'>{_esc(line)}</th>{''.join(tds)}</tr>")
    pct = f"{CONFIDENCE:.0%}"
    note = (
        f"<p class='note'>Means after editing (the whole edit, alpha 1), with {pct} percentile "
        f"bootstrap intervals ({BOOTSTRAP_RESAMPLES:,} resamples, seeded) over the n units "
        "named: edited facts, the 0/1 outcomes behind a stored share (held-out facts, images), "
        "or jobs (seeds, edit sets) when a number has no finer parts. Below each, the unedited "
        "model on the same facts. Column heads name the metric and the schedule it was "
        "measured under (see <a href='#measured'>how measured</a>).</p>"
    )
    failed = sum(1 for r in rows if r.get("kind") == "failed")
    if failed:
        note += f"<p class='warn'>{failed} steps were refused as not finite (table below).</p>"
    table = (
        f"<div class='wide'><table class='headline'><thead><tr><th>method</th>{heads}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )
    return table + note + _correlations_html(rows)


def _correlations_html(rows: Sequence[Row]) -> str:
    """L1 against retention (as `editrisk analyze` prints it), with p-values and n."""
    if max((r.get("n_steps") or 0 for r in rows), default=0) < 2:
        return ""
    from editrisk.report.analysis import method_summary

    metric = next((k for k in EDIT_KEYS if any(k in r for r in rows)), EDIT_KEYS[-1])
    table = [method_summary(list(rows), m, metric, THRESHOLD) for m in methods(rows)]
    if not any(t["n"] for t in table):
        return ""
    cols = ("method", "L1 growth", "pearson r", "pearson p", "spearman rho", "spearman p", "n",
            "collapse at edit")  # fmt: skip
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(t[c])}</td>" for c in cols) + "</tr>" for t in table
    )
    return (
        f"<h3>Weight growth against retention</h3><p class='note'>Edited layers' L1 norm (end / "
        f"first step) and its correlation with retention <code>{metric}</code> over the n "
        "retention checks, two-sided p-values (t-test, n - 2 degrees of freedom). Both move "
        "with the number of edits, so a small p is no evidence of cause. Collapse: retention "
        f"below {THRESHOLD} for good.</p><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _trade_off(points: list[Row]) -> tuple[Figure | None, list[tuple[str, str, list[Row]]]]:
    """The trade-off figure and its tables (choices, monotonicity violations)."""
    edit = next((k for k in EDIT_KEYS if any(k in p for p in points)), None)
    robust = next((k for k in ROBUST_KEYS if any(k in p for p in points)), None)
    if edit is None or robust is None or not {p["alpha"] for p in points} - {0.0, 1.0}:
        return None, []
    as_path = [{**p, "path": p["line"]} for p in points if edit in p and robust in p]
    choices, bad = [], []
    for line in dict.fromkeys(p["path"] for p in as_path):
        for c in (
            select_threshold(as_path, line, edit, robust, THRESHOLD),
            select_knee(as_path, line, edit, robust),
        ):
            choices.append({"line": line, **{k: v for k, v in c.to_dict().items() if k != "path"}})
    for metric in (edit, robust):
        bad += monotonicity_violations(as_path, metric)
    tables = [
        (f"alpha_choices_{robust}", "Alphas the selection rules choose (threshold: the most "
         f"robust alpha whose {edit} reaches {THRESHOLD}; knee: farthest from the chord)",
         choices),
        (f"trade_off_{robust}", f"Trade-off points: {edit} and {robust} per line and alpha",
         points),
    ]  # fmt: skip
    if bad:
        tables.append((f"monotonicity_violations_{robust}", "Where a metric moves against its "
                       "line's direction along alpha", bad))  # fmt: skip
    return trade_off_figure(points, edit, robust, choices), tables


def _corruption_table(rows: Sequence[Row]) -> list[Row]:
    acc = [r for r in rows if r.get("kind") == "accuracy" and r.get("set") == "general"]
    several = len({r.get("run") for r in acc}) > 1

    def unedited(r: Row) -> str:
        return f"unedited ({r.get('run')})" if several else "unedited"

    last: dict[tuple, int] = defaultdict(int)
    for r in acc:
        key = (r.get("method"), r.get("layer"), r.get("seed"))
        last[key] = max(last[key], r.get("step") or 0)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in acc:
        if r.get("step") not in (0, last[(r.get("method"), r.get("layer"), r.get("seed"))]):
            continue
        label = unedited(r) if r.get("schedule") == "unedited" else line_label(r)
        if r.get("alpha") not in (0.0, 1.0):
            label += f" a={r['alpha']:g}"
        groups[(label, int(r["severity"]))].append(float(r["acc.top1"]))
    return [
        {"line": k[0], "severity": k[1], "accuracy": sum(v) / len(v), "n": len(v)}
        for k, v in sorted(groups.items())
    ]


def _figures_html(figs: Sequence[Figure]) -> str:
    if not figs:
        return "<p>No curves: the run has one step and one alpha.</p>"
    cards = "".join(
        f"<figure class='card'><h3>{_esc(f.title)}</h3><div class='plot' id='fig-{f.key}'></div>"
        f"<figcaption>{_esc(f.caption)}</figcaption></figure>"
        for f in figs
    )
    return (
        "<p class='note'>Hover for values; click a legend entry to hide or show it (double-click "
        "to show it alone); drag to zoom, double-click to reset; the camera icon saves a PNG."
        f"</p><div class='plots'>{cards}</div>"
    )


def _edits_html(records: Sequence[Row]) -> str:
    if not records:
        return ""
    cols = (
        "line", "prompt", "target_new", "target_true", "P(new) before → after",
        "P(true) before → after", "generation before", "generation after", "after",
    )  # fmt: skip
    body = []
    for r in records:
        p_new = f"{_cell(r['p_new before'])} → {_cell(r['p_new after'])}"
        p_true = f"{_cell(r['p_true before'])} → {_cell(r['p_true after'])}"
        won = (r["p_new after"] or 0) > (r["p_true after"] or 0)
        cells = [r["line"], r["prompt"], r["target_new"], r["target_true"]]
        tds = "".join(f"<td>{_cell(c)}</td>" for c in cells)
        tds += f"<td class='{'ok' if won else 'miss'}'>{p_new}</td><td>{p_true}</td>"
        tds += "".join(
            f"<td class='gen'>{_cell(r[k])}</td>"
            for k in ("generation before", "generation after", "after")
        )
        body.append(f"<tr>{tds}</tr>")
    head = "".join(f"<th>{c}</th>" for c in cols)
    return (
        f"<p class='note'>{len(records)} edited facts. P: per-token probability of the target "
        "on the prompt (exp of the mean token log-prob), before any edit and at the last "
        "evaluation of the fact (column 'after'); green where the new target wins after editing. "
        "Generations: greedy, 8 tokens. Type to filter (every word must match).</p>"
        "<input id='edit-search' type='search' placeholder='search prompts, targets, "
        "generations, methods' size='50'> <span id='edit-count'></span>"
        f"<div class='scroll tall'><table id='edit-table' class='sortable'><thead><tr>{head}"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


CONVENTIONS = {
    "prob_compare": "1 when the wanted answer's per-token probability (exp of the mean token "
    "log-prob) beats the unwanted one's, averaged (ROME/MEMIT); held-out facts: the true answer "
    "beats every alternative",
    "prob_margin": "wanted minus unwanted per-token probability (ROME/MEMIT 'magnitude')",
    "token_acc": "teacher-forced accuracy of the wanted answer's tokens (EasyEdit)",
    "gen_match": "1 when the greedy generation's first sentence states the wanted answer and "
    "not the unwanted one (normalised word match), averaged",
    "gen_match_sampled": "gen_match on a sampled generation (temperature, nucleus, seed in the "
    "config; each prompt its own generator)",
    "top1": "share of images whose top-1 class is the wanted one",
    "per_token": "exp of the mean token log-prob of a target after the prompt",
    "perplexity": "token-level perplexity of plain sentences, each chunk's first word as context",
}
SCHEDULES = {
    "unedited": "the unedited model, before any edit (step 0)",
    "immediate": "each step's own edits, right after the step",
    "final": "every edit, after the last step",
    "retention@": "every edit so far, every k steps and after the last",
    "general@": "general ability (held-out facts, perplexity, shifts) every k steps, after the "
    "last and before any edit",
}


def _measured_html(runs: Sequence[RunInfo], rows: Sequence[Row]) -> str:
    from editrisk import __version__

    cols = {k for r in rows for k in r}
    convs = sorted({c.split(".", 1)[1] for c in cols if "." in c} | {"perplexity"} & cols)
    conv_items = "".join(
        f"<li><code>{_esc(c)}</code>: {_esc(CONVENTIONS[c])}</li>"
        for c in convs
        if c in CONVENTIONS
    )
    labels = sorted({str(r.get("schedule")) for r in rows if r.get("schedule")})
    sched_items = "".join(
        f"<li><code>{_esc(s)}</code>: {_esc(SCHEDULES.get(s.split('@')[0] + '@' * ('@' in s)))}"
        "</li>"
        for s in labels
    )
    run_items = []
    for run in runs:
        c = run.config
        proto = c.get("protocol") or {}
        pkgs = run.environment.get("packages") or {}
        fp = run.model.get("fingerprint") or next(
            (r["fingerprint"] for r in run.rows if r.get("fingerprint")), None
        )
        model = run.model.get("model") or c.get("model")
        versions = ", ".join(f"{k} {v}" for k, v in pkgs.items() if v)
        run_items.append(
            f"<li><b>{_esc(run.label)}</b> (<code>{_esc(run.path.resolve())}</code>): family "
            f"{_esc(c.get('family', '-'))}, model <code>{_esc(model)}</code>, fingerprint "
            f"<code>{_esc(fp or '-')}</code>; protocol "
            f"{_esc(proto.get('name', '-'))} (batch size {_esc(proto.get('batch_size', '-'))}); "
            f"schedule <code>{_esc(json.dumps(c.get('schedule', {}), sort_keys=True))}</code>; "
            f"{len(run.rows):,} rows; run with {_esc(versions or 'unrecorded versions')}, "
            f"started {_esc(run.environment.get('started_at', '-'))}</li>"
        )
    return (
        f"<ul>{''.join(run_items)}</ul><h3>Metric conventions</h3><ul>{conv_items}</ul>"
        f"<h3>Schedules</h3><ul>{sched_items}</ul>"
        f"<p class='note'>Report built by editrisk {__version__} on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.</p>"
    )


def _table_html(stem: str, title: str, rows: Sequence[Row]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return (
        f"<details><summary>{html.escape(title)} <span class='csv'>({len(rows)} rows; "
        f"{html.escape(stem)}.csv)</span></summary><div class='scroll'><table class='sortable'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>"
    )


def _write_csv(path: Path, rows: Sequence[Row]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:96em;padding:0 1.5em;
color:#1d1d1d;font-size:15px;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #ddd;
margin-top:1.8em;padding-bottom:.2em}h3{font-size:1.05em;margin-top:1.4em}
.lede{color:#444;margin-top:0}.note{color:#555;font-size:.9em;max-width:70em}
.warn{color:#a40000}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;
vertical-align:top;text-align:left}thead th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}
table.headline td{min-width:9em}table.headline .v{font-size:1.25em;font-weight:600}
.ci{color:#333}.base{color:#666;font-size:.88em}.n{color:#888;font-size:.8em}
.sub{font-weight:normal;color:#666;font-size:.8em}th.line{background:#fafafa;white-space:nowrap}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(36em,1fr));gap:1em}
.card{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:.5em}
.card h3{margin:.2em .5em;font-size:1em}
figcaption{color:#555;font-size:.85em;padding:0 .5em .3em}
.scroll{max-height:34em;overflow:auto}.wide{overflow-x:auto}.scroll.tall{max-height:48em}
td.ok{background:#e6f4e6}td.miss{background:#fbeaea}td.gen{font-family:ui-monospace,monospace;
font-size:.85em;white-space:pre-wrap}.csv{color:#777;font-size:.85em}
details{margin:.4em 0}summary{cursor:pointer}pre{background:#f6f6f6;padding:.6em;font-size:.8em;
overflow:auto}#edit-search{font-size:1em;padding:.3em;margin:.4em 0}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('thead th').forEach(function (th, i) {
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
var search = document.getElementById('edit-search');
if (search) {
  var rows = Array.from(document.querySelectorAll('#edit-table tbody tr'));
  var count = document.getElementById('edit-count');
  var filter = function () {
    var words = search.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (r) {
      var text = r.textContent.toLowerCase();
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.style.display = ok ? '' : 'none';
      shown += ok ? 1 : 0;
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  };
  search.addEventListener('input', filter);
  filter();
}
var figures = JSON.parse(document.getElementById('figures').textContent);
Promise.all(figures.map(function (f) {
  return Plotly.newPlot('fig-' + f.key, f.data, f.layout,
                        {responsive: true, displaylogo: false});
})).then(function () { document.body.dataset.ready = '1'; });
"""


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def write_report(runs: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report of one run (default RUN_DIR/report/index.html) or of several on one
    page (`out` required); returns the page's path."""
    paths = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(p) for p in runs]
    if not paths:
        raise EditriskError("report: give at least one run directory")
    if len(paths) > 1 and out is None:
        raise EditriskError("report of several runs: give --out FOLDER for the page")
    infos = _load(paths)
    folder = Path(out) if out else paths[0] / "report"
    folder.mkdir(parents=True, exist_ok=True)
    rows = _merged_rows(infos)
    names = methods(rows)
    points = trade_off_points(rows)

    figs: list[Figure] = []
    tables: list[tuple[str, str, list[Row]]] = [
        ("results", "Results at the end of each job: per line and alpha, edit metrics of all "
         "edits at the end and general ability after the last step, means over seeds and edit "
         "sets (n)", points),
    ]  # fmt: skip
    trade, trade_tables = _trade_off(points)
    if trade is not None:
        figs.append(trade)
    tables += trade_tables
    if max((r.get("n_steps") or 0 for r in rows), default=0) >= 2:
        figs += edit_count_figures(rows, names)
    severity = _corruption_table(rows)
    if severity:
        figs.append(severity_figure(severity))
        tables.append(("corruption_severity", "Accuracy by corruption severity (mean over "
                       "corruptions, general test set after the last step)", severity))  # fmt: skip
    records = edit_records(rows)
    if records:
        tables.append(("edits", "Per-edit detail (as above)", records))
    failed = [r for r in rows if r.get("kind") == "failed"]
    if failed:
        tables.append(("failed", "Failed steps: edits refused as not finite", failed))

    title = " vs ".join(i.label for i in infos)
    lede = "; ".join(
        f"{_esc(i.label)}: {len(i.rows):,} rows, {_esc(i.config.get('family', ''))} family, "
        f"model {_esc(i.model.get('model') or i.config.get('model'))}, "
        f"{max((r.get('edits') or 0 for r in i.rows), default=0)} edits"
        for i in infos
    )
    parts = [
        f"<h1>editrisk {'comparison' if len(infos) > 1 else 'report'}: {_esc(title)}</h1>",
        f"<p class='lede'>{lede}. Sections: <a href='#summary'>summary</a> · "
        "<a href='#plots'>plots</a>"
        + (" · <a href='#edits'>per-edit detail</a>" if records else "")
        + " · <a href='#measured'>how measured</a> · <a href='#tables'>tables</a></p>",
        f"<section id='summary'><h2>Summary</h2>{_summary_html(headline(rows), rows)}</section>",
        f"<section id='plots'><h2>Plots</h2>{_figures_html(figs)}</section>",
    ]
    if records:
        parts.append(
            f"<section id='edits'><h2>Per-edit detail</h2>{_edits_html(records)}</section>"
        )
    elif any(r.get("kind") == "request" for r in rows):
        parts.append(
            "<section id='edits'><h2>Per-edit detail</h2><p class='note'>This run's request "
            "rows predate the prompt, targets, probabilities and generations the per-edit view "
            "shows (rerun the study to record them).</p></section>"
        )
    parts.append(
        f"<section id='measured'><h2>How these numbers were measured</h2>"
        f"{_measured_html(infos, rows)}</section>"
    )
    folded = []
    for stem, what, table in tables:
        _write_csv(folder / f"{stem}.csv", table)
        if table and stem != "edits":
            folded.append(_table_html(stem, what, table))
    for i in infos:
        suffix = f" of {i.label}" if len(infos) > 1 else ""
        folded.append(
            f"<details><summary>Resolved configuration{_esc(suffix)}</summary><pre>"
            f"{_esc(json.dumps(i.config, indent=2, default=str))}</pre></details>"
        )
    parts.append(
        f"<section id='tables'><h2>Tables and configuration</h2>{''.join(folded)}</section>"
    )
    specs = json.dumps([f.spec() for f in figs]).replace("</", "<\\/")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>editrisk: {_esc(title)}</title><style>{STYLE}</style>"
        f"<script>{_plotly_js()}</script></head><body>"
        + "\n".join(parts)
        + f'<script type="application/json" id="figures">{specs}</script>'
        + f"<script>{SCRIPT}</script></body></html>"
    )
    index = folder / "index.html"
    atomic_write_text(index, page)
    return index
