"""Edit metrics against values computed by hand from the model's logits on tiny models."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from editrisk.evaluation.metrics import (
    CONVENTIONS,
    edit_generations,
    edit_metrics,
    edit_scores,
    gen_match,
    generation_metrics,
    ngram_entropy,
    request_detail,
    score_pairs,
    summarize,
    tfidf_similarity,
)
from editrisk.evaluation.scoring import score_targets
from editrisk.requests import QUESTION_KINDS, EditRequest, Neighbour, Question
from editrisk.tokens import target_ids

REQ = EditRequest(
    "France",
    "The capital of {} is",
    "Rome",
    "Paris",
    paraphrases=("France has its capital in", "The French capital is"),
    neighbours=(Neighbour("The capital of Spain is", "Madrid"),),
    generation_prompts=("France is",),
    id="fr",
    extra={"reference": "Rome is the capital of Italy."},
)


@torch.no_grad()
def hand(h, prompt: str, target: str) -> tuple[float, float]:
    """(per-token probability, token accuracy) straight from one unbatched forward."""
    p = h.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = target_ids(h.tokenizer, target)
    logits = h.model(input_ids=torch.tensor([p + t])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    rows = [logp[len(p) - 1 + j] for j in range(len(t))]
    mean = sum(float(r[t[j]]) for j, r in enumerate(rows)) / len(t)
    acc = sum(int(r.argmax()) == t[j] for j, r in enumerate(rows)) / len(t)
    return math.exp(mean), acc


def test_edit_metrics_match_hand_computation(tiny) -> None:
    (row,) = edit_metrics(tiny, [REQ], batch_size=3)
    new, true = hand(tiny, REQ.rendered, "Rome"), hand(tiny, REQ.rendered, "Paris")
    assert row["efficacy.prob_compare"] == float(new[0] > true[0])
    assert row["efficacy.prob_margin"] == pytest.approx(new[0] - true[0], abs=1e-5)
    assert row["efficacy.token_acc"] == pytest.approx(new[1])
    para = [(hand(tiny, p, "Rome"), hand(tiny, p, "Paris")) for p in REQ.paraphrases]
    assert row["generalization.prob_compare"] == pytest.approx(
        sum(n[0] > t[0] for n, t in para) / 2
    )
    assert row["generalization.prob_margin"] == pytest.approx(
        sum(n[0] - t[0] for n, t in para) / 2, abs=1e-5
    )
    assert row["generalization.token_acc"] == pytest.approx(sum(n[1] for n, _ in para) / 2)
    keep, moved = (
        hand(tiny, "The capital of Spain is", "Madrid"),
        hand(tiny, "The capital of Spain is", "Rome"),
    )
    assert row["specificity.prob_compare"] == float(keep[0] > moved[0])
    assert row["specificity.prob_margin"] == pytest.approx(keep[0] - moved[0], abs=1e-5)
    assert row["specificity.token_acc"] == pytest.approx(keep[1])


def test_questions_are_scored_in_every_convention(tiny) -> None:
    """Each question kind compares its target with its unwanted answer like the edit metrics
    do; a question without an unwanted answer has token_acc and gen_match only; kinds not
    selected are neither scored nor reported."""
    qs = (
        Question("portability", "The currency of the country whose capital is Rome is the",
                 "euro", "franc"),
        Question("portability", "Rome lies in", "Europe"),
        Question("reverse", "Rome is the capital of", "France", "Italy"),
        Question("subject_other", "France is a country in", "Europe", "Asia"),
    )  # fmt: skip
    req = dataclasses.replace(REQ, questions=qs)
    gens = edit_generations(tiny, [req], max_new_tokens=4)
    kinds = QUESTION_KINDS
    (row,) = edit_metrics(tiny, [req], conventions=CONVENTIONS, generations=gens, questions=kinds)
    for kind, items in (("portability", qs[:2]), ("reverse", qs[2:3]), ("subject_other", qs[3:])):
        wanted = [hand(tiny, q.prompt, q.target) for q in items]
        unwanted = [hand(tiny, q.prompt, q.unwanted) for q in items if q.unwanted]
        assert row[f"{kind}.prob_compare"] == float(wanted[0][0] > unwanted[0][0])
        assert row[f"{kind}.prob_margin"] == pytest.approx(wanted[0][0] - unwanted[0][0], abs=1e-5)
        assert row[f"{kind}.token_acc"] == pytest.approx(sum(w[1] for w in wanted) / len(items))
        said = [gen_match(gens[q.prompt], q.target, q.unwanted) for q in items]
        assert row[f"{kind}.gen_match"] == sum(said) / len(items)
    (only,) = edit_metrics(tiny, [req], questions=["reverse"])
    assert "portability.token_acc" not in only and "reverse.prob_compare" in only
    assert not any(k.startswith(("portability", "subject_other")) for k in only)
    (default,) = edit_metrics(tiny, [req])  # questions are opt-in
    assert not any(k.startswith(QUESTION_KINDS) for k in default)


def test_missing_parts_give_none_not_zero(tiny) -> None:
    bare = EditRequest("Oslo", "{} lies in", "Peru", id="bare")
    (row,) = edit_metrics(tiny, [bare])
    assert row["efficacy.prob_compare"] is None and row["efficacy.prob_margin"] is None
    assert row["efficacy.token_acc"] is not None
    assert row["generalization.token_acc"] is None and row["specificity.prob_compare"] is None


def test_score_pairs_reorders_and_dedupes_exactly(tiny) -> None:
    pairs = [("The capital of Spain is", "Madrid"), ("A", "long answer here"), ("A", "b")] * 2
    direct = score_targets(tiny, pairs, batch_size=1)
    got = score_pairs(tiny, pairs, batch_size=2)
    assert len(got) == len(pairs)
    for a, b in zip(got, direct):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.token_correct == b.token_correct and a.n_tokens == b.n_tokens


def test_summarize_averages_numbers_and_skips_none() -> None:
    rows = [{"id": "a", "x": 1.0, "y": None}, {"id": "b", "x": 0.0, "y": 0.5}]
    assert summarize(rows) == {"x": 0.5, "y": 0.5}


def test_ngram_entropy_by_hand() -> None:
    # "a b a b": bigrams ab, ba, ab -> H = H(2/3, 1/3); trigrams aba, bab -> H = 1 bit
    h2 = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert ngram_entropy("the the the the the") == 0.0
    assert ngram_entropy("one two three four five six") > ngram_entropy("one two one two one two")


def test_tfidf_similarity() -> None:
    sims = tfidf_similarity(
        ["Rome is in Italy", "completely unrelated words"], ["Rome is in Italy", "Rome Italy"]
    )
    assert sims[0] == pytest.approx(1.0) and sims[1] == pytest.approx(0.0)


def test_generation_metrics_use_the_model(tiny) -> None:
    (row,) = generation_metrics(tiny, [REQ], max_new_tokens=6)
    text = "France is" + tiny.generate("France is", 6)
    assert row["fluency.ngram_entropy"] == pytest.approx(ngram_entropy(text))
    assert 0.0 <= row["consistency.tfidf"] <= 1.0


def test_request_detail_matches_unbatched_scores_and_generations(tiny) -> None:
    """The drill-down's numbers: per-token probabilities as one unbatched forward computes
    them, and left-padded batched greedy text equal to one prompt at a time."""
    short = EditRequest("Peru", "{} is in", "Asia", None, id="pe")
    reqs = [REQ, short]
    detail = request_detail(tiny, reqs, batch_size=2, max_new_tokens=5)
    assert detail[0]["prompt"] == "The capital of France is"
    assert (detail[0]["target_new"], detail[0]["target_true"]) == ("Rome", "Paris")
    assert detail[0]["p_new.per_token"] == pytest.approx(
        hand(tiny, REQ.rendered, "Rome")[0], rel=1e-5
    )
    assert detail[0]["p_true.per_token"] == pytest.approx(
        hand(tiny, REQ.rendered, "Paris")[0], rel=1e-5
    )
    assert detail[1]["p_true.per_token"] is None
    for r, d in zip(reqs, detail):
        assert d["generation.greedy"] == tiny.generate(r.rendered, 5)
    scored = edit_scores(tiny, reqs)  # the scores edit_metrics made: no second scoring pass
    for a, b in zip(request_detail(tiny, reqs, 2, 5, scores=scored), detail):
        assert a["generation.greedy"] == b["generation.greedy"]
        assert a["p_new.per_token"] == pytest.approx(b["p_new.per_token"], rel=1e-5)
