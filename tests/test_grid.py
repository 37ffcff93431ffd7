"""Grids through the one engine: editor x layer x alpha x seed x edit set for either family,
both executors, resume, 1-LI paths labelled by the architecture table's layers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.editors import get_editor
from editrisk.engine import load_run, resolve, run_study
from editrisk.engine.checkpoint import latest_checkpoint
from editrisk.interpolation import interpolate
from editrisk.settings import threads_per_worker

FAST = {"steps": 3, "corpus_tokens": 256, "prefixes": [[1, 3]]}
LANGUAGE = {
    "name": "t",
    "model": "tiny-gpt2",
    "data": {"filter_known": False, "n_heldout": 4, "order": "round_robin", "heldout_from": "end"},
    "edit_sets": {"default": {"n": 2}},
    "protocol": {"name": "batch"},
    "schedule": {"immediate": False, "final": True, "general_every": 1},
    "evaluation": {"perplexity_sentences": 0, "request_rows": False},
    "grid": {"layer": [0, "default"], "alpha": [0, 0.5, 1]},
    "methods": [{"name": "rome", "hparams": FAST}, {"name": "memit", "hparams": FAST}],
}


def _final(rows: list[dict]) -> dict[tuple, dict]:
    """(method, layer, path, alpha) -> the summary row of all edits at the end (alpha 0: the
    unedited model)."""
    return {
        (r["method"], r["layer"], r["path"], r["alpha"]): r
        for r in rows
        if r["kind"] == "summary" and r["schedule"] in ("final", "unedited")
    }


def test_threads_never_oversubscribe() -> None:
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(4, cores=16) == 4


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    cfg = resolve(LANGUAGE)
    out = tmp_path_factory.mktemp("grid")
    run_study(cfg, out, workers=2)
    return cfg, out, load_run(out).rows


def test_local_grid_one_job_per_editor_and_layer(local_run: tuple) -> None:
    _, out, rows = local_run
    final = _final(rows)
    jobs = {(m, layer) for m, layer, _, _ in final}
    assert jobs == {(m, ly) for m in ("rome", "memit") for ly in (0, "default")}
    # alpha 0 is the unedited model, measured once per job before any edit: all the same
    base = [r for (_, _, _, a), r in final.items() if a == 0.0]
    assert len({json.dumps(r["efficacy.prob_margin"]) for r in base}) == 1 and len(base) == 4
    for m, layer in jobs:
        curve = sorted((a, r["efficacy.prob_margin"]) for (mm, ly, _, a), r in final.items()
                       if (mm, ly) == (m, layer))  # fmt: skip
        assert [a for a, _ in curve] == [0.0, 0.5, 1.0]
        assert curve[-1][1] > curve[0][1]  # the edit raises P(new) - P(true)
    paths = {(m, ly): p for m, ly, p, a in final if a == 1.0}
    assert paths[("rome", 0)] == "layer 0" and paths[("memit", "default")] == "all layers"
    assert len(list((out / "checkpoints").iterdir())) == 4
    general = [r for r in rows if r["kind"] == "general" and r["step"] == 1]
    assert {r["alpha"] for r in general} == {0.5, 1.0} and all("heldout.prob_compare" in r
                                                               for r in general)  # fmt: skip


def test_resume_redoes_only_the_unfinished_job(local_run: tuple, tmp_path: Path) -> None:
    cfg, out, rows = local_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    job = "memit__L0__s0__default"
    shutil.rmtree(copy / "checkpoints" / job)  # killed before its checkpoint
    kept = [line for line in (copy / "rows.jsonl").read_text().splitlines(keepends=True)
            if not json.loads(line)["key"].startswith("memit/L0/")]  # fmt: skip
    (copy / "rows.jsonl").write_text("".join(kept) + kept[0][:20])  # and a torn last row
    resumed = run_study(cfg, copy).results.rows()
    assert sorted(r["key"] for r in resumed) == sorted(r["key"] for r in rows)
    by_key = {r["key"]: r for r in rows}
    for r in resumed:
        for k in ("efficacy.prob_margin", "heldout.prob_compare"):
            if k in r:
                assert math.isclose(r[k], by_key[r["key"]][k], rel_tol=1e-4, abs_tol=1e-6)
    assert len(run_study(cfg, copy).results) == len(rows)  # nothing left to do


def test_ray_executor_matches_local(local_run: tuple, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    _, _, rows = local_run
    cfg = resolve({**LANGUAGE, "methods": LANGUAGE["methods"][:1],
                   "executor": {"kind": "ray", "num_cpus": 1}})  # fmt: skip
    try:
        got = run_study(cfg, tmp_path / "ray").results.rows()
    finally:
        ray.shutdown()
    want = {r["key"]: r for r in rows if r["method"] == "rome"}
    assert sorted(r["key"] for r in got) == sorted(want)
    for r in got:
        if "efficacy.prob_margin" in r:
            assert r["efficacy.prob_margin"] == pytest.approx(
                want[r["key"]]["efficacy.prob_margin"], abs=1e-5
            )


VISION = {
    "name": "v",
    "family": "vision",
    "model": {"arch": "resnet", "width": 4, "epochs": 2, "size": 16},
    "data": {"n_images": 60},
    "edit_sets": {"default": {"style": "stripes", "n_train": 6}},
    "protocol": {"name": "batch"},
    "schedule": {"immediate": False, "final": True, "general_every": 1},
    "evaluation": {"corruptions": ["contrast"], "severities": [3]},
    "grid": {"layer": [3], "alpha": [0, 0.5, 1]},
    "methods": ["rewrite", {"name": "ft-global", "hparams": {"steps": 3}}],
}


def test_vision_grid_layers_are_the_architecture_tables(tmp_path: Path) -> None:
    """A ResNet grid at table layer 3 (blocks.1.conv1): the rows, the checkpointed Delta, 1-LI
    and the report all name it layer 3; ft-global, which tunes layer 3 up, is 'all layers'."""
    from editrisk.families.vision import VisionFamily
    from editrisk.report import trade_off_points

    cfg = resolve(VISION)
    rows = run_study(cfg, tmp_path / "run").results.rows()
    final = _final(rows)
    assert ("rewrite", 3, "layer 3", 1.0) in final and ("ft-global", 3, "all layers", 0.5) in final
    diag = {r["param"]: r["param_layer"] for r in rows if r["kind"] == "diagnostics"}
    assert diag["blocks.1.conv1.weight"] == 3 and diag["head.weight"] == 9
    ck = latest_checkpoint(tmp_path / "run" / "checkpoints" / "rewrite__L3__s0__default")
    assert ck.cumulative.layers == [3]
    assert interpolate(ck.cumulative, 0.5, 3).names == ["blocks.1.conv1.weight"]
    lines = {p["line"] for p in trade_off_points(rows)}
    assert lines == {"rewrite @L3 / layer 3", "ft-global @L3 / all layers"}
    # the same edit made and measured by hand gives the alpha 1 rows
    fam = VisionFamily(cfg, 0)
    delta = get_editor("rewrite", {"layer": 3}).edit(fam.clf, fam.tasks["default"])
    with delta.applied(fam.module):
        (summary, *_), (general, *_) = (fam.evaluate("edits", fam.edit_set("default")),
                                        fam.evaluate("general", []))  # fmt: skip
    mine = final[("rewrite", 3, "layer 3", 1.0)]
    assert mine["edit_success.top1"] == pytest.approx(summary["edit_success.top1"])
    gen = next(r for r in rows if r["kind"] == "general" and r["method"] == "rewrite"
               and r["alpha"] == 1.0)  # fmt: skip
    assert gen["shifted_acc.top1"] == pytest.approx(general["shifted_acc.top1"])


def test_cli_sweep_alias_report_and_interpolate(local_run: tuple, tmp_path: Path) -> None:
    _, out, rows = local_run
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: audio\nmethods: [rome]\n")
    res = runner.invoke(app, ["sweep", str(bad)])
    assert res.exit_code == 2 and "bad.yaml" in res.output and "family" in res.output
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r2" / "index.html").exists() and (tmp_path / "r2" / "results.csv").exists()
    # `interpolate RUN_DIR`: each job's final edit along each layer alone and all together
    res = runner.invoke(
        app, ["interpolate", str(out), "--alphas", "0,1", "--out", str(tmp_path / "li")]
    )
    assert res.exit_code == 0, res.output
    li = _final(load_run(tmp_path / "li").rows)
    paths = {p for m, ly, p, a in li if (m, ly) == ("memit", "default") and a == 1.0}
    assert "all layers" in paths and len(paths) >= 3
    mine = li[("memit", "default", "all layers", 1.0)]["efficacy.prob_margin"]
    theirs = _final(rows)[("memit", "default", "all layers", 1.0)]["efficacy.prob_margin"]
    assert mine == pytest.approx(theirs, abs=1e-5)
    res = runner.invoke(app, ["interpolate", "tiny-gpt2"])
    assert res.exit_code == 2 and "--delta and --request" in res.output
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "config.yaml").write_text("command: eval\n")
    res = runner.invoke(app, ["interpolate", str(tmp_path / "eval")])
    assert res.exit_code == 2 and "not a study run directory" in res.output


def test_free_cores_leaves_busy_cores_alone(monkeypatch) -> None:
    import editrisk.settings as settings

    busy = settings._busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (__import__("os").cpu_count() or 1) + 1e-6
    monkeypatch.setattr(settings, "_busy_cores", lambda window: 1.7)  # a 2-thread rival
    assert settings.free_cores(cores=2) == 1 and settings.free_cores(cores=8) == 6
    monkeypatch.setattr(settings, "_busy_cores", lambda window: 0.1)  # a quiet machine
    assert settings.free_cores(cores=2) == 2
    monkeypatch.setattr(settings, "_busy_cores", lambda window: None)  # no /proc/stat
    monkeypatch.setattr(settings.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert settings.free_cores(cores=2) == 1
