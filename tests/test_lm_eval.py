"""lm-evaluation-harness the standard way: lm-eval's own HFLM around the in-memory model gives
the numbers lm-eval's `hf` model gives on the same weights saved to a folder (unedited, and
edited inside `Delta.applied`); the `editrisk` lm-eval model (a saved delta applied), the
`lm_eval:` config section and `editrisk eval --lm-eval`. A local task, offline: a JSON
dataset and task YAMLs the test writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import editrisk
from editrisk import EditRequest
from editrisk.cli import app
from editrisk.data.jsonl import write_jsonl
from editrisk.engine import resolve, run_study
from editrisk.errors import EditriskError
from editrisk.evaluation.general import (
    lm_eval_columns,
    lm_eval_metrics,
    lm_eval_results,
    lm_eval_tasks,
    run_lm_eval,
)
from editrisk.models import load_model

pytest.importorskip("lm_eval")

TASKS = ["er_capitals", "er_text_ppl"]
COUNTRIES = ["France", "Italy", "Japan", "Germany", "Spain", "Canada", "Brazil", "Kenya"]
ROME = dict(layers=[1], steps=25, lr=1.0, weight_decay=0.0, kl_factor=0.0,
            clamp_norm_factor=50.0, corpus_tokens=2048, prefixes=[], stop_loss=0.01)  # fmt: skip
REQ = EditRequest("France", "The capital of {} is", "Rome", "Paris", id="france")
# every metric of both tasks: multiple-choice log-likelihoods and rolling log-likelihoods
METRICS = {"er_capitals": ["acc", "acc_norm"],
           "er_text_ppl": ["word_perplexity", "byte_perplexity", "bits_per_byte"]}  # fmt: skip


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two task YAMLs over one local JSON dataset."""
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    docs = [{"question": f"The capital of {c} is", "choices": ["Paris", "Rome", "Tokyo", "Berlin"],
             "answer": i % 4, "text": f"The capital of {c} is a city in {c}. People in {c} "
             "pay with money."} for i, c in enumerate(COUNTRIES)]  # fmt: skip
    data = root / "capitals.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    files = f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
    head = f"dataset_path: json\n{files}test_split: test\n"
    (root / "capitals.yaml").write_text(
        f"task: er_capitals\n{head}output_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (root / "ppl.yaml").write_text(
        f"task: er_text_ppl\n{head}output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list:\n"
        + "".join(
            f"  - metric: {m}\n    aggregation: {a}\n    higher_is_better: false\n"
            for m, a in (
                ("word_perplexity", "weighted_perplexity"),
                ("byte_perplexity", "weighted_perplexity"),
                ("bits_per_byte", "bits_per_byte"),
            )
        )  # fmt: skip
    )
    return root


def _hf(folder: Path, tasks: Path) -> dict[str, dict[str, float]]:
    """lm-eval's own `hf` model on a saved folder."""
    args = f"pretrained={folder},dtype=float32,device=cpu"
    return lm_eval_metrics(lm_eval_results("hf", TASKS, tasks, model_args=args))


def _assert_same(got: dict, want: dict) -> None:
    for task, names in METRICS.items():
        for m in names:
            assert got[task][m] == pytest.approx(want[task][m], rel=1e-5, abs=1e-6), (task, m)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_hflm_in_memory_equals_lm_evals_hf_model(name: str, tasks: Path, tmp_path: Path) -> None:
    h = load_model(name, device="cpu")
    got = run_lm_eval(h, TASKS, include_path=tasks)
    h.model.save_pretrained(tmp_path / "m")
    h.tokenizer.save_pretrained(tmp_path / "m")
    _assert_same(got, _hf(tmp_path / "m", tasks))
    assert 1 < got["er_text_ppl"]["word_perplexity"] < float("inf")


def test_an_edited_model_equals_hf_on_its_export(tasks: Path, tmp_path: Path) -> None:
    h = load_model("tiny-llama", device="cpu")
    before = {k: v.clone() for k, v in h.model.state_dict().items()}
    delta = editrisk.edit(h, "rome", REQ, ROME, check=False)
    unedited = run_lm_eval(h, TASKS, include_path=tasks)
    edited = run_lm_eval(h, TASKS, include_path=tasks, delta=delta)
    assert all(torch.equal(v, before[k]) for k, v in h.model.state_dict().items())
    ppl = "er_text_ppl", "word_perplexity"
    assert edited[ppl[0]][ppl[1]] != pytest.approx(unedited[ppl[0]][ppl[1]], rel=1e-4)
    editrisk.export_model(h, delta, tmp_path / "edited")
    _assert_same(edited, _hf(tmp_path / "edited", tasks))


def test_editrisk_lm_eval_model_applies_a_saved_delta(tasks: Path, tmp_path: Path) -> None:
    import editrisk.evaluation.lm_eval_plugin  # noqa: F401 - registers --model editrisk

    h = load_model("tiny-gpt2", device="cpu")
    delta = editrisk.edit(h, "rome", REQ, ROME, check=False)
    path = delta.save(tmp_path / "d.safetensors")
    args = f"model=tiny-gpt2,delta={path},device=cpu"
    got = lm_eval_metrics(lm_eval_results("editrisk", TASKS, tasks, model_args=args))
    _assert_same(got, run_lm_eval(h, TASKS, include_path=tasks, delta=delta))
    other = editrisk.edit(load_model("tiny-llama"), "rome", REQ, ROME, check=False)
    bad = other.save(tmp_path / "other.safetensors")
    with pytest.raises(EditriskError, match="other.safetensors"):
        lm_eval_results("editrisk", TASKS, tasks, model_args=f"model=tiny-gpt2,delta={bad}")


def test_lm_eval_command_line_with_the_editrisk_model(tasks: Path, tmp_path: Path) -> None:
    """The documented command: lm-eval's own CLI, the editrisk model registered."""
    h = load_model("tiny-gpt2", device="cpu")
    delta = editrisk.edit(h, "rome", REQ, ROME, check=False)
    path = delta.save(tmp_path / "d.safetensors")
    cmd = [sys.executable, "-m", "editrisk.evaluation.lm_eval_plugin", "run",
           "--model", "editrisk", "--model_args", f"model=tiny-gpt2,delta={path}",
           "--tasks", ",".join(TASKS), "--include_path", str(tasks), "--device", "cpu",
           "--output_path", str(tmp_path / "out")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (out,) = (tmp_path / "out").rglob("results*.json")
    got = lm_eval_metrics(json.loads(out.read_text()))
    _assert_same(got, run_lm_eval(h, TASKS, include_path=tasks, delta=delta))


def test_unknown_tasks_are_named(tasks: Path) -> None:
    with pytest.raises(EditriskError, match=r"no task \['er_nope'\]"):
        lm_eval_tasks(["er_capitals", "er_nope"], tasks)
    with pytest.raises(EditriskError, match="not a folder"):
        lm_eval_tasks(["er_capitals"], tasks / "capitals.yaml")


def _study(tmp_path: Path, **extra) -> dict:
    reqs = [EditRequest(c, "The capital of {} is", "Rome", "Paris", id=c) for c in COUNTRIES[:2]]
    write_jsonl(reqs, tmp_path / "reqs.jsonl")
    return {"name": "t", "model": "tiny-gpt2",
            "data": {"source": "file", "path": str(tmp_path / "reqs.jsonl"), "n_edits": 2},
            "protocol": {"name": "sequential", "batch_size": 1},
            "schedule": {"general_every": 1},
            "evaluation": {"perplexity_sentences": 0, "request_rows": False},
            "methods": [{"name": "ft", "hparams": {"layers": [1], "steps": 2}}],
            **extra}  # fmt: skip


def test_config_section_runs_with_general_ability(tasks: Path, tmp_path: Path) -> None:
    plain = resolve(_study(tmp_path))
    assert "lm_eval" not in plain.to_dict()  # existing configs resolve as before
    section = {"tasks": ["er_capitals"], "include_path": str(tasks), "limit": 4}
    cfg = resolve(_study(tmp_path, lm_eval=section))
    assert cfg.to_dict()["lm_eval"] == {**section, "num_fewshot": None, "batch_size": 16}
    rows = run_study(cfg, tmp_path / "run").results.rows()
    general = sorted((r for r in rows if r["kind"] == "general"), key=lambda r: r["step"])
    assert [r["step"] for r in general] == [0, 1, 2]
    h = load_model("tiny-gpt2", device="cpu")
    want = run_lm_eval(h, ["er_capitals"], include_path=tasks, limit=4)
    assert general[0]["lm_eval.er_capitals.acc"] == pytest.approx(want["er_capitals"]["acc"])
    assert all("lm_eval.er_capitals.acc" in r for r in general)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"lm_eval": {"tasks": ["x"]}, "schedule": {"general_every": 0}}, "lm_eval"),
        ({"lm_eval": {"tasks": []}}, "lm_eval.tasks"),
        ({"lm_eval": {"tasks": ["x"], "limt": 3}}, "lm_eval.limt"),
        ({"lm_eval": {"tasks": ["x"], "limit": 0}}, "lm_eval.limit"),
    ],
)
def test_bad_config_sections_are_refused_by_name(extra: dict, field: str, tmp_path: Path) -> None:
    with pytest.raises(EditriskError, match=f"field '{field}'"):
        resolve(_study(tmp_path, **extra), "study.yaml")


def test_eval_command_adds_lm_eval_for_both_states(tasks: Path, tmp_path: Path) -> None:
    h = load_model("tiny-gpt2", device="cpu")
    delta = editrisk.edit(h, "rome", REQ, ROME, check=False)
    path = delta.save(tmp_path / "d.safetensors")
    write_jsonl([REQ], tmp_path / "reqs.jsonl")
    out = CliRunner().invoke(app, [
        "eval", "tiny-gpt2", "--requests", str(tmp_path / "reqs.jsonl"), "--delta", str(path),
        "--lm-eval", "er_text_ppl", "--lm-eval-include", str(tasks), "--run-dir",
        str(tmp_path / "run"), "--device", "cpu"])  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "rows.jsonl").open()]
    summary = {r["state"]: r for r in rows if r["kind"] == "summary"}
    col = "lm_eval.er_text_ppl.word_perplexity"
    for state, d in (("unedited", None), ("edited", delta)):
        want = lm_eval_columns(run_lm_eval(h, ["er_text_ppl"], include_path=tasks, delta=d))
        assert summary[state][col] == pytest.approx(want[col], rel=1e-6)
    assert summary["edited"][col] != pytest.approx(summary["unedited"][col], rel=1e-4)
    reqs = str(tmp_path / "reqs.jsonl")
    bad = CliRunner().invoke(app, ["eval", "tiny-gpt2", "--requests", reqs, "--lm-eval",
                                   "er_nope", "--lm-eval-include", str(tasks)])  # fmt: skip
    assert bad.exit_code == 2 and "er_nope" in bad.stderr
