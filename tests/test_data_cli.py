"""`editrisk data build worldfacts`, `editrisk data mqd` and `editrisk eval`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.data.jsonl import read_jsonl
from editrisk.delta import Delta
from editrisk.engine.store import RunDir
from editrisk.evaluation.metrics import edit_metrics
from editrisk.models import load_model

runner = CliRunner()


def _worldfacts(tmp_path: Path) -> Path:
    out = tmp_path / "wf.jsonl"
    res = runner.invoke(
        app,
        [
            "data",
            "build",
            "worldfacts",
            "--model",
            "tiny-gpt2",
            "--out",
            str(out),
            "--limit-per-relation",
            "2",
            "--no-filter",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_build_and_mqd(tmp_path: Path) -> None:
    reqs = read_jsonl(_worldfacts(tmp_path))
    assert len(reqs) == 10
    mqd = tmp_path / "mqd.jsonl"
    res = runner.invoke(
        app,
        [
            "data",
            "mqd",
            "--facts",
            str(tmp_path / "wf.jsonl"),
            "--out",
            str(mqd),
            "--types",
            "tf,mcq",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(read_jsonl(mqd)) == 20


def test_eval_with_delta_writes_rows_for_both_states(tmp_path: Path) -> None:
    reqs_path = _worldfacts(tmp_path)
    h = load_model("tiny-gpt2", device="cpu")
    name = h.arch.weight_name("mlp_out", 1)
    weight = dict(h.model.named_parameters())[name]
    delta = Delta({name: torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))})
    delta.save(tmp_path / "d.safetensors")
    run = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "eval",
            "tiny-gpt2",
            "--requests",
            str(reqs_path),
            "--delta",
            str(tmp_path / "d.safetensors"),
            "--run-dir",
            str(run),
            "--limit",
            "4",
            "--shifts",
            "--shift-kinds",
            "typo,case",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "efficacy.prob_compare" in res.output and "edited" in res.output
    rows = RunDir(run).results.rows()
    assert [r["kind"] for r in rows].count("request") == 8
    summary = {r["state"]: r for r in rows if r["kind"] == "summary"}
    reqs = read_jsonl(reqs_path)[:4]
    expected = {"unedited": edit_metrics(h, reqs)}
    with delta.applied(h.model):
        expected["edited"] = edit_metrics(h, reqs)
    for state, per_request in expected.items():
        mean = sum(r["efficacy.prob_margin"] for r in per_request) / 4
        assert abs(summary[state]["efficacy.prob_margin"] - mean) < 1e-6
    assert summary["edited"]["efficacy.prob_margin"] != summary["unedited"]["efficacy.prob_margin"]
    shifted = {(r["state"], r["shift"], r["severity"]): r for r in rows if r["kind"] == "shift"}
    assert len(shifted) == 2 * 11
    for (state, shift, sev), r in shifted.items():
        if state == "edited":
            base = shifted[("unedited", shift, sev)]["knowledge.prob_compare"]
            rel = r["relative.knowledge.prob_compare"]
            assert abs(rel - (r["knowledge.prob_compare"] - base)) < 1e-9
    assert json.loads((run / "model.json").read_text())["fingerprint"] == h.fingerprint()
    # the engine's one row schema: identity columns, unique keys, the CSV export
    from editrisk.engine import load_run

    df = load_run(run).to_pandas()
    assert {"run", "family", "method", "alpha", "path", "schedule", "kind", "key"} <= set(df)
    assert df["key"].is_unique and set(df["schedule"]) == {"unedited", "edited"}
    assert set(df[df["kind"] == "request"]["request"]) == {r.id for r in reqs}
    assert (run / "rows.csv").is_file()


def test_eval_bad_requests_exit_2_naming_the_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"subject": "Oslo", "prompt": "{} is in", "target_new": "Peru"}\n'
        '{"subject": "Oslo", "prompt": "no placeholder", "target_new": "Peru"}\n'
    )
    res = runner.invoke(
        app, ["eval", "tiny-gpt2", "--requests", str(bad), "--run-dir", str(tmp_path / "run")]
    )
    assert res.exit_code == 2
    assert "record 1" in res.output and "field 'prompt'" in res.output
    assert not (tmp_path / "run").exists()
