"""Leave-one-relation-out: the held-out relation is never read while tuning."""

from __future__ import annotations

import pytest

from editrisk.data.morefacts import build_morefacts
from editrisk.data.splits import by_relation, leave_one_relation_out, tune
from editrisk.errors import EditriskError
from editrisk.requests import EditRequest


def test_held_out_relation_is_never_read_while_tuning() -> None:
    relations = ["capital", "author", "sport", "developer"]
    # A candidate that is best on the held-out relation only: tuning must not see that.
    table = {("a", r): 1.0 for r in relations} | {("b", r): 0.0 for r in relations}
    table[("b", "sport")] = 100.0
    for fold in leave_one_relation_out(relations):
        read: list[str] = []

        def score(c: str, rel: str, read: list[str] = read) -> float:
            read.append(rel)
            return table[(c, rel)]

        chosen = tune(["a", "b"], fold, score)
        assert fold.held_out not in read and set(read) == set(fold.tuning)
        assert set(fold.tuning) | {fold.held_out} == set(relations)
        # with sport tuned on, b's 100 wins; held out, it cannot
        assert chosen == ("a" if fold.held_out == "sport" else "b")


def test_folds_and_grouping() -> None:
    assert [f.held_out for f in leave_one_relation_out(["b", "a", "b"])] == ["a", "b"]
    with pytest.raises(EditriskError, match="at least two"):
        leave_one_relation_out(["a"])
    reqs = build_morefacts(None, relations=["author", "sport"])
    groups = by_relation(reqs)
    assert list(groups) == ["author", "sport"]
    assert all(r.relation == rel for rel, rs in groups.items() for r in rs)
    with pytest.raises(EditriskError, match="no relation"):
        by_relation([EditRequest("X", "{} is", "a", "b", id="x")])


def test_morefacts_requests_are_counterfact_style() -> None:
    reqs = build_morefacts(None)
    assert {r.relation for r in reqs} >= {"subregion", "us_state", "developer", "author"}
    for r in reqs:
        assert r.target_new != r.target_true and r.target_new in r.extra["alternatives"]
        assert r.rendered.startswith(r.subject) or r.subject in r.rendered
        assert r.paraphrases and all(r.subject in p for p in r.paraphrases)
        assert all(n.prompt != r.rendered for n in r.neighbours)
    assert reqs == build_morefacts(None)  # deterministic
