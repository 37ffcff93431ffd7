"""The engine: protocol semantics (single / batch / sequential) over Deltas, schedules on every
row, the 1-LI grid, refused diverged steps, per-step diagnostics against numpy, checkpoints,
config errors, and D4S memory that does not grow with steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from editrisk import EditriskError
from editrisk.data.jsonl import write_jsonl
from editrisk.delta import Delta
from editrisk.diagnostics import step_diagnostics
from editrisk.editors import get_editor
from editrisk.editors.base import Editor, HParams, register
from editrisk.engine import Protocol, Schedule, load_run, resolve, run_study
from editrisk.engine.checkpoint import latest_checkpoint, save_checkpoint
from editrisk.models import load_model
from editrisk.requests import EditRequest

REQS = [
    EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr"),
    EditRequest("Canada", "{} is located in", "Africa", "America", id="ca"),
    EditRequest("Japan", "{} is located in", "Europe", "Asia", id="jp"),
    EditRequest("Peru", "The capital of {} is", "Rome", "Lima", id="pe"),
    EditRequest("Chad", "{} is located in", "Asia", "Africa", id="td"),
]
D4S_FAST = dict(
    layers=(1,),
    steps=10,
    lr=1.0,
    weight_decay=0.0,
    kl_factor=0.0,
    clamp_norm_factor=50.0,
    corpus_tokens=1024,
    prefixes=(),
    mom2_weight=1.0,
)


class SpyParams(HParams):
    pass


@register
class Spy(Editor):
    """Records the weight it sees at every call; returns a fixed update per request, or NaN
    for a request whose id is in `diverge`."""

    name = "spy-engine"
    hparams_cls = SpyParams
    seen: list[torch.Tensor] = []
    diverge: set[str] = set()

    def edit(self, model, requests):
        p = model.arch.weight_name("mlp_out", 1)
        w = dict(model.model.named_parameters())[p]
        Spy.seen.append(w.detach().clone())
        if any(r.id in Spy.diverge for r in requests):
            return Delta({p: torch.full_like(w, float("nan"))})
        return Delta({p: torch.full_like(w, 0.01) * len(requests)})


def _cfg(tmp_path: Path, protocol: dict, schedule: dict, **extra):
    write_jsonl(REQS, tmp_path / "reqs.jsonl")
    write_jsonl(REQS[:2], tmp_path / "held.jsonl")
    raw = {
        "name": "t",
        "model": "tiny-gpt2",
        "data": {"source": "file", "path": str(tmp_path / "reqs.jsonl"), "n_edits": 5,
                 "heldout_path": str(tmp_path / "held.jsonl")},
        "protocol": protocol,
        "schedule": schedule,
        "evaluation": {"perplexity_sentences": 4, "batch_size": 8},
        "diagnostics": {"spectral_iters": 4},
        "methods": ["spy-engine"],
        **extra,
    }  # fmt: skip
    return resolve(raw)


def _run(cfg, tmp_path):
    Spy.seen.clear()
    return run_study(cfg, tmp_path / "run").results.rows()


def test_protocol_steps() -> None:
    seq = Protocol("sequential", 2).steps(REQS)
    assert [len(s.requests) for s in seq] == [2, 2, 1]
    assert [s.edits_before for s in seq] == [0, 2, 4] and seq[-1].edits_after == 5
    assert [len(s.requests) for s in Protocol("batch").steps(REQS)] == [5]
    single = Protocol("single").steps(REQS)
    assert len(single) == 5 and all(s.edits_before == 0 for s in single)
    with pytest.raises(EditriskError, match="unknown protocol"):
        Protocol("parallel")


def test_schedule_labels() -> None:
    s = Schedule(immediate=True, final=True, retention_every=2, general_every=3)
    assert s.due(0, 4) == ["general@3"]
    assert s.due(1, 4) == ["immediate"]
    assert s.due(2, 4) == ["immediate", "retention@2"]
    assert s.due(4, 4) == ["immediate", "retention@2", "general@3", "final"]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"schedule": {"every": 3}, "methods": ["rome"]}, "field 'schedule.every': unknown key"),
        ({"shedule": {}, "methods": ["rome"]}, "did you mean 'schedule'"),
        ({"grid": {"alpah": [1.0]}, "methods": ["rome"]}, "did you mean 'alpha'"),
        ({"grid": {"alpha": [1.5]}, "methods": ["rome"]}, "field 'grid.alpha': alphas must"),
        ({"data": {"n_edit": 3}, "methods": ["rome"]}, "did you mean 'n_edits'"),
        ({"methods": ["rome", "rome"]}, "repeats label"),
        ({"data": {"source": "file"}, "methods": ["rome"]}, "field 'data': source 'file' needs"),
        ({}, "lists no editor"),
        ({"methods": [{"name": "rome", "hparams": {"stepz": 3}}]}, "methods[0].hparams"),
        ({"methods": [{"name": "rome", "label": "../../x"}]}, "names a folder"),
        ({"name": "/tmp/x", "methods": ["rome"]}, "names a folder"),
        ({"methods": ["../../rome"]}, "field 'methods[0].name': editor name"),
        ({"family": "audio", "methods": ["rome"]}, "unknown family 'audio'"),
        ({"protocol": {"name": "single"}, "methods": ["rome"]}, "only 'immediate'"),
        ({"grid": {"edit_set": ["other"]}, "methods": ["rome"]}, "not defined under edit_sets"),
        ({"family": "vision", "model": {"arch": "vit"}, "methods": ["rewrite"]}, "model.arch"),
    ],
)
def test_config_errors_name_file_and_key(raw: dict, message: str) -> None:
    with pytest.raises(EditriskError, match=r"^study\.yaml.*" + _escape(message)):
        resolve(raw, "study.yaml")


def _escape(s: str) -> str:
    import re

    return re.escape(s)


def test_cli_config_error_leaves_no_directory(tmp_path: Path) -> None:
    from editrisk.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": ["rome"], "grid": {"layr": [1]}}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(bad), "--run-dir", str(out)])
    assert res.exit_code == 2 and "did you mean 'layer'" in res.output and str(bad) in res.output
    assert not out.exists()
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"model": "tiny-gpt2", "methods": ["rome"], "grid": {"layer": [9]},
                                  "data": {"filter_known": False, "n_edits": 1}}))  # fmt: skip
    res = CliRunner().invoke(app, ["run", str(ok), "--run-dir", str(out)])
    assert res.exit_code == 2 and "layer 9 is out of range" in res.output
    assert not out.exists()


def test_single_edits_pristine_model_and_restores_it(tmp_path) -> None:
    cfg = _cfg(tmp_path, {"name": "single"}, {"final": False, "retention_every": 0})
    h = load_model("tiny-gpt2")
    before = h.model.state_dict()[h.arch.weight_name("mlp_out", 1)].clone()
    rows = _run(cfg, tmp_path)
    assert len(Spy.seen) == len(REQS)
    assert all(torch.equal(w, before) for w in Spy.seen)
    diag = [r for r in rows if r["kind"] == "diagnostics"]
    assert len(diag) == 5 and all(r["cum.l1_sum"] == r["step.l1_sum"] for r in diag)


def test_sequential_accumulates_and_rows_carry_schedule(tmp_path) -> None:
    cfg = _cfg(
        tmp_path,
        {"name": "sequential", "batch_size": 2},
        {"retention_every": 2, "general_every": 2},
    )
    rows = _run(cfg, tmp_path)
    w0 = Spy.seen[0]
    assert [float((w - w0).mean()) for w in Spy.seen] == pytest.approx([0.0, 0.02, 0.04])
    for r in rows:
        assert r["protocol"] == "sequential" and r["batch_size"] == 2
        assert r["schedule"] in {"unedited", "immediate", "final", "retention@2", "general@2"}
        assert isinstance(r["step"], int) and isinstance(r["edits"], int)
        assert r["family"] == "language" and r["method"] == "spy-engine" and r["seed"] == 0
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    ret = {
        r["step"]: r["n"] for r in rows if r["schedule"] == "retention@2" and r["kind"] == "summary"
    }
    assert ret == {2: 4, 3: 5}  # all edits so far, every 2 steps and after the last
    final = [r for r in rows if r["schedule"] == "final" and r["kind"] == "request"]
    assert sorted(r["request"] for r in final) == sorted(q.id for q in REQS)
    fr = next(r for r in final if r["request"] == "fr")  # what the report's drill-down shows
    assert (fr["prompt"], fr["target_new"], fr["target_true"]) == (
        "The capital of France is",
        "Asia",
        "Paris",
    )
    assert 0 < fr["p_new.per_token"] < 1 and isinstance(fr["generation.greedy"], str)
    assert sorted(r["step"] for r in rows if r["kind"] == "general") == [0, 2, 3]
    cum = [r["cum.l1_mean"] for r in rows if r["kind"] == "diagnostics"]
    assert cum == pytest.approx([0.02, 0.04, 0.05])


def test_alpha_grid_evaluates_the_scaled_edit(tmp_path, monkeypatch) -> None:
    """Every alpha of the grid is the model W0 + alpha * cumulative edit; alpha 0 is the
    unedited model, measured once before any edit."""
    import editrisk.families.language as language

    seen: list[float] = []
    weights: list[torch.Tensor] = []
    real = language.LanguageFamily.evaluate

    def spy(self, what, reqs):
        w = dict(self.h.model.named_parameters())[self.h.arch.weight_name("mlp_out", 1)]
        weights.append(w.detach().clone())
        seen.append(round(float((w - weights[0]).mean()), 6))
        return real(self, what, reqs)

    monkeypatch.setattr(language.LanguageFamily, "evaluate", spy)
    cfg = _cfg(tmp_path, {"name": "batch"}, {"immediate": False, "final": True},
               grid={"alpha": [0.0, 0.5, 1.0]})  # fmt: skip
    rows = _run(cfg, tmp_path)
    assert seen == pytest.approx([0.0, 0.025, 0.05])  # unedited, alpha 0.5, alpha 1
    summ = {r["alpha"]: r for r in rows if r["kind"] == "summary"}
    assert summ[0.0]["schedule"] == "unedited" and summ[0.5]["path"] == "layer 1"


def test_a_diverged_step_is_refused_recorded_and_the_run_goes_on(tmp_path) -> None:
    Spy.diverge = {"ca"}
    try:
        cfg = _cfg(tmp_path, {"name": "sequential"}, {"retention_every": 0})
        rows = _run(cfg, tmp_path)
    finally:
        Spy.diverge = set()
    w0 = Spy.seen[0]
    # step 2 diverged: step 3 sees the model as step 2 found it
    assert [float((w - w0).mean()) for w in Spy.seen] == pytest.approx([0, 0.01, 0.01, 0.02, 0.03])
    (failed,) = [r for r in rows if r["kind"] == "failed"]
    assert failed["step"] == 2 and "NaN" in failed["reason"]
    assert not any(r["kind"] == "diagnostics" and r["step"] == 2 for r in rows)
    cum = [r["cum.l1_mean"] for r in rows if r["kind"] == "diagnostics"]
    assert cum == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert all(np.isfinite(r["efficacy.prob_margin"]) for r in rows if r["kind"] == "summary")


def test_batch_equals_one_combined_delta(tmp_path) -> None:
    h = load_model("tiny-llama")
    torch.manual_seed(0)
    ref = get_editor("memit", D4S_FAST).edit(h, REQS)
    cfg = _cfg(tmp_path, {"name": "batch"}, {"retention_every": 1},
               methods=[{"name": "memit", "hparams": D4S_FAST}], model="tiny-llama")  # fmt: skip
    run_study(cfg, tmp_path / "run")
    ck = latest_checkpoint(tmp_path / "run" / "checkpoints" / "memit__Ldefault__s0__default")
    assert ck is not None and ck.step == 1
    for name in ref.names:
        torch.testing.assert_close(ck.cumulative.dense(name), ref.dense(name).float())
    assert ck.cumulative.layers == [1]


def test_diagnostics_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=gen)
    d = torch.randn(24, 40, generator=gen) * 0.1
    model = torch.nn.Linear(40, 24, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    delta = Delta({"weight": d})
    (row,) = step_diagnostics(model, delta, delta, spectral_iters=200, condition=True)
    wn, dn = w.double().numpy(), d.double().numpy()
    assert row["weight.l1_sum"] == pytest.approx(np.abs(wn).sum(), rel=1e-5)
    assert row["weight.l1_mean"] == pytest.approx(np.abs(wn).mean(), rel=1e-5)
    assert row["weight.fro"] == pytest.approx(np.linalg.norm(wn), rel=1e-5)
    assert row["weight.spectral"] == pytest.approx(np.linalg.norm(wn, 2), rel=1e-4)
    assert row["weight.cond"] == pytest.approx(np.linalg.cond(wn), rel=1e-3)
    assert row["cum.spectral"] == pytest.approx(np.linalg.norm(dn, 2), rel=1e-4)
    assert row["step.l1_sum"] == pytest.approx(np.abs(dn).sum(), rel=1e-5)
    assert row["unedited.l1_sum"] == pytest.approx(np.abs(wn - dn).sum(), rel=1e-5)


def test_checkpoint_roundtrip_keeps_latest_only(tmp_path) -> None:
    cum = Delta({"a.1.w": torch.randn(3, 4)}, {"layers": {"a.1.w": 7}})
    state = {"sum_kk.1": torch.randn(4, 4, dtype=torch.float64), "n_edits": torch.tensor(2)}
    save_checkpoint(tmp_path, 1, cum, state, {"seed": 0})
    save_checkpoint(tmp_path, 2, cum, state, {"seed": 0})
    (tmp_path / ".step-000003.tmp").mkdir()  # a checkpoint killed while being written
    ck = latest_checkpoint(tmp_path)
    assert ck is not None and ck.step == 2
    assert torch.equal(ck.cumulative.dense("a.1.w"), cum.dense("a.1.w"))
    assert ck.cumulative.layers == [7]  # the family's layer survives the checkpoint
    assert torch.equal(ck.editor_state["sum_kk.1"], state["sum_kk.1"])
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002"]


def test_d4s_state_size_constant_over_steps() -> None:
    h = load_model("tiny-llama")
    editor = get_editor("d4s", D4S_FAST)
    sizes = []
    for i in range(4):
        delta = editor.edit(h, [REQS[i]])
        delta.apply(h.model, backup=False)
        sizes.append(sum(t.numel() * t.element_size() for t in editor.state_dict().values()))
    assert int(editor.state_dict()["n_edits"]) == 4
    assert len(set(sizes)) == 1 and sizes[0] > 0


def test_shipped_configs_resolve() -> None:
    from editrisk.engine import load_config

    root = Path(__file__).parents[1]
    found = sorted((root / "examples").glob("*.yaml")) + sorted(
        (root / "src" / "editrisk" / "configs").glob("*.yaml")
    )
    assert len(found) >= 14
    families = set()
    for path in found:
        cfg = load_config(path)
        families.add(cfg.family)
        if path.name.startswith("sequential_"):
            assert cfg.model == "smollm2-135m" and cfg.schedule.retention_every > 0
            core = {"rome", "memit", "d4s", "alphaedit"}  # the gen_match studies drop ft
            lifelong = {"encore", "rect", "prune", "nse", "grace", "ultraedit"}
            labels = set(cfg.labels())
            assert core <= labels <= core | {"ft"} or labels == lifelong, path.name
    assert families == {"language", "vision"}


def test_schedules_due_together_are_measured_once(tmp_path, monkeypatch) -> None:
    """`final` and `retention@k` after the last step measure the same model on the same
    requests: one measurement, recorded under both labels."""
    import editrisk.evaluation.metrics as metrics

    calls: list[int] = []
    real = metrics.edit_scores  # one scoring pass per measurement of edit metrics
    monkeypatch.setattr(
        metrics, "edit_scores", lambda h, reqs, bs=32: calls.append(len(reqs)) or real(h, reqs, bs)
    )
    cfg = _cfg(tmp_path, {"name": "sequential", "batch_size": 1}, {"retention_every": 5})
    rows = _run(cfg, tmp_path)
    # unedited, immediate x 5, then one measurement of all 5 for retention@5 and final together
    assert calls == [5, 1, 1, 1, 1, 1, 5]
    last = {r["schedule"]: r for r in rows if r["kind"] == "summary" and r["step"] == 5}
    assert set(last) == {"immediate", "retention@5", "final"}
    strip = {"schedule", "key"}
    a, b = ({k: v for k, v in last[s].items() if k not in strip} for s in ("final", "retention@5"))
    assert a == b and last["final"]["n"] == 5


def test_load_run_reads_any_run_with_one_schema(tmp_path) -> None:
    from editrisk.engine import IDENTITY

    cfg = _cfg(tmp_path, {"name": "sequential", "batch_size": 2}, {"general_every": 2})
    _run(cfg, tmp_path)
    run = load_run(tmp_path / "run")
    assert run.config["name"] == "t" and run.model["fingerprint"]
    df = run.to_pandas()
    assert list(df.columns[: len(IDENTITY) - 2]) == [c for c in IDENTITY if c in df.columns][:-2]
    assert len(df) == len(run.rows) and set(df["kind"]) >= {"summary", "general", "diagnostics"}
    metrics = [c for c in df.columns if c not in IDENTITY and "." in c]
    assert "efficacy.prob_compare" in metrics and "heldout.prob_compare" in metrics
    assert [r["step"] for r in run.select(kind="general")] == [0, 2, 3]


def test_the_unedited_model_is_measured_once_for_all_jobs(tmp_path, monkeypatch) -> None:
    import editrisk.evaluation.metrics as metrics

    calls: list[int] = []
    real = metrics.edit_scores  # one scoring pass per measurement of edit metrics
    monkeypatch.setattr(
        metrics, "edit_scores", lambda h, reqs, bs=32: calls.append(len(reqs)) or real(h, reqs, bs)
    )
    methods = [{"name": "spy-engine", "label": "a"}, {"name": "spy-engine", "label": "b"}]
    cfg = _cfg(tmp_path, {"name": "batch"}, {"immediate": False}, methods=methods)
    rows = _run(cfg, tmp_path)
    assert calls == [5, 5, 5]  # unedited once, then each job's final evaluation
    unedited = [r for r in rows if r["schedule"] == "unedited" and r["kind"] == "summary"]
    assert [r["method"] for r in unedited] == ["a", "b"]
    assert unedited[0]["efficacy.prob_margin"] == unedited[1]["efficacy.prob_margin"]
