"""The engine on the real model (slow tier): a short sequential study of known facts."""

from __future__ import annotations

import pytest

from editrisk.engine import load_run, resolve, run_study


@pytest.mark.slow
def test_real_model_study_edits_known_facts(tmp_path) -> None:
    cfg = resolve(
        {
            "name": "real",
            "model": "smollm2-135m",
            "data": {"n_edits": 3, "n_heldout": 10, "order": "round_robin"},
            "protocol": {"name": "sequential"},
            "schedule": {"immediate": True, "final": True, "general_every": 3},
            "evaluation": {"perplexity_sentences": 4},
            "grid": {"alpha": [0.0, 1.0]},
            "methods": [{"name": "memit", "hparams": {"prefixes": [], "steps": 10}}],
        }
    )
    run_study(cfg, tmp_path / "run")
    rows = load_run(tmp_path / "run").rows
    summary = {(r["schedule"], r["step"]): r for r in rows if r["kind"] == "summary"}
    before = summary[("unedited", 0)]
    assert before["efficacy.prob_compare"] <= 1 / 3  # known facts: the new target mostly loses
    immediate = [summary[("immediate", s)]["efficacy.prob_compare"] for s in (1, 2, 3)]
    assert sum(immediate) / 3 >= 2 / 3  # the edits take
    general = {r["step"]: r for r in rows if r["kind"] == "general"}
    assert general[0]["heldout.prob_compare"] == 1.0  # held-out facts are known ones
    assert 1 < general[0]["perplexity"] < 100 and general[3]["perplexity"] > 1
    diag = [r for r in rows if r["kind"] == "diagnostics"]
    assert {r["param_layer"] for r in diag} == {2, 3, 4, 5, 6}  # MEMIT's default layers
