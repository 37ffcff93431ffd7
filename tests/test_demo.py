"""The demo's vision part and its report, on a small classifier (the language part is the
real-model job itself; its pieces are tested with the editors and interpolation)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from rich.console import Console

from editrisk import demo
from editrisk.report import write_report
from editrisk.runs import RunDir
from editrisk.sweep import expand, resolve_sweep


def test_builtin_vision_config_resolves() -> None:
    assert len(expand(resolve_sweep(demo.VISION, "demo"))) == 6  # one rewrite, six alphas


def test_vision_part_writes_curve_and_severity_rows(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    small = {
        **demo.VISION,
        "model": {"family": "vgg", "width": 4, "epochs": 2, "size": 16},
        "edit_sets": {"checker": {"style": "checker", "n_train": 6}},
        "evaluation": {"n_images": 40, "corruptions": ["contrast", "fog"], "severities": [2, 4]},
    }
    monkeypatch.setattr(demo, "VISION", small)
    run = RunDir(tmp_path / "run")
    run.start({"name": "demo-test"})
    demo._vision(run, Console(quiet=True))
    rows = run.results.rows()
    curve = [r for r in rows if r.get("kind") == "trade_off"]
    assert sorted(r["alpha"] for r in curve) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    severity = [r for r in rows if r.get("metric") == "accuracy"]
    assert len(severity) == 2 * (1 + 2 * 2)  # unedited and edited x (clean + 2 x 2)
    full = next(r for r in curve if r["alpha"] == 1.0)
    edited = [r for r in severity if r["method"] == "rewrite"]
    clean = next(r for r in edited if r["severity"] == 0)
    assert clean["value"] == pytest.approx(full["clean_acc"])  # the same edit, measured twice
    page = write_report(run.path)
    with open(page.parent / "trade_off_shifted_acc.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert (page.parent / "corruption_severity.csv").exists()


def test_demo_starts_afresh_but_never_clears_another_run(tmp_path: Path) -> None:
    from editrisk.errors import EditriskError

    old = RunDir(tmp_path / "demo")
    old.start({"model": "m", "n_facts": 1, "n_heldout": 2, "editors": ["rome"], "facts": ["a"]})
    old.results.append({"protocol": "single"})
    (old.deltas).mkdir()
    demo._clear(old)
    assert not old.results.path.exists() and not old.deltas.exists()
    other = RunDir(tmp_path / "sweep")
    other.start({"name": "sweep", "grid": {}})
    other.results.append({"kind": "trade_off"})
    with pytest.raises(EditriskError, match="another kind of run"):
        demo._clear(other)
    assert len(other.results) == 1
