"""MQD builder: question counts, answer keys and the diversity/length controls."""

from __future__ import annotations

import string
from collections import Counter

import pytest

from editrisk import EditriskError
from editrisk.data.mqd import build_mqd
from editrisk.data.worldfacts import build_worldfacts
from editrisk.models.tiny import tiny_tokenizer
from editrisk.requests import EditRequest, validate_requests
from editrisk.tokens import target_ids


@pytest.fixture(scope="module")
def facts() -> list[EditRequest]:
    return build_worldfacts(None, seed=0, relations=["capital", "language"], limit_per_relation=20)


def test_counts_and_ids(facts) -> None:
    qs = validate_requests(build_mqd(facts, k=4, seed=1))
    assert len(qs) == 3 * len(facts)
    assert Counter(q.extra["question_type"] for q in qs) == {"tf": 40, "mcq": 40, "gen": 40}
    assert len(build_mqd(facts, question_types=["mcq"])) == len(facts)
    assert [q.to_dict() for q in build_mqd(facts, seed=1)] == [q.to_dict() for q in qs]


def test_answer_keys(facts) -> None:
    by_src = {f.id: f for f in facts}
    tf_new = Counter()
    for q in build_mqd(facts, k=4, seed=1):
        f = by_src[q.extra["source_id"]]
        assert q.subject == f.subject and f.subject in q.rendered
        kind = q.extra["question_type"]
        assert q.extra["answer_key"] == {"edited": q.target_new, "unedited": q.target_true}
        if kind == "tf":
            claim = q.extra["claim"]
            assert claim in (f.target_new, f.target_true) and q.rendered.endswith(
                f"{claim}. Answer:"
            )
            assert q.target_new == ("True" if claim == f.target_new else "False")
            assert {q.target_new, q.target_true} == {"True", "False"}
            assert all(n.target == "True" for n in q.neighbours)
            tf_new[q.target_new] += 1
        elif kind == "mcq":
            opts = q.extra["options"]
            assert len(opts) == 4 and len(set(opts)) == 4
            assert opts[string.ascii_uppercase.index(q.target_new)] == f.target_new
            assert opts[string.ascii_uppercase.index(q.target_true)] == f.target_true
            assert all(
                f"{string.ascii_uppercase[i]}. {o}" in q.rendered for i, o in enumerate(opts)
            )
        else:
            assert (q.target_new, q.target_true, q.prompt) == (
                f.target_new,
                f.target_true,
                f.prompt,
            )
    assert tf_new["True"] > 5 and tf_new["False"] > 5  # both keys occur


def test_diversity_control(facts) -> None:
    qs = build_mqd(facts, question_types=["gen"], max_distinct_targets=3, seed=0)
    for rel in ("capital", "language"):
        targets = {q.target_new for q in qs if q.relation == rel}
        assert 1 <= len(targets) <= 3
    assert all(q.target_new != q.target_true for q in qs)


def test_length_control(facts) -> None:
    tok = tiny_tokenizer()
    qs = build_mqd(facts, question_types=["gen"], target_tokens=(1, 2), tokenizer=tok)
    assert qs and all(1 <= len(target_ids(tok, q.target_new)) <= 2 for q in qs)
    with pytest.raises(EditriskError, match="tokenizer"):
        build_mqd(facts, target_tokens=(1, 2))


def test_bad_arguments(facts) -> None:
    with pytest.raises(EditriskError, match="question type"):
        build_mqd(facts, question_types=["essay"])
    with pytest.raises(EditriskError, match="target_true"):
        build_mqd([EditRequest("Oslo", "{} is in", "Peru")])
