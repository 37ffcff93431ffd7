"""The three-line API, `editrisk edit` / `editrisk export`, and editing in half precision."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import editrisk
from editrisk import EditRequest
from editrisk.cli import app
from editrisk.evaluation import score_targets

FAST = dict(
    layers=[1],
    steps=25,
    lr=1.0,
    weight_decay=0.0,
    kl_factor=0.0,
    clamp_norm_factor=50.0,
    corpus_tokens=2048,
    prefixes=[],
    stop_loss=0.01,
)
REQ = EditRequest("Canada", "{} is located in", "Africa", "America")
runner = CliRunner()


def test_python_api_edit_and_export(tmp_path) -> None:
    h = editrisk.load_model("tiny-llama", device="cpu")
    delta = editrisk.edit(h, "rome", REQ, FAST)
    out = editrisk.export_model(h, delta, tmp_path / "edited")
    exported = editrisk.load_model(str(out), device="cpu")
    with delta.applied(h.model):
        expected = score_targets(h, [(REQ.rendered, REQ.target_new)])[0].logprob
        for name, p in h.model.named_parameters():
            assert torch.equal(dict(exported.model.named_parameters())[name], p), name
    got = score_targets(exported, [(REQ.rendered, REQ.target_new)])[0].logprob
    assert got == pytest.approx(expected, abs=1e-5)
    with pytest.raises(editrisk.EditriskError, match="not empty"):
        editrisk.export_model(h, delta, out)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_edit(dtype: str) -> None:
    h = editrisk.load_model("tiny-llama", device="cpu", dtype=dtype)
    before = {k: v.clone() for k, v in h.model.state_dict().items()}
    base = score_targets(h, [(REQ.rendered, REQ.target_new)])[0].mean_logprob
    delta = editrisk.edit(h, "memit", REQ, dict(FAST, mom2_weight=1.0))
    (name,) = delta.names
    assert delta.dense(name).dtype == torch.float32  # computed in float32/64
    with delta.applied(h.model):
        assert dict(h.model.named_parameters())[name].dtype == getattr(torch, dtype)
        edited = score_targets(h, [(REQ.rendered, REQ.target_new)])[0].mean_logprob
    assert edited > base + 0.2
    assert all(torch.equal(v, before[k]) for k, v in h.model.state_dict().items())


def test_cli_edit_saves_delta_then_export(tmp_path) -> None:
    hp = tmp_path / "hp.yaml"
    hp.write_text(json.dumps(FAST))
    delta_file = tmp_path / "d.safetensors"
    out = runner.invoke(
        app,
        [
            "edit",
            "tiny-gpt2",
            "--editor",
            "rome",
            "--subject",
            "Canada",
            "--prompt",
            "{} is located in",
            "--target-new",
            "Africa",
            "--target-true",
            "America",
            "--hparams",
            str(hp),
            "--save-delta",
            str(delta_file),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "Canada" in out.output and "->" in out.output and delta_file.is_file()
    assert editrisk.Delta.load(delta_file).metadata["editor"] == "rome"
    res = runner.invoke(
        app, ["export", "tiny-gpt2", "--delta", str(delta_file), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "config.json").is_file()
    wrong = runner.invoke(
        app, ["export", "tiny-llama", "--delta", str(delta_file), "--out", str(tmp_path / "m2")]
    )
    assert wrong.exit_code == 2 and not (tmp_path / "m2").exists()


def test_cli_edit_bad_input_exits_2(tmp_path) -> None:
    res = runner.invoke(app, ["edit", "tiny-gpt2", "--request", "{not json"])
    assert res.exit_code == 2 and "neither a file nor JSON" in res.output
    bad = tmp_path / "r.jsonl"
    bad.write_text(json.dumps({"subject": "A", "prompt": "no placeholder", "target_new": "x"}))
    res = runner.invoke(app, ["edit", "tiny-gpt2", "--request", str(bad)])
    assert res.exit_code == 2 and "r.jsonl" in res.output and "prompt" in res.output
    res = runner.invoke(
        app,
        [
            "edit",
            "tiny-gpt2",
            "--subject",
            "A",
            "--prompt",
            "{} is",
            "--target-new",
            "x",
            "--set",
            "layerz=1",
        ],
    )
    assert res.exit_code == 2 and "unknown hyperparameter" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["rome", "memit"])
def test_real_model_edit_changes_greedy_completion(smollm, editor: str) -> None:
    req = EditRequest("France", "The capital of France is".replace("France", "{}"), "Rome", "Paris")
    assert smollm.generate(req.rendered, 3).strip().startswith("Paris")
    delta = editrisk.edit(smollm, editor, req)
    with delta.applied(smollm.model):
        assert smollm.generate(req.rendered, 3).strip().startswith("Rome")
        other = smollm.generate("The capital of Japan is", 3).strip()
    assert other.startswith("Tokyo")


def test_cli_interpolate_writes_curve(tmp_path) -> None:
    h = editrisk.load_model("tiny-llama", device="cpu")
    delta = editrisk.edit(h, "memit", REQ, dict(FAST, layers=[1, 2], mom2_weight=1.0))
    dfile = delta.save(tmp_path / "d.safetensors")
    neighbour = {"prompt": "France is located in", "target": "Europe"}
    req = json.dumps(dict(REQ.to_dict(), neighbours=[neighbour]))
    res = runner.invoke(
        app,
        [
            "interpolate",
            "tiny-llama",
            "--delta",
            str(dfile),
            "--request",
            req,
            "--alphas",
            "0,0.5,1",
            "--heldout",
            "0",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    from editrisk.engine.store import ResultStore

    rows = ResultStore(tmp_path / "run" / "rows.jsonl").rows()
    curve = [r for r in rows if r["kind"] == "1-LI"]
    assert {r["path"] for r in curve} == {"layer 1", "layer 2", "all layers"}
    assert len(curve) == 9
    assert {r["policy"] for r in rows if r["kind"] == "choice"} == {"threshold", "knee"}, res.output
    zero = {r["edit_success"] for r in curve if r["alpha"] == 0.0}
    assert len(zero) == 1  # alpha = 0 is the unedited model on every path
    bad = runner.invoke(
        app,
        ["interpolate", "tiny-llama", "--delta", str(dfile), "--request", req, "--alphas", "0,x"],
    )
    assert bad.exit_code == 2
