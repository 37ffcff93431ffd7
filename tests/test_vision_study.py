"""The vision study end to end on a tiny config, its resume, its report, and the CLI."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.errors import EditriskError
from editrisk.runs import RunDir
from editrisk.vision.report import summary
from editrisk.vision.study import StudyConfig, VisionStudy

TINY = {
    "name": "tiny",
    "size": 16,
    "classifiers": [{"family": "vgg", "width": 4, "epochs": 2}],
    "testbed": {"widths": [2], "epochs": [0, 1]},
    "task": {"style": "checker", "classes": [0, 1], "n_train": 4},
    "shifts": {
        "corruptions": ["fog", "gaussian_noise"],
        "severities": [1, 3],
        "n_images": 40,
        "n_edit_images": 20,
    },
    "methods": {"rewrite": {}, "ft-local": {"steps": 2}},
    "layers": [1, -1],
    "alphas": [1.0, 0.5],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One classifier cache for the module, so the models train once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDITRISK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_study_rows_resume_and_report(tmp_path, cache) -> None:
    out = tmp_path / "run"
    VisionStudy(StudyConfig.from_dict(TINY), out, log=lambda s: None).run_all()
    rows = RunDir(out).results.rows()
    n = len(rows)
    table = summary(RunDir(out))
    assert len(table) == 1 + 2 * 2 * 2  # base + methods x layers x alphas
    base = next(r for r in table if r["method"] == "none")
    assert base["relative_robustness"] == 0 and base["mce"] == pytest.approx(1.0)
    for r in table:
        assert 0 <= r["clean_acc"] <= 1 and 0 <= r["edit_success"] <= 1
    acc_rows = [r for r in rows if r["metric"] == "accuracy" and r["cell"] == table[1]["cell"]]
    assert len(acc_rows) == 2 * (1 + 2 * 2)  # (general, edit) x (clean + 2 corruptions x 2 sev)
    # resuming adds nothing
    VisionStudy(StudyConfig.from_dict(TINY), out, log=lambda s: None).run_all()
    assert len(RunDir(out).results) == n
    # alpha 0.5 (1-LI) is recorded separately from alpha 1
    assert {r["alpha"] for r in table if r["method"] == "rewrite"} == {0.5, 1.0}


def test_config_errors() -> None:
    with pytest.raises(EditriskError, match="unknown key"):
        StudyConfig.from_dict({**TINY, "bogus": 1})
    with pytest.raises(EditriskError, match="unknown editor"):
        StudyConfig.from_dict({**TINY, "methods": {"nope": {}}})
    with pytest.raises(EditriskError, match="record 0"):
        StudyConfig.from_dict({**TINY, "classifiers": [{"family": "alexnet"}]})
    with pytest.raises(EditriskError, match="corruptions"):
        StudyConfig.from_dict({**TINY, "shifts": {"corruptions": ["snow"]}})


def test_cli_study_and_corrupt(tmp_path, cache) -> None:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        yaml.safe_dump({**TINY, "methods": {"rewrite": {}}, "layers": [-1], "alphas": [1.0]})
    )
    runner = CliRunner()
    res = runner.invoke(app, ["vision", "study", str(cfg), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.md").is_file() and (
        tmp_path / "r" / "robustness.png"
    ).is_file()
    assert json.loads((tmp_path / "r" / "task.json").read_text())["style"] == "checker"
    png = tmp_path / "grid.png"
    res = runner.invoke(
        app, ["vision", "corrupt", "-o", str(png), "--size", "16", "--corruptions", "fog,pixelate"]
    )
    assert res.exit_code == 0, res.output
    from PIL import Image

    assert Image.open(png).size == (6 * 16 * 4, 2 * 16 * 4)
    bad = runner.invoke(app, ["vision", "corrupt", "--corruptions", "snow"])
    assert bad.exit_code == 2
    missing = runner.invoke(app, ["vision", "study", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
