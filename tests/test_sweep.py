"""Sweeps: config validation, grid expansion, resume, and both executors on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from editrisk.editors import get_editor
from editrisk.errors import InputError
from editrisk.runs import RunDir
from editrisk.sweep import (
    expand,
    plan_tasks,
    resolve_sweep,
    run_sweep,
    threads_per_worker,
)
from editrisk.sweep.worker import Worker

FAST = {"steps": 3, "corpus_tokens": 256, "prefixes": [[1, 3]]}


def language_cfg(**over: object) -> dict:
    raw = {
        "name": "t",
        "model": "tiny-gpt2",
        "grid": {"editor": ["rome", "memit"], "layer": [0, "default"], "alpha": [0, 0.5, 1]},
        "edit_sets": {"default": {"n": 2}},
        "editor_params": {"rome": FAST, "memit": FAST},
        "evaluation": {"heldout": 4, "filter_known": False},
    }
    raw.update(over)
    return resolve_sweep(raw, "sweep.yaml")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"colour": 1}, None),
        ({"family": "audio"}, "family"),
        ({"grid": {"alpha": [0, 1.5]}}, "grid.alpha"),
        ({"grid": {"alpha": []}}, "grid.alpha"),
        ({"grid": {"edit_set": ["missing"]}}, "grid.edit_set"),
        ({"grid": {"layer": ["middle"]}}, "grid.layer"),
        ({"grid": {"editor": ["nope"]}}, "editor_params.nope"),
        ({"editor_params": {"rome": {"steps": 0}}}, "editor_params.rome"),
        ({"executor": {"kind": "slurm"}}, "executor.kind"),
        ({"executor": {"workers": 0}}, "executor.workers"),
    ],
)
def test_bad_config_names_file_and_field(raw: dict, field: str | None) -> None:
    with pytest.raises(InputError) as err:
        resolve_sweep(raw, "sweep.yaml")
    assert err.value.file == "sweep.yaml"
    assert err.value.field == field


def test_expansion_groups_alphas_and_shares_the_baseline() -> None:
    cfg = language_cfg(grid={"seed": [0, 1], "alpha": [0, 0.5, 1]})
    cells = expand(cfg)
    assert len(cells) == 1 * 1 * 3 * 2 * 1  # editor x layer x alpha x seed x edit set
    tasks = plan_tasks(cells, done=set())
    base = [t for t in tasks if t.kind == "baseline"]
    edits = [t for t in tasks if t.kind == "edit"]
    assert {t.seed for t in base} == {0, 1} and all(t.alphas == [0.0] for t in base)
    assert all(t.alphas == [0.5, 1.0] for t in edits) and len(edits) == 2
    # done cells are not planned again; a task with nothing left disappears
    done = {c.id for c in cells if c.seed == 0}
    left = plan_tasks(cells, done)
    assert {t.seed for t in left} == {1}


def test_threads_never_oversubscribe() -> None:
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(4, cores=16) == 4


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, list[dict]]:
    cfg = language_cfg()
    out = tmp_path_factory.mktemp("sweep")
    run = run_sweep(cfg, out, workers=2)
    return cfg, out, run.results.rows()


def test_local_sweep_one_row_per_cell(local_run: tuple) -> None:
    cfg, out, rows = local_run
    assert sorted(r["cell"] for r in rows) == sorted(c.id for c in expand(cfg))
    base = [r for r in rows if r["alpha"] == 0.0]
    # alpha 0 is the unedited model: one evaluation shared by every editor and layer
    assert len({json.dumps([r["efficacy"], r["heldout"], r["edit_margin"]]) for r in base}) == 1
    for editor in ("rome", "memit"):
        for layer in (0, "default"):
            curve = sorted(
                (r["alpha"], r["edit_margin"])
                for r in rows
                if r["editor"] == editor and r["layer"] == layer
            )
            assert [a for a, _ in curve] == [0.0, 0.5, 1.0]
            assert curve[-1][1] > curve[0][1]  # the edit raises P(new) - P(true)
    assert len(list((out / "deltas").glob("*.safetensors"))) == 4


def test_resume_runs_only_missing_cells_and_reuses_saved_edits(local_run: tuple, tmp_path) -> None:  # noqa: ANN001
    cfg, out, rows = local_run
    # a copy of the run that was killed after its first 5 rows (deltas already saved)
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    lines = (copy / "rows.jsonl").read_text().splitlines(keepends=True)
    (copy / "rows.jsonl").write_text("".join(lines[:5]) + lines[5][:20])  # torn 6th row
    resumed = run_sweep(cfg, copy, workers=1).results.rows()
    assert sorted(r["cell"] for r in resumed) == sorted(r["cell"] for r in rows)
    by_cell = {r["cell"]: r for r in rows}
    for r in resumed[5:]:
        if r["alpha"] > 0:
            assert r["edit_seconds"] == 0.0  # the saved edit was loaded, not recomputed
        for k in ("efficacy", "edit_margin", "heldout"):
            assert math.isclose(r[k], by_cell[r["cell"]][k], rel_tol=1e-4, abs_tol=1e-6)
    # nothing left: a third run adds no rows
    assert len(run_sweep(cfg, copy, workers=1).results) == len(rows)


def test_ray_executor_matches_local(local_run: tuple, tmp_path) -> None:  # noqa: ANN001
    ray = pytest.importorskip("ray")
    cfg, _, rows = local_run
    cfg = {**cfg, "executor": {**cfg["executor"], "kind": "ray", "num_cpus": 1}}
    cfg["grid"] = {**cfg["grid"], "editor": ["rome"]}
    try:
        got = run_sweep(cfg, tmp_path / "ray").results.rows()
    finally:
        ray.shutdown()
    assert sorted(r["cell"] for r in got) == sorted(c.id for c in expand(cfg))
    by_cell = {r["cell"]: r for r in rows}
    for r in got:
        assert math.isclose(r["edit_margin"], by_cell[r["cell"]]["edit_margin"], abs_tol=1e-5)


def test_vision_sweep(tmp_path) -> None:  # noqa: ANN001
    cfg = resolve_sweep(
        {
            "family": "vision",
            "model": {"family": "vgg", "width": 4, "epochs": 2, "size": 16},
            "grid": {"editor": ["rewrite"], "layer": [1], "alpha": [0, 1]},
            "edit_sets": {"default": {"style": "stripes", "n_train": 6}},
            "evaluation": {"n_images": 60, "corruptions": ["contrast"], "severities": [3]},
        }
    )
    rows = {r["alpha"]: r for r in run_sweep(cfg, tmp_path).results.rows()}
    assert set(rows) == {0.0, 1.0}
    # the same edit made and measured by hand gives the alpha = 1 row
    ctx = Worker(cfg, tmp_path / "by-hand").context(0)
    before = ctx.evaluate("default")
    delta = get_editor("rewrite", {"layer": 1}).edit(ctx.clf, ctx.tasks["default"])
    with delta.applied(ctx.model):
        after = ctx.evaluate("default")
    for k in ("edit_success", "edit_success_shifted", "clean_acc", "shifted_acc"):
        assert rows[0.0][k] == pytest.approx(before[k])
        assert rows[1.0][k] == pytest.approx(after[k])
    assert after != before


@pytest.mark.parametrize("name", ["sweep_language.yaml", "sweep_vision.yaml"])
def test_example_configs_resolve(name: str) -> None:
    from editrisk.sweep import load_sweep

    cfg = load_sweep(Path(__file__).parent.parent / "examples" / name)
    g = cfg["grid"]
    n = len(g["editor"]) * len(g["layer"]) * len(g["alpha"]) * len(g["seed"]) * len(g["edit_set"])
    assert len(expand(cfg)) == n


def test_bad_yaml_file_is_named(tmp_path: Path) -> None:
    from editrisk.sweep import load_sweep

    bad = tmp_path / "s.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(InputError, match="s.yaml"):
        load_sweep(bad)
    bad.write_text("grid: {alpha: [2]}\n")
    with pytest.raises(InputError, match="grid.alpha"):
        load_sweep(bad)


def test_cli_sweep_and_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from editrisk.cli import app

    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: audio\n")
    res = runner.invoke(app, ["sweep", str(bad)])
    assert res.exit_code == 2 and "bad.yaml" in res.output and "family" in res.output
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        "model: tiny-llama\n"
        "grid: {editor: [memit], layer: [default], alpha: [0, 1]}\n"
        "editor_params: {memit: {steps: 2, corpus_tokens: 128, prefixes: [[1, 3]]}}\n"
        "evaluation: {heldout: 3, filter_known: false}\n"
    )
    res = runner.invoke(app, ["sweep", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "report" / "index.html").exists()
    assert len((tmp_path / "run" / "rows.jsonl").read_text().splitlines()) == 2
    res = runner.invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0 and (tmp_path / "r2" / "trade_off_heldout.csv").exists()


def test_interpolate_a_sweeps_saved_edits(local_run: tuple, tmp_path: Path) -> None:
    """`editrisk interpolate RUN_DIR`: every saved edit along each layer alone and all layers;
    the all-layers point at alpha 1 is the sweep's own cell."""
    from typer.testing import CliRunner

    from editrisk.cli import app

    _, out, rows = local_run
    res = CliRunner().invoke(
        app, ["interpolate", str(out), "--alphas", "0,1", "--out", str(tmp_path / "li")]
    )
    assert res.exit_code == 0, res.output
    li = [r for r in RunDir(tmp_path / "li").results.rows() if r["kind"] == "1-LI"]
    memit_default = [r for r in li if r["task"] == "memit/Ldefault/s0/default"]
    paths = {r["path"] for r in memit_default}
    assert "all layers" in paths and len(paths) >= 3  # each layer alone + all together
    mine = next(r for r in memit_default if r["path"] == "all layers" and r["alpha"] == 1.0)
    theirs = next(r for r in rows if r["cell"] == "memit/Ldefault/s0/default/a1")
    assert mine["edit_margin"] == pytest.approx(theirs["edit_margin"], abs=1e-5)
    assert (tmp_path / "li" / "report" / "index.html").exists()
    res = CliRunner().invoke(app, ["interpolate", "tiny-gpt2"])
    assert res.exit_code == 2 and "--delta and --request" in res.output
