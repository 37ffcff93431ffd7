"""Loaders: CounterFact, zsRE and editrisk JSONL round-trip; every malformed input is named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from editrisk import InputError
from editrisk.data import detect_format, load_counterfact, load_requests, load_zsre
from editrisk.data.jsonl import read_jsonl, write_jsonl
from editrisk.requests import EditRequest, Neighbour

CF = {
    "case_id": 7,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": ["Danielle Darrieux grew up speaking"],
    "neighborhood_prompts": ["The mother tongue of Thomas Joannes Stieltjes is"],
    "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}
ZSRE = {
    "subject": "Watts Humphrey",
    "src": "What university did Watts Humphrey attend?",
    "alt": "University of Michigan",
    "answers": ["Illinois Institute of Technology"],
    "rephrase": "What university did Watts Humphrey take part in?",
    "loc": "nq question: who played desmond doss father in hacksaw ridge",
    "loc_ans": "Hugo Weaving",
}


def _write(tmp_path: Path, name: str, records: list, jsonl: bool = False) -> Path:
    path = tmp_path / name
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


def test_counterfact_maps_every_field(tmp_path: Path) -> None:
    (r,) = load_counterfact(_write(tmp_path, "cf.json", [CF]))
    assert r.rendered == "The mother tongue of Danielle Darrieux is"
    assert (r.target_new, r.target_true, r.id, r.relation) == ("English", "French", "7", "P103")
    assert r.paraphrases == ("Danielle Darrieux grew up speaking",)
    assert r.neighbours == (
        Neighbour("The mother tongue of Thomas Joannes Stieltjes is", "French"),
    )
    assert r.extra["attribute_prompts"] == ["J. R. R. Tolkien is a native speaker of"]
    assert r.generation_prompts == ("Danielle Darrieux's mother tongue is",)


def test_counterfact_jsonl_streams_same_requests(tmp_path: Path) -> None:
    second = copy.deepcopy(CF) | {"case_id": 8}
    a = load_counterfact(_write(tmp_path, "a.json", [CF, second]))
    b = load_counterfact(_write(tmp_path, "b.jsonl", [CF, second], jsonl=True))
    assert a == b and [r.id for r in a] == ["7", "8"]
    assert load_counterfact(tmp_path / "a.json", limit=1) == a[:1]


def test_zsre_maps_every_field(tmp_path: Path) -> None:
    (r,) = load_zsre(_write(tmp_path, "z.json", [ZSRE]))
    assert r.prompt == "What university did {} attend?"
    assert r.rendered == ZSRE["src"]
    assert (r.target_new, r.target_true) == ("University of Michigan", ZSRE["answers"][0])
    assert r.paraphrases == (ZSRE["rephrase"],)
    assert r.neighbours == (Neighbour(ZSRE["loc"], "Hugo Weaving"),)
    assert r.id == "0"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    reqs = [
        EditRequest(
            "France",
            "The capital of {} is",
            "Rome",
            "Paris",
            ("Paris is in",),
            (Neighbour("The capital of Spain is", "Madrid"),),
            ("France is",),
            "a",
            "capital",
            {"alternatives": ["Berlin"]},
        ),
        EditRequest("Oslo", "{} is in", "Peru", id="b"),
    ]
    path = write_jsonl(reqs, tmp_path / "sub" / "r.jsonl")
    back = read_jsonl(path)
    assert back == reqs and back[0].extra == {"alternatives": ["Berlin"]}
    assert detect_format(path) == "editrisk" and load_requests(path) == reqs


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, "c.json", [CF])) == "counterfact"
    assert detect_format(_write(tmp_path, "z.jsonl", [ZSRE], jsonl=True)) == "zsre"


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


RW = "requested_rewrite"


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ((RW,), KeyError, RW, "missing"),
        ((RW, "subject"), KeyError, f"{RW}.subject", "missing"),
        ((RW, "subject"), 3, f"{RW}.subject", "expected str"),
        ((RW, "prompt"), "no placeholder here", f"{RW}.prompt", "exactly once"),
        ((RW, "target_new"), {"id": "Q1"}, f"{RW}.target_new.str", "missing"),
        ((RW, "target_true"), ["French"], f"{RW}.target_true", "expected dict or str"),
        ((RW, "target_new"), {"str": "French"}, "target_new", "equals target_true"),
        (("paraphrase_prompts",), "not a list", "paraphrase_prompts", "expected list"),
        (("neighborhood_prompts",), [1, 2], "neighborhood_prompts", "list of strings"),
    ],
)
def test_counterfact_malformed(tmp_path: Path, path, value, field, message) -> None:
    file = _write(tmp_path, "cf.json", [CF, _broken(CF, path, value) | {"case_id": 9}])
    with pytest.raises(InputError, match=message) as err:
        load_counterfact(file)
    assert (err.value.file, err.value.record, err.value.field) == (str(file), 1, field)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("src", KeyError, "missing"),
        ("alt", KeyError, "missing"),
        ("alt", "", "empty"),
        ("subject", "Somebody Else", "does not occur"),
        ("answers", [3], "list of strings"),
        ("rephrase", 5, "expected str"),
        ("loc_ans", KeyError, "missing"),
    ],
)
def test_zsre_malformed(tmp_path: Path, key, value, message) -> None:
    file = _write(tmp_path, "z.json", [ZSRE, _broken(ZSRE, (key,), value)])
    with pytest.raises(InputError, match=message) as err:
        load_zsre(file)
    assert (err.value.record, err.value.field) == (1, key)


def test_bad_json_and_non_objects_are_named(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = json.dumps(EditRequest("Oslo", "{} is in", "Peru").to_dict())
    path.write_text(good + "\n\n{not json\n")
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_jsonl(path)
    assert err.value.record == 1 and err.value.file == str(path)
    path.write_text(good + "\n[1, 2]\n")
    with pytest.raises(InputError, match="JSON object") as err:
        read_jsonl(path)
    assert err.value.record == 1
    arr = tmp_path / "cf.json"
    arr.write_text("[{]")
    with pytest.raises(InputError, match="not valid JSON"):
        load_counterfact(arr)
    with pytest.raises(InputError, match="file not found"):
        load_zsre(tmp_path / "missing.json")


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    file = _write(tmp_path, "cf.json", [CF, CF])
    with pytest.raises(InputError, match="duplicated id") as err:
        load_counterfact(file)
    assert (err.value.record, err.value.field) == (1, "id")
