"""Analysis: correlations against numpy/hand values, collapse detection, curves from rows,
and `editrisk analyze` writing plots and a table."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.report import (
    analyze_run,
    analyze_runs,
    collapse_step,
    curve,
    l1_curve,
    pearson,
    spearman,
)
from editrisk.report.stats import bootstrap_ci, correlation_p, ranks


def test_pearson_and_spearman() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert list(ranks([10, 20, 20, 5])) == [2.0, 3.5, 3.5, 1.0]
    assert pearson([1, 2], [2, 1]) is None and pearson([1, 1, 1], [1, 2, 3]) is None


def test_p_values_match_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = 0.4 * x + rng.normal(size=12)
    assert correlation_p(pearson(x, y), 12) == pytest.approx(stats.pearsonr(x, y).pvalue)
    assert correlation_p(spearman(x, y), 12) == pytest.approx(stats.spearmanr(x, y).pvalue)
    assert correlation_p(None, 12) is None and correlation_p(0.5, 2) is None


def test_bootstrap_interval_on_known_data() -> None:
    """A normal sample: the percentile bootstrap of the mean is close to scipy's t-interval;
    a 0/1 sample of 90 hits in 100: close to the normal-approximation interval."""
    from scipy import stats

    x = np.random.default_rng(0).normal(5.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x)
    tlo, thi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert lo < x.mean() < hi
    assert (lo, hi) == pytest.approx((tlo, thi), abs=0.03)
    hits = [1.0] * 90 + [0.0] * 10
    half = 1.96 * np.sqrt(0.9 * 0.1 / 100)
    assert bootstrap_ci(hits) == pytest.approx((0.9 - half, 0.9 + half), abs=0.015)
    assert bootstrap_ci(hits) == bootstrap_ci(hits)  # seeded
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7) and bootstrap_ci([0.7]) is None


def test_collapse_needs_to_stay_below() -> None:
    pts = [(10, 0.9), (20, 0.4), (30, 0.7), (40, 0.45), (50, 0.2)]
    assert collapse_step(pts, 0.5) == 40
    assert collapse_step(pts[:3], 0.5) is None
    assert collapse_step([(1, 0.1)], 0.5) == 1


def _rows() -> list[dict]:
    rows = []
    for m, slope in (("rome", -0.2), ("d4s", 0.0)):
        for step in range(1, 6):
            base = {"method": m, "protocol": "sequential", "step": step, "edits": step * 10}
            rows.append(
                {
                    **base,
                    "schedule": "retention@1",
                    "kind": "summary",
                    "efficacy.prob_compare": 1.0 + slope * step,
                    "n": step * 10,
                }
            )
            rows.append(
                {**base, "schedule": "immediate", "kind": "summary", "efficacy.prob_compare": 1.0}
            )
            for layer in (1, 2):
                rows.append(
                    {
                        **base,
                        "schedule": "immediate",
                        "kind": "diagnostics",
                        "param": f"l.{layer}.w",
                        "weight.l1_sum": 100.0 + 10 * step * layer,
                    }
                )
        rows.append(
            {
                "method": m,
                "protocol": "sequential",
                "step": 0,
                "edits": 0,
                "schedule": "general@5",
                "kind": "general",
                "perplexity": 10.0,
            }
        )
    return rows


def test_curves_from_rows() -> None:
    rows = _rows()
    assert curve(rows, "rome", "efficacy.prob_compare", "retention@")[:2] == [
        (10, pytest.approx(0.8)),
        (20, pytest.approx(0.6)),
    ]
    assert curve(rows, "rome", "efficacy.prob_compare", "immediate")[0] == (10, 1.0)
    assert l1_curve(rows, "d4s")[0] == (10, 230.0)  # summed over edited matrices


def test_analyze_writes_plots_and_table(tmp_path) -> None:
    rd = RunDir(tmp_path / "run")
    rd.start({"name": "x"})
    rd.results.append(_rows())
    rep = analyze_run(rd.path, threshold=0.5)
    by = {r["method"]: r for r in rep.rows}
    assert by["rome"]["pearson r"] == pytest.approx(-1.0)
    assert by["rome"]["spearman rho"] == pytest.approx(-1.0) and by["rome"]["n"] == 5
    assert by["rome"]["pearson p"] == 0.0 and by["d4s"]["pearson p"] is None
    assert by["rome"]["collapse at edit"] == 30  # 1 - 0.2*3 = 0.4 < 0.5 from step 3 on
    assert by["d4s"]["collapse at edit"] is None and by["d4s"]["pearson r"] is None
    assert (rep.folder / "summary.csv").is_file() and (rep.folder / "summary.md").is_file()
    pngs = {p.name for p in rep.plots}
    assert "efficacy_retention.png" in pngs and "L1_immediate.png" in pngs
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in rep.plots)


def test_cli_analyze_and_run_errors(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": ["rome"], "protocol": {"name": "single"}}))
    res = runner.invoke(app, ["run", str(bad), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "single" in res.output


def _long_rows(method: str, collapse_at: int | None) -> list[dict]:
    """A long study's rows: sampled retention (with its interval) and general ability on a
    log scale of edit counts, and a `collapsed` row where perplexity passed the threshold."""
    rows = [{"method": method, "edits": 0, "step": 0, "schedule": "unedited", "kind": "general",
             "perplexity": 9.0, "heldout.prob_compare": 1.0}]  # fmt: skip
    for k in (100, 1000, 10000):
        if collapse_at is not None and k > collapse_at:
            break
        base = {"method": method, "edits": k, "step": k // 100, "protocol": "sequential"}
        rows.append({**base, "schedule": f"retention@{k}", "kind": "summary",
                     "efficacy.prob_compare": 1 - k / 20000, "efficacy.prob_compare.ci95": 0.04,
                     "generalization.prob_compare": 0.5})  # fmt: skip
        rows.append({**base, "schedule": f"general@{k}", "kind": "general",
                     "perplexity": 9.0 + k / 50, "heldout.prob_compare": 0.9})  # fmt: skip
    if collapse_at is not None:
        rows.append({"method": method, "edits": collapse_at, "kind": "collapsed",
                     "perplexity": 120.0, "threshold": 100.0})  # fmt: skip
    return rows


def test_analyze_several_runs_side_by_side(tmp_path) -> None:
    """Two runs into one folder: each method once, the perplexity collapse read from the
    `collapsed` row, a log edit axis with the unedited point as a line, and the overview."""
    from matplotlib.axes import Axes

    dirs = []
    for name, rows in (("a", _long_rows("d4s", None)), ("b", _long_rows("memit", 1000))):
        rd = RunDir(tmp_path / name)
        rd.start({"name": "long"})
        rd.results.append(rows)
        dirs.append(rd.path)
    with pytest.raises(EditriskError, match="--out"):
        analyze_runs(dirs)
    scales: list[str] = []
    real = Axes.set_xscale
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Axes, "set_xscale", lambda ax, v, **k: scales.append(v) or real(ax, v, **k))
        rep = analyze_runs(dirs, tmp_path / "both")
    by = {r["method"]: r for r in rep.rows}
    assert set(by) == {"d4s", "memit"}  # distinct names stay unprefixed
    assert by["memit"]["ppl collapse at edit"] == 1000 and by["d4s"]["ppl collapse at edit"] is None
    assert by["d4s"]["edits"] == 10000 and by["d4s"]["ppl before"] == 9.0
    assert "log" in scales
    assert {p.name for p in rep.plots} >= {"overview.png", "perplexity_general.png"}
    assert not (tmp_path / "a" / "analysis").exists()  # nothing written into the runs
    # one method name in two runs: labelled by run
    rd = RunDir(tmp_path / "c")
    rd.start({"name": "other"})
    rd.results.append(_long_rows("d4s", None))
    names = {r["method"] for r in analyze_runs([dirs[0], rd.path], tmp_path / "o").rows}
    assert names == {"long: d4s", "other: d4s"}


def test_cli_analyze_several_runs_needs_out(tmp_path) -> None:
    for name in ("a", "b"):
        rd = RunDir(tmp_path / name)
        rd.start({"name": name})
        rd.results.append(_long_rows("d4s", None))
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(
        app, ["analyze", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0 and (tmp_path / "o" / "overview.png").is_file()
    (tmp_path / "file").write_text("x")
    bad = [
        ([tmp_path / "a", tmp_path / "a"], tmp_path / "o2", "listed twice"),
        ([tmp_path / "a", tmp_path / "b"], tmp_path / "file", "not a folder"),
        ([tmp_path / "a", tmp_path / "b"], tmp_path / "b", "is a run directory"),
    ]
    for runs, out, message in bad:
        res = runner.invoke(app, ["analyze", *map(str, runs), "--out", str(out)])
        assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "b" / "summary.csv").exists() and not (tmp_path / "o2").exists()
