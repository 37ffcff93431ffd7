"""Language distribution shifts: deterministic, severity-monotone, and robustness arithmetic."""

from __future__ import annotations

import math

import pytest

from editrisk import EditriskError
from editrisk.data.worldfacts import build_worldfacts
from editrisk.evaluation.metrics import score_pairs
from editrisk.evaluation.shifts import (
    DISTRACTORS,
    PERTURBATIONS,
    SEVERITIES,
    edit_distance,
    effective_robustness,
    logit_fit,
    perturb,
    relative_robustness,
    shift_table,
)
from editrisk.requests import EditRequest


@pytest.fixture(scope="module")
def requests() -> list[EditRequest]:
    return build_worldfacts(None, seed=0, limit_per_relation=8)


def test_edit_distance_by_hand() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0


def test_deterministic_per_seed(requests) -> None:
    for r in requests:
        for kind in PERTURBATIONS:
            a = perturb(r.rendered, kind, 3, seed=1, paraphrases=r.paraphrases)
            assert a == perturb(r.rendered, kind, 3, seed=1, paraphrases=r.paraphrases)
    for kind in ("typo", "case", "noise", "prefix"):
        outs = {perturb(r.rendered, kind, 3, seed=s) for r in requests[:5] for s in range(4)}
        assert len(outs) > 5  # other seeds give other perturbations


def test_severity_monotone_in_edit_distance(requests) -> None:
    for r in requests:
        for kind in PERTURBATIONS:
            texts = [perturb(r.rendered, kind, s, 0, r.paraphrases) for s in (0, *SEVERITIES)]
            dists = [edit_distance(r.rendered, t) for t in texts]
            assert dists[0] == 0 and dists == sorted(dists), (kind, texts)
            assert dists[-1] > dists[1] or kind == "paraphrase", (kind, texts)
            assert dists[1] > 0


def test_perturbations_do_what_they_say() -> None:
    text = "The capital of France is"
    assert perturb(text, "case", 5).lower() == text.lower()
    assert "".join(c for c in perturb(text, "noise", 5) if c.isalnum()) == text.replace(" ", "")
    prefixed = perturb(text, "prefix", 2)
    assert prefixed.endswith(" " + text) and sum(s in prefixed for s in DISTRACTORS) == 2
    paras = ("France's capital is", "The capital city of France is")
    assert perturb(text, "paraphrase", 1, paraphrases=paras) == "The capital city of France is"
    assert perturb(text, "paraphrase", 5, paraphrases=paras) == "France's capital is"
    assert perturb(text, "paraphrase", 2) == text  # nothing to paraphrase with
    with pytest.raises(EditriskError, match="unknown perturbation"):
        perturb(text, "blur", 1)
    with pytest.raises(EditriskError, match="severity"):
        perturb(text, "typo", 6)


def test_shift_table_matches_direct_scoring(tiny, requests) -> None:
    reqs = requests[:3]
    rows = shift_table(tiny, reqs, kinds=["prefix", "typo"], severities=[2], seed=0)
    assert [(r["shift"], r["severity"]) for r in rows] == [("clean", 0), ("prefix", 2), ("typo", 2)]
    for row in rows:
        prompts = [
            perturb(r.rendered, row["shift"], row["severity"]) if row["severity"] else r.rendered
            for r in reqs
        ]
        hits = []
        for r, p in zip(reqs, prompts):
            true, new = score_pairs(tiny, [(p, r.target_true), (p, r.target_new)])
            hits.append(true.prob > new.prob)
        assert row["knowledge.prob_compare"] == pytest.approx(sum(hits) / 3)
    edit_rows = shift_table(tiny, reqs, kinds=["prefix"], severities=[2], wanted="new")
    assert edit_rows[0]["edit.prob_compare"] == pytest.approx(1 - rows[0]["knowledge.prob_compare"])


def test_relative_robustness() -> None:
    base = [{"shift": "typo", "severity": 1, "k": 0.5}, {"shift": "case", "severity": 1, "k": 0.9}]
    edit = [{"shift": "typo", "severity": 1, "k": 0.25}, {"shift": "case", "severity": 1, "k": 1.0}]
    rel = relative_robustness(edit, base, "k")
    assert [r["relative.k"] for r in rel] == pytest.approx([-0.25, 0.1])


def test_effective_robustness_against_logit_line() -> None:
    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    testbed = [(sig(x), sig(0.5 * x - 1)) for x in (-1.0, 0.0, 1.0, 2.0)]
    a, b = logit_fit(testbed)
    assert (a, b) == pytest.approx((0.5, -1.0))
    assert effective_robustness(sig(1.5), sig(-0.25), testbed) == pytest.approx(0.0, abs=1e-9)
    assert effective_robustness(sig(1.5), 0.5, testbed) == pytest.approx(0.5 - sig(-0.25))
    with pytest.raises(EditriskError, match="at least 2"):
        logit_fit([(0.5, 0.4)])
