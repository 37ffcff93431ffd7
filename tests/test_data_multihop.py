"""MQuAKE and RippleEdits loaders on samples written here (no download), malformed records named
by file, record and field; requests carry questions and aliases through editrisk's JSONL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from editrisk import InputError
from editrisk.data import detect_format, load_mquake, load_requests, load_rippleedits
from editrisk.data.jsonl import read_jsonl, write_jsonl
from editrisk.requests import EditRequest, Question

MQ = {
    "case_id": 1,
    "requested_rewrite": [
        {
            "prompt": "{} is a citizen of",
            "relation_id": "P27",
            "target_new": {"str": "Croatia", "id": "Q224"},
            "target_true": {"str": "United States of America", "id": "Q30"},
            "subject": "Ellie Kemper",
            "question": "What is the country of citizenship of Ellie Kemper?",
        },
        {
            "prompt": "The name of the current head of state in {} is",
            "relation_id": "P35",
            "target_new": {"str": "Kolinda Grabar-Kitarović", "id": "Q11"},
            "target_true": {"str": "Zoran Milanović", "id": "Q12"},
            "subject": "Croatia",
        },
    ],
    "questions": [
        "Who is the head of state of the country where Ellie Kemper holds citizenship?",
        "What is the name of the head of state of Ellie Kemper's country?",
    ],
    "answer": "Joe Biden",
    "answer_alias": ["Biden", "Joseph Biden"],
    "new_answer": "Kolinda Grabar-Kitarović",
    "new_answer_alias": ["Kolinda Grabar Kitarovic"],
    "single_hops": [],
    "new_single_hops": [],
}

QUERY = {
    "prompt": "The name of the mother of Leonardo DiCaprio is",
    "answers": [{"value": "Irmelin DiCaprio", "aliases": ["Irmelin Indenbirken"]}],
    "query_type": "regular",
}
RE = {
    "example_type": "popular",
    "edit": {
        "prompt": "The name of the country of citizenship of Leonardo DiCaprio is Syria.",
        "subject_id": "Q38111",
        "relation": "COUNTRY_OF_CITIZENSHIP",
        "target_id": "Q858",
        "original_fact": {
            "prompt": "The name of the country of citizenship of Leonardo DiCaprio is United "
            "States of America.",
            "relation": "COUNTRY_OF_CITIZENSHIP",
        },
    },
    "Relation_Specifity": [{"test_queries": [QUERY], "test_condition": "OR"}],
    "Logical_Generalization": [],
    "Subject_Aliasing": [
        {
            "test_queries": [
                {
                    "prompt": "The name of the country of citizenship of Leo DiCaprio is",
                    "answers": [{"value": "Syria", "aliases": ["Syrian Arab Republic"]}],
                }
            ]
        }
    ],
    "Compositionality_I": [
        {
            "test_queries": [
                {
                    "prompt": "The name of the capital city of the country of citizenship of "
                    "Leonardo DiCaprio is",
                    "answers": [{"value": "Damascus", "aliases": []}],
                }
            ],
            "condition_queries": [{"prompt": "The capital of Syria is"}],
        }
    ],
    "Compositionality_II": [],
    "Forgetfulness": [],
}

HOLDS = {
    "prompt": "Leonardo DiCaprio holds Syria.",
    "relation": "HOLDS",
    "original_fact": {"prompt": "Leonardo DiCaprio holds Peru."},
}


def _write(tmp_path: Path, name: str, records: list) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _broken(d: dict, path: tuple, value: object) -> dict:
    d = copy.deepcopy(d)
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


def test_mquake_case_becomes_requests_with_multihop_questions(tmp_path: Path) -> None:
    file = _write(tmp_path, "MQuAKE-CF-3k.json", [MQ])
    first, last = load_mquake(file)
    assert detect_format(file) == "mquake" and load_requests(file) == [first, last]
    assert (first.id, first.rendered) == ("1/0", "Ellie Kemper is a citizen of")
    assert (first.target_new, first.target_true, first.relation) == (
        "Croatia",
        "United States of America",
        "P27",
    )
    assert first.questions == () and first.extra == {"case": "1", "case_edits": 2}
    assert last.questions == tuple(
        Question("portability", q, "Kolinda Grabar-Kitarović", "Joe Biden") for q in MQ["questions"]
    )
    assert last.forms("Joe Biden") == ("Joe Biden", "Biden", "Joseph Biden")
    assert last.forms("Kolinda Grabar-Kitarović")[1] == "Kolinda Grabar Kitarovic"
    assert load_mquake(file, limit=1) == [first]


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (("requested_rewrite",), [], "requested_rewrite", "no rewrite"),
        (("requested_rewrite",), {"prompt": "x"}, "requested_rewrite", "expected list"),
        (("requested_rewrite", 1), "text", "requested_rewrite[1]", "JSON object"),
        (("requested_rewrite", 1, "prompt"), "no slot", "requested_rewrite[1].prompt", "once"),
        (
            ("requested_rewrite", 0, "target_new"),
            {},
            "requested_rewrite[0].target_new.str",
            "missing",
        ),
        (("new_answer",), KeyError, "new_answer", "missing"),
        (("questions",), [1], "questions", "list of strings"),
        (("answer_alias",), "Biden", "answer_alias", "expected list"),
    ],
)
def test_mquake_malformed(tmp_path: Path, path, value, field, message) -> None:
    file = _write(tmp_path, "mq.json", [MQ, _broken(MQ, path, value) | {"case_id": 2}])
    with pytest.raises(InputError, match=message) as err:
        load_mquake(file)
    assert (err.value.file, err.value.record, err.value.field) == (str(file), 1, field)


def test_rippleedits_record_becomes_a_request_with_its_criteria(tmp_path: Path) -> None:
    file = _write(tmp_path, "popular.json", [RE])
    (r,) = load_rippleedits(file)
    assert detect_format(file) == "rippleedits" and load_requests(file) == [r]
    assert (r.subject, r.prompt) == (
        "Leonardo DiCaprio",
        "The name of the country of citizenship of {} is",
    )
    assert (r.target_new, r.target_true) == ("Syria", "United States of America")
    assert r.paraphrases == ("The name of the country of citizenship of Leo DiCaprio is",)
    assert r.questions == (
        Question(
            "portability", RE["Compositionality_I"][0]["test_queries"][0]["prompt"], "Damascus"
        ),
        Question("subject_other", QUERY["prompt"], "Irmelin DiCaprio"),
    )
    assert r.forms("Irmelin DiCaprio") == ("Irmelin DiCaprio", "Irmelin Indenbirken")
    assert r.extra == {"example_type": "popular"}


def test_rippleedits_objects_sharing_words_and_a_given_subject(tmp_path: Path) -> None:
    rec = copy.deepcopy(RE)
    rec["edit"]["prompt"] = "The name of the country of citizenship of Leonardo DiCaprio is United "
    rec["edit"]["prompt"] += "Kingdom."
    rec["edit"]["relation"] = "CITIZENSHIP"  # the relation's words are not in the prompt
    rec["edit"]["subject"] = "Leonardo DiCaprio"
    (r,) = load_rippleedits(_write(tmp_path, "r.json", [rec]))
    assert (r.target_new, r.target_true) == ("United Kingdom", "United States of America")
    assert r.subject == "Leonardo DiCaprio"


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (("edit",), KeyError, "edit", "missing"),
        (("edit", "original_fact"), KeyError, "edit", "needs original_fact"),
        (("edit", "prompt"), 5, "edit.prompt", "expected str"),
        (("edit", "original_fact", "prompt"), RE["edit"]["prompt"], "edit.prompt", "differ"),
        (("edit",), HOLDS, "edit.prompt", "give edit.subject"),
        (
            ("Relation_Specifity", 0, "test_queries", 0, "answers"),
            [],
            "Relation_Specifity[0].test_queries[0].answers",
            "no answer",
        ),
        (
            ("Relation_Specifity", 0, "test_queries", 0, "answers", 0, "value"),
            None,
            "Relation_Specifity[0].test_queries[0].answers[0].value",
            "expected str",
        ),
        (("Compositionality_I", 0), "x", "Compositionality_I[0]", "JSON object"),
        (("Forgetfulness",), {}, "Forgetfulness", "expected list"),
    ],
)
def test_rippleedits_malformed(tmp_path: Path, path, value, field, message) -> None:
    file = _write(tmp_path, "re.json", [RE, _broken(RE, path, value)])
    with pytest.raises(InputError, match=message) as err:
        load_rippleedits(file)
    assert (err.value.file, err.value.record, err.value.field) == (str(file), 1, field)


def test_questions_and_aliases_round_trip_and_are_checked(tmp_path: Path) -> None:
    reqs = load_mquake(_write(tmp_path, "mq.json", [MQ]))
    path = write_jsonl(reqs, tmp_path / "r.jsonl")
    assert read_jsonl(path) == reqs and read_jsonl(path)[1].aliases == reqs[1].aliases
    base = {"subject": "Oslo", "prompt": "{} is in", "target_new": "Peru"}
    for bad, field in [
        ({"questions": [{"kind": "hop", "prompt": "p", "target": "t"}]}, "questions"),
        ({"questions": [{"kind": "reverse", "prompt": "p"}]}, "questions"),
        ({"questions": [{"kind": "reverse", "prompt": "p", "target": "t", "x": 1}]}, "questions"),
        (
            {"questions": [{"kind": "reverse", "prompt": "p", "target": "t", "unwanted": ""}]},
            "questions",
        ),
        ({"aliases": {"Peru": "Perú"}}, "aliases"),
    ]:
        with pytest.raises(InputError) as err:
            EditRequest.from_dict(base | bad, file="f", record=3)
        assert (err.value.record, err.value.field) == (3, field)
