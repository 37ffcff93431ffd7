"""The HTML report: what it contains for each kind of run, and that a browser renders it."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.report import trade_off_points, write_report


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
    assert "<svg" in html and "Trade-off" in html
    # self-contained: nothing to fetch (inline data or in-page anchors only)
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    table = read_csv(page.parent / "trade_off_heldout.prob_compare.csv")
    assert len(table) == 6  # 2 lines x 3 alphas
    choices = read_csv(page.parent / "alpha_choices_heldout.prob_compare.csv")
    # threshold 0.5 on efficacy: the most robust alpha that reaches it
    thr = [c for c in choices if c["policy"] == "threshold" and c["line"] == "rome @L3 / layer 3"]
    assert float(thr[0]["alpha"]) == 0.5
    assert (page.parent / "trade_off_heldout.prob_compare.png").stat().st_size > 1000
    assert len(read_csv(page.parent / "results.csv")) == 6


def test_vision_report_has_severity_curves(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", vision_rows())
    page = write_report(run.path, tmp_path / "out")
    table = read_csv(page.parent / "corruption_severity.csv")
    assert len(table) == 2 * 3  # (unedited, rewrite) x 3 severities, means over corruptions
    edited = [r for r in table if "rewrite" in r["line"]]
    assert [float(r["accuracy"]) for r in edited] == pytest.approx([0.7, 0.6, 0.5])
    assert "corruption severity" in page.read_text()


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


def browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium (skipped when absent, except under CI) with console logging on and
    no background connections (this machine's network is closed to them)."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium for the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def test_browser_check_sees_script_errors(tmp_path: Path) -> None:
    """The negative control: a broken page does produce the console lines looked for."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined();</script></body></html>")
    res = browse(tmp_path, "--dump-dom", bad.as_uri())
    assert any("notDefined" in ln for ln in console_lines(res.stderr))


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", grid_rows() + vision_rows())
    page = write_report(run.path)
    shot = tmp_path / "shot.png"
    res = browse(tmp_path, f"--screenshot={shot}", page.as_uri())
    # the page logs nothing: any console message (an error, a failed load) is a failure
    assert console_lines(res.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = browse(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    assert dom.count("<svg") >= 2  # the trade-off and the severity curves
