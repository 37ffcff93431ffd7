"""The vision study through the engine on a tiny config: its rows, resume, the relative
measures against the unedited model, the CLI alias and the corruption preview."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.engine import load_run, resolve, run_study
from editrisk.errors import EditriskError

TINY = {
    "name": "tiny",
    "family": "vision",
    "model": {"arch": "vgg", "width": 4, "epochs": 2, "size": 16},
    "data": {"n_images": 40, "n_edit_images": 20, "testbed": {"widths": [2], "epochs": [0, 1]}},
    "edit_sets": {"checker": {"style": "checker", "classes": [0, 1], "n_train": 4}},
    "protocol": {"name": "batch"},
    "schedule": {"immediate": False, "final": True, "general_every": 1},
    "evaluation": {"corruptions": ["fog", "gaussian_noise"], "severities": [1, 3]},
    "grid": {"layer": [1, -1], "alpha": [0.0, 0.5, 1.0], "edit_set": ["checker"]},
    "methods": ["rewrite", {"name": "ft-local", "hparams": {"steps": 2}}],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One classifier cache for the module, so the models train once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDITRISK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_study_rows_resume_and_relative_measures(tmp_path, cache) -> None:
    out = tmp_path / "run"
    run_study(resolve(TINY), out)
    rows = load_run(out).rows
    general = {(r["method"], r["layer"], r["alpha"]): r for r in rows if r["kind"] == "general"}
    assert len(general) == 2 * 2 * 3  # methods x layers x alphas (alpha 0: each job's unedited)
    for (_, _, alpha), r in general.items():
        assert 0 <= r["clean_acc.top1"] <= 1 and 0 <= r["shifted_acc.top1"] <= 1
        if alpha == 0.0:  # the unedited model against itself
            assert r["relative_robustness.top1"] == 0 and r["mce.vs_unedited"] == pytest.approx(1)
        assert "effective_robustness.logit_fit" in r
    assert {r["layer"] for r in rows} == {1, -1}
    assert {r["path"] for r in rows if r["kind"] == "summary" and r["layer"] == -1} == {
        "unedited", "layer 6"  # -1 is the table's last layer, the head, index 6
    }  # fmt: skip
    acc = [r for r in rows if r["kind"] == "accuracy" and r["step"] == 1 and r["alpha"] == 1.0
           and r["method"] == "rewrite" and r["layer"] == 1]  # fmt: skip
    assert len(acc) == 2 * (1 + 2 * 2)  # (general, edit) x (clean + 2 corruptions x 2 sev)
    testbed = [r for r in rows if r["kind"] == "testbed" and r["method"] == "rewrite"
               and r["layer"] == 1]  # fmt: skip
    assert len(testbed) == 3  # two checkpoints and the unedited model itself
    n = len(rows)
    run_study(resolve(TINY), out)  # resuming adds nothing
    assert len(load_run(out).rows) == n


def test_config_errors() -> None:
    with pytest.raises(EditriskError, match="unknown key"):
        resolve({**TINY, "bogus": 1})
    with pytest.raises(EditriskError, match="unknown editor"):
        resolve({**TINY, "methods": ["nope"]})
    with pytest.raises(EditriskError, match="model.arch"):
        resolve({**TINY, "model": {"arch": "alexnet"}})
    with pytest.raises(EditriskError, match="did you mean 'n_train'"):
        resolve({**TINY, "edit_sets": {"checker": {"ntrain": 3}}})


def test_cli_study_and_corrupt(tmp_path, cache) -> None:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "methods": ["rewrite"], "grid": {"layer": [-1]}}))
    runner = CliRunner()
    res = runner.invoke(app, ["vision", "study", str(cfg), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report" / "index.html").is_file()
    assert (tmp_path / "r" / "report" / "corruption_severity.csv").is_file()
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
    language = tmp_path / "lang.yaml"
    language.write_text(yaml.safe_dump({"methods": ["rome"]}))
    res = runner.invoke(app, ["vision", "study", str(language)])
    assert res.exit_code == 2 and "family is 'language'" in res.output
