"""`editrisk demo` runs its shipped configs through the engine: here on small stand-ins for
them (the real model's run is the main job itself)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

import editrisk.cli.demo as demo_cmd
from editrisk.cli import app
from editrisk.engine import load_config, load_run


def test_demo_runs_both_configs_reports_and_resumes(tmp_path: Path, monkeypatch) -> None:
    shipped = Path(demo_cmd.__file__).parents[1] / "configs"
    small = tmp_path / "configs"
    small.mkdir()
    lang = yaml.safe_load((shipped / "demo_language.yaml").read_text())
    lang.update(model="tiny-gpt2", data={**lang["data"], "filter_known": False, "n_heldout": 4})
    fast = {"steps": 3, "corpus_tokens": 256, "prefixes": []}
    lang["methods"] = [{"name": m, "hparams": fast} for m in lang["methods"]]
    vis = yaml.safe_load((shipped / "demo_vision.yaml").read_text())
    vis.update(model={"arch": "vgg", "width": 4, "epochs": 2, "size": 16}, data={"n_images": 40})
    vis["evaluation"] = {"corruptions": ["contrast"], "severities": [2]}
    (small / "demo_language.yaml").write_text(yaml.safe_dump(lang))
    (small / "demo_vision.yaml").write_text(yaml.safe_dump(vis))
    for name in ("demo_language.yaml", "demo_vision.yaml"):  # the shipped ones are valid too
        assert load_config(shipped / name).name.startswith("demo-")
    monkeypatch.setattr(demo_cmd, "files", lambda _pkg: small)
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "demo-language: results at the end" in res.output and "report:" in res.output
    assert "paraphrase" in res.output and "edit shifted" in res.output
    for part, editors in (("language", {"rome", "memit", "d4s"}), ("vision", {"rewrite"})):
        run = load_run(out / part)
        assert {r["method"] for r in run.rows} == editors
        assert (out / part / "report" / "index.html").is_file()
    alphas = {r["alpha"] for r in load_run(out / "vision").rows if r["kind"] == "general"}
    assert alphas == {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
    n = len(load_run(out / "language").rows)
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--no-vision"])
    assert res.exit_code == 0, res.output
    assert len(load_run(out / "language").rows) == n  # the second run resumes: nothing to do
