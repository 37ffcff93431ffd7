"""Protocol semantics (single / batch / sequential), schedule labels on every row, per-step
diagnostics against numpy, checkpoints, and D4S memory that does not grow with steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editrisk import EditriskError
from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.editors.base import Editor, HParams, register
from editrisk.models import load_model
from editrisk.protocols import Protocol, Schedule, run_method, step_diagnostics
from editrisk.protocols.checkpoint import latest_checkpoint, save_checkpoint
from editrisk.protocols.config import resolve_config
from editrisk.requests import EditRequest
from editrisk.runs import RunDir

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
    """Records the weight it sees at every call; returns a fixed update per request."""

    name = "spy-protocols"
    hparams_cls = SpyParams
    seen: list[torch.Tensor] = []

    def edit(self, model, requests):
        p = model.arch.weight_name("mlp_out", 1)
        w = dict(model.model.named_parameters())[p]
        Spy.seen.append(w.detach().clone())
        return Delta({p: torch.full_like(w, 0.01) * len(requests)})


def _cfg(protocol: dict, schedule: dict, **extra) -> dict:
    return resolve_config(
        {
            "name": "t",
            "model": "tiny-gpt2",
            "protocol": protocol,
            "schedule": schedule,
            "evaluation": {"perplexity_sentences": 4, "batch_size": 8},
            "diagnostics": {"spectral_iters": 4},
            "methods": ["spy-protocols"],
            **extra,
        }
    )


def _run(h, cfg, tmp_path, reqs=REQS, heldout=REQS[:2]):
    Spy.seen.clear()
    rd = RunDir(tmp_path / "run")
    rd.start(cfg)
    run_method(h, cfg["methods"][0], reqs, heldout, cfg, rd)
    return rd.results.rows()


def _weights(h):
    return {k: v.detach().clone() for k, v in h.model.state_dict().items()}


def test_protocol_steps() -> None:
    seq = Protocol("sequential", 2).steps(REQS)
    assert [len(s.requests) for s in seq] == [2, 2, 1]
    assert [s.edits_before for s in seq] == [0, 2, 4] and seq[-1].edits_after == 5
    assert [len(s.requests) for s in Protocol("batch").steps(REQS)] == [5]
    single = Protocol("single").steps(REQS)
    assert len(single) == 5 and all(s.edits_before == 0 for s in single)
    with pytest.raises(EditriskError, match="unknown protocol"):
        Protocol("parallel")


def test_schedule_labels_and_single_refuses_retention() -> None:
    s = Schedule(immediate=True, final=True, retention_every=2, general_every=3)
    assert s.due(0, 4) == ["general@3"]
    assert s.due(1, 4) == ["immediate"]
    assert s.due(2, 4) == ["immediate", "retention@2"]
    assert s.due(4, 4) == ["immediate", "retention@2", "general@3", "final"]
    with pytest.raises(EditriskError, match="single"):
        s.check(Protocol("single"))


def test_config_errors_name_the_key() -> None:
    with pytest.raises(EditriskError, match="schedule.every"):
        resolve_config({"schedule": {"every": 3}, "methods": ["rome"]})
    with pytest.raises(EditriskError, match="repeats label"):
        resolve_config({"methods": ["rome", "rome"]})
    with pytest.raises(EditriskError, match="no editor"):
        resolve_config({})


def test_single_edits_pristine_model_and_restores_it(tmp_path) -> None:
    h = load_model("tiny-gpt2")
    before = _weights(h)
    p = h.arch.weight_name("mlp_out", 1)
    rows = _run(h, _cfg({"name": "single"}, {"final": False, "retention_every": 0}), tmp_path)
    assert len(Spy.seen) == len(REQS)
    assert all(torch.equal(w, before[p]) for w in Spy.seen)
    after = _weights(h)
    assert all(torch.equal(after[k], before[k]) for k in before)
    diag = [r for r in rows if r["kind"] == "diagnostics"]
    assert all(r["cum.l1_sum"] == r["step.l1_sum"] for r in diag)  # never accumulates


def test_sequential_accumulates_and_rows_carry_schedule(tmp_path) -> None:
    h = load_model("tiny-gpt2")
    p = h.arch.weight_name("mlp_out", 1)
    w0 = h.model.state_dict()[p].clone()
    cfg = _cfg({"name": "sequential", "batch_size": 2}, {"retention_every": 2, "general_every": 2})
    rows = _run(h, cfg, tmp_path)
    assert [float((w - w0).mean()) for w in Spy.seen] == pytest.approx([0.0, 0.02, 0.04])
    assert torch.equal(h.model.state_dict()[p], w0)  # the runner restores the model
    for r in rows:
        assert r["protocol"] == "sequential" and r["batch_size"] == 2
        assert r["schedule"] in {"immediate", "final", "retention@2", "general@2"}
        assert isinstance(r["step"], int) and isinstance(r["edits"], int)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    ret = {
        r["step"]: r["n"] for r in rows if r["schedule"] == "retention@2" and r["kind"] == "summary"
    }
    assert ret == {2: 4, 3: 5}  # all edits so far, every 2 steps and after the last
    final = [r for r in rows if r["schedule"] == "final" and r["kind"] == "request"]
    assert sorted(r["id"] for r in final) == sorted(q.id for q in REQS)
    general_steps = sorted(r["step"] for r in rows if r["kind"] == "general")
    assert general_steps == [0, 2, 3]
    cum = [r["cum.l1_mean"] for r in rows if r["kind"] == "diagnostics"]
    assert cum == pytest.approx([0.02, 0.04, 0.05])


def test_batch_equals_one_combined_delta(tmp_path) -> None:
    h = load_model("tiny-llama")
    reqs = REQS[:3]
    torch.manual_seed(0)
    ref = get_editor("memit", D4S_FAST).edit(h, reqs)
    cfg = _cfg(
        {"name": "batch"},
        {"retention_every": 1},
        methods=[{"name": "memit", "hparams": D4S_FAST}],
        model="tiny-llama",
    )
    rd = RunDir(tmp_path / "run")
    rd.start(cfg)
    run_method(h, cfg["methods"][0], reqs, [], cfg, rd)
    ck = latest_checkpoint(tmp_path / "run" / "checkpoints" / "memit")
    assert ck is not None and ck.step == 1
    for name in ref.names:
        torch.testing.assert_close(ck.cumulative[name], ref.dense(name).float())


def test_diagnostics_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=gen)
    d = torch.randn(24, 40, generator=gen) * 0.1
    model = torch.nn.Linear(40, 24, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    (row,) = step_diagnostics(
        model, {"weight": d}, {"weight": d}, spectral_iters=200, condition=True
    )
    wn, dn = w.double().numpy(), d.double().numpy()
    assert row["weight.l1_sum"] == pytest.approx(np.abs(wn).sum(), rel=1e-5)
    assert row["weight.l1_mean"] == pytest.approx(np.abs(wn).mean(), rel=1e-5)
    assert row["weight.fro"] == pytest.approx(np.linalg.norm(wn), rel=1e-5)
    assert row["weight.spectral"] == pytest.approx(np.linalg.norm(wn, 2), rel=1e-4)
    assert row["weight.cond"] == pytest.approx(np.linalg.cond(wn), rel=1e-3)
    assert row["cum.spectral"] == pytest.approx(np.linalg.norm(dn, 2), rel=1e-4)
    assert row["step.l1_sum"] == pytest.approx(np.abs(dn).sum(), rel=1e-5)


def test_checkpoint_roundtrip_keeps_latest_only(tmp_path) -> None:
    cum = {"a.1.w": torch.randn(3, 4)}
    state = {"sum_kk.1": torch.randn(4, 4, dtype=torch.float64), "n_edits": torch.tensor(2)}
    save_checkpoint(tmp_path, 1, cum, state, {"seed": 0})
    save_checkpoint(tmp_path, 2, cum, state, {"seed": 0})
    (tmp_path / ".step-000003.tmp").mkdir()  # a checkpoint killed while being written
    ck = latest_checkpoint(tmp_path)
    assert ck is not None and ck.step == 2
    assert torch.equal(ck.cumulative["a.1.w"], cum["a.1.w"])
    assert torch.equal(ck.editor_state["sum_kk.1"], state["sum_kk.1"])
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002"]


def test_d4s_state_size_constant_over_steps(tmp_path) -> None:
    h = load_model("tiny-llama")
    editor = get_editor("d4s", D4S_FAST)
    sizes = []
    for i in range(4):
        delta = editor.edit(h, [REQS[i]])
        delta.apply(h.model, backup=False)
        sizes.append(sum(t.numel() * t.element_size() for t in editor.state_dict().values()))
    assert int(editor.state_dict()["n_edits"]) == 4
    assert len(set(sizes)) == 1 and sizes[0] > 0


def test_shipped_study_configs_resolve() -> None:
    from pathlib import Path

    from editrisk.protocols.config import load_config

    found = sorted((Path(__file__).parents[1] / "examples").glob("sequential_*.yaml"))
    assert len(found) >= 3
    for path in found:
        cfg = load_config(path)
        assert cfg["model"] == "smollm2-135m" and cfg["schedule"]["retention_every"] > 0
        assert {m["name"] for m in cfg["methods"]} == {"rome", "memit", "d4s", "alphaedit", "ft"}


def test_schedules_due_together_are_measured_once(tmp_path, monkeypatch) -> None:
    """`final` and `retention@k` after the last step measure the same model on the same
    requests: one measurement, recorded under both labels."""
    import editrisk.evaluation.metrics as metrics

    calls: list[int] = []
    real = metrics.edit_metrics
    monkeypatch.setattr(
        metrics, "edit_metrics", lambda h, reqs, bs=32: calls.append(len(reqs)) or real(h, reqs, bs)
    )
    h = load_model("tiny-gpt2")
    cfg = _cfg({"name": "sequential", "batch_size": 1}, {"retention_every": 5, "final": True})
    rows = _run(h, cfg, tmp_path)
    # immediate x 5, then one measurement of all 5 requests for retention@5 and final together
    assert calls == [1, 1, 1, 1, 1, 5]
    last = {r["schedule"]: r for r in rows if r["kind"] == "summary" and r["step"] == 5}
    assert set(last) == {"immediate", "retention@5", "final"}
    strip = {"schedule", "key"}
    a, b = ({k: v for k, v in last[s].items() if k not in strip} for s in ("final", "retention@5"))
    assert a == b and last["final"]["n"] == 5
