"""The HTML report: what it contains for each kind of run, and that a browser renders it."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.report import trade_off_points, write_report
from editrisk.report.drilldown import edit_records
from editrisk.report.figures import edit_axis, edit_count_figures
from editrisk.report.stats import bootstrap_ci
from editrisk.report.summary import headline


def _row(**kw) -> dict:
    base = {"run": "t", "edit_set": "default", "protocol": "batch", "n_steps": 1}
    return {**base, **kw}


def grid_rows() -> list[dict]:
    """Rows as a language grid writes them: two seeds, so report points are means over
    seeds; alpha 0 is each job's unedited row."""
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for layer, path in ((3, "layer 3"), ("default", "all layers")):
            job = {"method": "rome", "layer": layer, "seed": seed}
            rows.append(
                _row(
                    **job,
                    step=0,
                    schedule="unedited",
                    path="unedited",
                    alpha=0.0,
                    kind="summary",
                    **{"efficacy.prob_compare": 0.0, "efficacy.prob_margin": -0.5 + shift},
                )
            )
            rows.append(
                _row(
                    **job,
                    step=0,
                    schedule="unedited",
                    path="unedited",
                    alpha=0.0,
                    kind="general",
                    **{"heldout.prob_compare": 1.0 + shift},
                )
            )
            for alpha in (0.5, 1.0):
                at = {**job, "step": 1, "path": path, "alpha": alpha}
                rows.append(
                    _row(
                        **at,
                        schedule="final",
                        kind="summary",
                        **{
                            "efficacy.prob_compare": alpha,
                            "efficacy.prob_margin": alpha - 0.5 + shift,
                        },
                    )
                )
                rows.append(
                    _row(
                        **at,
                        schedule="general@1",
                        kind="general",
                        **{"heldout.prob_compare": 1.0 - 0.2 * alpha + shift},
                    )
                )
    return rows  # fmt: skip


def vision_rows() -> list[dict]:
    """Vision rows: unedited and edited accuracies per corruption and severity."""
    rows = []
    for step, sched, path, alpha, acc in ((0, "unedited", "unedited", 0.0, 0.9),
                                          (1, "general@1", "layer 1", 1.0, 0.7)):  # fmt: skip
        meta = {"method": "rewrite", "layer": 1, "seed": 0, "step": step, "schedule": sched,
                "path": path, "alpha": alpha}  # fmt: skip
        rows.append(_row(**meta, kind="general", **{"shifted_acc.top1": acc - 0.2}))
        for sev in (0, 1, 2):
            for corruption in ("noise", "blur"):
                rows.append(_row(**meta, kind="accuracy", set="general", corruption=corruption,
                                 severity=sev, **{"acc.top1": acc - 0.1 * sev}))  # fmt: skip
    return rows


# Per method, which of the 6 facts still hold at the end (efficacy at `final`).
KEPT = {"rome": [1, 1, 0, 0, 1, 1], "d4s": [1, 1, 1, 1, 1, 1]}


def sequential_rows(methods: tuple[str, ...] = ("rome", "d4s")) -> list[dict]:
    """A sequential language run as the engine writes it: 6 single edits, retention every 2
    steps, general ability every 3, request rows with prompts and generations, diagnostics."""
    rows = []
    facts = [(f"f{i}", f"The capital of country {i} is", f"New{i}", f"Old{i}") for i in range(6)]

    def request(fid, prompt, new, true, hit, after):
        return {"kind": "request", "request": fid, "prompt": prompt, "target_new": new,
                "target_true": true, "efficacy.prob_compare": float(hit),
                "p_new.per_token": 0.6 if hit else 0.05, "p_true.per_token": 0.1 if hit else 0.5,
                "generation.greedy": f" {new} city" if after else f" {true}, a city"}  # fmt: skip

    for m in methods:
        job = {"method": m, "editor": m, "layer": "default", "seed": 0, "protocol": "sequential",
               "batch_size": 1, "n_steps": 6}  # fmt: skip
        base = {**job, "step": 0, "edits": 0, "schedule": "unedited", "path": "unedited",
                "alpha": 0.0}  # fmt: skip
        rows.append(_row(**base, kind="summary", n=6, **{"efficacy.prob_compare": 0.0}))
        rows += [_row(**base, **request(*f, 0, False)) for f in facts]
        general = {"heldout.prob_compare": 1.0, "heldout.n": 20, "perplexity": 9.0}
        rows.append(_row(**base, kind="general", **general))
        for step in range(1, 7):
            at = {**job, "step": step, "edits": step, "path": "layer 2", "alpha": 1.0}
            rows.append(_row(**at, schedule="immediate", kind="diagnostics", param="w",
                             **{"weight.l1_sum": 100.0 + step * (5 if m == "rome" else 1),
                                "unedited.l1_sum": 100.0}))  # fmt: skip
            rows.append(_row(**at, schedule="immediate", kind="summary", n=1,
                             **{"efficacy.prob_compare": 1.0}))  # fmt: skip
            rows.append(_row(**at, schedule="immediate", **request(*facts[step - 1], 1, True)))
            so_far = facts[:step]
            scheds = (["retention@2"] if step % 2 == 0 else []) + (["final"] if step == 6 else [])
            for sched in scheds:
                kept = KEPT[m][:step] if step == 6 else [1] * step
                rows.append(_row(**at, schedule=sched, kind="summary", n=step,
                                 **{"efficacy.prob_compare": sum(kept) / step}))  # fmt: skip
                rows += [_row(**at, schedule=sched, **request(*f, k, True))
                         for f, k in zip(so_far, kept)]  # fmt: skip
            if step % 3 == 0:
                rows.append(_row(**at, schedule="general@3", kind="general",
                                 **{"heldout.prob_compare": 1.0 - 0.1 * step, "heldout.n": 20,
                                    "perplexity": 9.0 + step}))  # fmt: skip
    return rows


def assert_self_contained(page: str) -> None:
    """Nothing outside the inlined scripts asks for a file or a URL."""
    text = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)
    assert not re.search(r'(src|href)\s*=\s*["\'](?!data:|#)', text), "external reference"
    assert page.count("<script") == 3  # plotly.js, the figures' JSON, the page's script


def make_run(path: Path, rows: list[dict], name: str = "t") -> RunDir:
    run = RunDir(path)
    run.start({"name": name})
    run.results.append(rows)
    return run


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trade_off_points_average_over_seeds() -> None:
    pts = trade_off_points(grid_rows())
    assert {p["line"] for p in pts} == {"rome @L3 / layer 3", "rome / all layers"}
    p = next(p for p in pts if p["line"] == "rome @L3 / layer 3" and p["alpha"] == 1.0)
    assert p["n"] == 2
    assert p["efficacy.prob_margin"] == pytest.approx(0.55)  # (0.5 + 0.6) / 2
    assert p["heldout.prob_compare"] == pytest.approx(0.85)
    p0 = next(p for p in pts if p["line"] == "rome / all layers" and p["alpha"] == 0.0)
    assert p0["heldout.prob_compare"] == pytest.approx(1.05) and p0["n"] == 2


def test_grid_report_has_curves_choices_and_csvs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", grid_rows())
    page = write_report(run.path)
    html = page.read_text()
    assert page == run.path / "report" / "index.html"
    assert '"key": "trade-off"' in html and "chosen alpha: threshold" in html
    assert_self_contained(html)
    table = read_csv(page.parent / "trade_off_heldout.prob_compare.csv")
    assert len(table) == 6  # 2 lines x 3 alphas
    choices = read_csv(page.parent / "alpha_choices_heldout.prob_compare.csv")
    # threshold 0.5 on efficacy: the most robust alpha that reaches it
    thr = [c for c in choices if c["policy"] == "threshold" and c["line"] == "rome @L3 / layer 3"]
    assert float(thr[0]["alpha"]) == 0.5
    assert len(read_csv(page.parent / "results.csv")) == 6


def test_vision_report_has_severity_curves(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", vision_rows())
    page = write_report(run.path, tmp_path / "out")
    table = read_csv(page.parent / "corruption_severity.csv")
    assert len(table) == 2 * 3  # (unedited, rewrite) x 3 severities, means over corruptions
    edited = [r for r in table if "rewrite" in r["line"]]
    assert [float(r["accuracy"]) for r in edited] == pytest.approx([0.7, 0.6, 0.5])
    assert "corruption severity" in page.read_text()


def test_headline_means_intervals_and_n() -> None:
    """Edit success over the facts at `final`, held-out knowledge over the 0/1 outcomes
    behind its share, perplexity one number (no interval); each beside the unedited model."""
    head = headline(sequential_rows())
    assert [m.label for m in head.measures] == [
        "edit success", "edit success right after its step", "held-out knowledge", "perplexity"
    ]  # fmt: skip
    cells = dict(head.rows)["rome / layer 2"]
    after, before = cells["edit success"]
    assert after.mean == pytest.approx(4 / 6) and after.n == 6 and after.unit == "facts"
    assert after.ci == bootstrap_ci(KEPT["rome"]) and after.ci[0] < 4 / 6 < after.ci[1]
    assert (before.mean, before.ci, before.n) == (0.0, (0.0, 0.0), 6)
    assert cells["edit success right after its step"][0].mean == 1.0
    held, held0 = cells["held-out knowledge"]
    assert held.mean == pytest.approx(0.4) and held.n == 20  # the share at edit 6 of 20 facts
    assert held.ci == bootstrap_ci([1.0] * 8 + [0.0] * 12) and held0.mean == 1.0
    ppl, ppl0 = cells["perplexity"]
    assert (ppl.mean, ppl.ci, ppl.n, ppl0.mean) == (15.0, None, 1, 9.0)
    assert "final" in head.schedules["edit success"]
    assert head.schedules["held-out knowledge"] == "general@3 after edit 6"


def test_edit_records_pair_before_and_after() -> None:
    recs = edit_records(sequential_rows())
    assert len(recs) == 12  # 6 facts x 2 methods
    r = next(r for r in recs if r["line"] == "rome / layer 2" and r["request"] == "f2")
    assert (r["prompt"], r["target_new"], r["target_true"]) == (
        "The capital of country 2 is", "New2", "Old2"
    )  # fmt: skip
    assert (r["p_new before"], r["p_new after"], r["p_true after"]) == (0.05, 0.05, 0.5)
    assert (r["generation before"], r["generation after"]) == (" Old2, a city", " New2 city")
    assert r["after"] == "final (edit 6)"


def test_edit_axis_is_integer_and_log_across_decades() -> None:
    assert edit_axis([0, 1, 2, 3])["dtick"] == 1  # never 2.5
    assert edit_axis(list(range(25, 301, 25)))["dtick"] == 50
    log = edit_axis(list(range(1, 301)))
    assert log["type"] == "log" and log["tickvals"] == [1, 2, 5, 10, 20, 50, 100, 200]


def test_edit_count_curves_have_unedited_references() -> None:
    figs = {f.key: f for f in edit_count_figures(sequential_rows(), ["rome", "d4s"])}
    l1 = {t["name"]: t for t in figs["edits-l1"].data}
    assert l1["rome"]["y"] == pytest.approx([1.05, 1.10, 1.15, 1.20, 1.25, 1.30])
    assert l1["unedited"]["y"] == [1.0, 1.0]  # L1 over the unedited weights' L1
    held = {t["name"]: t for t in next(f for f in figs.values() if "Held-out" in f.title).data}
    assert held["rome"]["x"] == [0, 3, 6] and held["unedited"]["y"] == [1.0, 1.0]


def test_report_refuses_empty_or_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(EditriskError, match="not a run directory"):
        write_report(tmp_path)
    make_run(tmp_path / "empty", [])
    with pytest.raises(EditriskError, match="no result rows"):
        write_report(tmp_path / "empty")


def test_row_values_never_become_file_names(tmp_path: Path) -> None:
    rows = [{**r, "kind": "x/../../../../escape", "method": "../../m"} for r in grid_rows()]
    run = make_run(tmp_path / "a" / "b" / "run", rows)
    write_report(run.path)
    outside = {p for p in tmp_path.rglob("*") if run.path not in p.parents and p != run.path}
    assert outside == {tmp_path / "a", tmp_path / "a" / "b"}


OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
           "--host-resolver-rules=MAP * ~NOTFOUND"]  # fmt: skip


def browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium (skipped when absent, except under CI) with console logging on, no
    network (a dead proxy, no name resolution) and virtual time for the page's timers."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium for the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
             "--virtual-time-budget=15000", *OFFLINE,
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def test_browser_check_sees_script_errors_and_has_no_network(tmp_path: Path) -> None:
    """Negative controls: a broken page produces the console lines looked for, and a page
    that needs the network does not get it."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined();</script></body></html>")
    res = browse(tmp_path, "--dump-dom", bad.as_uri())
    assert any("notDefined" in ln for ln in console_lines(res.stderr))
    online = tmp_path / "online.html"
    online.write_text(
        '<html><body><script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script><script>'
        "document.body.dataset.ready = typeof Plotly;</script></body></html>"
    )
    assert 'data-ready="undefined"' in browse(tmp_path, "--dump-dom", online.as_uri()).stdout


# Clicks the first legend entry of the first plot, types into the per-edit search, and
# records what changed on <body> (a page script, as a user's clicks would run).
PROBE = """<script>
(function () {
  var go = function () {
    if (document.body.dataset.ready !== '1') { setTimeout(go, 50); return; }
    var gd = document.querySelector('.plot'), item = gd.querySelector('.legendtoggle');
    var before = String(gd._fullData[0].visible), box = item.getBoundingClientRect();
    var at = {bubbles: true, cancelable: true, button: 0, buttons: 1,
              clientX: box.left + 5, clientY: box.top + 5};
    item.dispatchEvent(new MouseEvent('mousedown', at));
    item.dispatchEvent(new MouseEvent('mouseup', at));
    var search = document.getElementById('edit-search');
    if (search) {
      search.value = 'new2 rome';
      search.dispatchEvent(new Event('input'));
    }
    setTimeout(function () {
      document.body.dataset.probe = before + '->' + String(gd._fullData[0].visible);
      var shown = Array.from(document.querySelectorAll('#edit-table tbody tr'))
        .filter(function (r) { return r.style.display !== 'none'; });
      document.body.dataset.shown = shown.map(function (r) { return r.cells[1].textContent; });
    }, 1000);
  };
  go();
})();
</script>"""


def with_probe(page: Path) -> Path:
    text = page.read_text()
    cut = text.rindex("</body>")
    probe = page.with_name("probe.html")
    probe.write_text(text[:cut] + PROBE + text[cut:])
    return probe


def figure_keys(page: str) -> list[str]:
    m = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    assert m is not None
    return [f["key"] for f in json.loads(m.group(1))]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", grid_rows() + vision_rows())
    page = write_report(run.path)
    shot = tmp_path / "shot.png"
    res = browse(tmp_path, f"--screenshot={shot}", page.as_uri())
    # the page logs nothing: any console message (an error, a failed load) is a failure
    assert console_lines(res.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = browse(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert 'data-ready="1"' in dom  # every plot drawn, the page's script ran to its end
    keys = figure_keys(page.read_text())
    assert set(keys) == {"trade-off", "severity"}
    for key in keys:  # plotly drew an SVG into each plot's element
        start = dom.index(f'id="fig-{key}"')
        assert 'class="main-svg"' in dom[start : start + 3000]


def test_sequential_report_in_browser_offline(tmp_path: Path) -> None:
    """Summary first, a drawn plot per figure, a legend click hides its series, the per-edit
    search filters; all with the network off and no console message."""
    run = make_run(tmp_path / "run", sequential_rows(), name="seq")
    page = write_report(run.path)
    assert_self_contained(page.read_text())
    res = browse(tmp_path, "--dump-dom", with_probe(page).as_uri())
    assert console_lines(res.stderr) == []
    dom = res.stdout
    sections = re.findall(r'<section id="(\w+)"', dom)
    assert sections[0] == "summary" and sections.index("plots") < sections.index("edits")
    assert 'data-probe="true-&gt;legendonly"' in dom  # the first series is hidden
    assert 'data-shown="The capital of country 2 is"' in dom  # one fact, one method
    keys = figure_keys(page.read_text())
    assert "trade-off" not in keys and len(keys) == 5  # no alpha grid: no trade-off curve
    for key in keys:
        start = dom.index(f'id="fig-{key}"')
        assert 'class="main-svg"' in dom[start : start + 3000]


def test_comparison_page_shows_both_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", sequential_rows(("rome",)), name="one-at-a-time")
    b = make_run(tmp_path / "b", sequential_rows(("rome", "d4s")), name="batched")
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(a.path), str(b.path)])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(app, ["report", str(a.path), str(b.path), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    page = tmp_path / "c" / "index.html"
    dom = browse(tmp_path, "--dump-dom", page.as_uri()).stdout
    summary = dom[dom.index('id="summary"') : dom.index('id="plots"')]
    for line in ("one-at-a-time: rome", "batched: rome", "batched: d4s"):
        assert f"{line} / layer 2" in summary
    legend = dom[dom.index('id="fig-edits-0"') :]
    assert "one-at-a-time: rome" in legend and "batched: d4s" in legend  # drawn legend entries
    assert str(a.path.resolve()) in dom and str(b.path.resolve()) in dom  # how measured
