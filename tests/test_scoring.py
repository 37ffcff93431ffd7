"""Batched target scoring equals a one-at-a-time computation by hand; requests validate."""

from __future__ import annotations

import pytest
import torch

from editrisk import InputError
from editrisk.evaluation import score_targets
from editrisk.requests import EditRequest, Neighbour, validate_requests
from editrisk.tokens import target_ids


@pytest.mark.parametrize("batch_size", [2, 32])
def test_batched_scores_equal_single_hand_computation(tiny, batch_size) -> None:
    """Prompts of different lengths, each with several targets of one or more tokens (they
    continue from the prompt's cached keys and values), a repeated pair, small batches."""
    pairs = [
        ("The capital of France is", "Paris"),
        ("Rome is in", "Italy and Europe"),
        ("The capital of France is", "the city of Lyon"),
        ("Rome is in", "Asia"),
        ("A", "long continuation of several words"),
        ("The capital of France is", "Paris"),
        ("Rome is in", "Italy"),
    ]
    scores = score_targets(tiny, pairs, batch_size=batch_size)
    assert len(scores) == len(pairs)
    tok = tiny.tokenizer
    for (prompt, target), s in zip(pairs, scores):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = target_ids(tok, target)
        logits = tiny.model(input_ids=torch.tensor([p + t])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        expected = sum(float(logp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
        assert s.n_tokens == len(t)
        assert s.logprob == pytest.approx(expected, abs=1e-4)
        correct = [int(logits[len(p) - 1 + j].argmax()) == t[j] for j in range(len(t))]
        assert list(s.token_correct) == correct


def test_request_validation() -> None:
    ok = EditRequest(
        "France",
        "The capital of {} is",
        "Rome",
        "Paris",
        neighbours=(Neighbour("The capital of Italy is", "Rome"),),
    )
    assert ok.rendered == "The capital of France is"
    assert EditRequest.from_dict(ok.to_dict()) == ok
    with pytest.raises(InputError, match="prompt"):
        EditRequest("France", "The capital of France is", "Rome")
    with pytest.raises(InputError, match="target_new"):
        EditRequest("France", "The capital of {} is", " ")
    with pytest.raises(InputError, match="nothing to edit"):
        EditRequest("France", "The capital of {} is", "Paris", "Paris")
    with pytest.raises(InputError, match="reqs.jsonl, record 3, field 'subject'"):
        EditRequest.from_dict({"prompt": "{} is", "target_new": "x"}, file="reqs.jsonl", record=3)
    with pytest.raises(InputError, match="field 'paraphrases'"):
        EditRequest.from_dict(
            {"subject": "a", "prompt": "{} is", "target_new": "x", "paraphrases": "not a list"}
        )
    with pytest.raises(InputError, match="duplicated id 'a'"):
        validate_requests(
            [EditRequest("A", "{} is", "x", id="a"), EditRequest("B", "{} is", "y", id="a")]
        )
