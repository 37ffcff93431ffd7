"""Property-based fuzzing of the parsers of untrusted input (requests, delta files, study
configs): whatever they are given, they return a value or raise `EditriskError`, never
anything else (a TypeError, KeyError, UnicodeDecodeError or SafetensorError is a bug)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from editrisk.data.formats import load_requests
from editrisk.delta import Delta
from editrisk.engine import resolve
from editrisk.errors import EditriskError
from editrisk.requests import EditRequest
from editrisk.settings import read_config_file

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _only_editrisk_errors(call: Callable[[], Any]) -> None:
    with contextlib.suppress(EditriskError):
        call()


def _file(data: bytes, suffix: str) -> Path:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115
    f.write(data)
    f.close()
    return Path(f.name)


# -- requests -------------------------------------------------------------------------------
VALID = {"subject": "France", "prompt": "The capital of {} is", "target_new": "Rome",
         "target_true": "Paris", "paraphrases": ["France's capital is"],
         "neighbours": [{"prompt": "The capital of Peru is", "target": "Lima"}],
         "generation_prompts": ["France is"], "id": "fr", "relation": "capital",
         "extra": {"a": 1}}  # fmt: skip
field_values = (
    json_values
    | st.sampled_from(["{}", "{} {}", "", " ", "x"])
    | st.lists(st.fixed_dictionaries({"prompt": json_values, "target": json_values}), max_size=2)
)
requests = st.builds(  # a valid request with one field dropped and up to two changed
    lambda drop, changes: {**{k: v for k, v in VALID.items() if k not in drop}, **changes},
    st.sets(st.sampled_from(sorted(VALID)), max_size=1),
    st.dictionaries(st.sampled_from([*VALID, "bogus"]), field_values, max_size=2),
)


@FUZZ
@given(requests)
def test_request_parser_raises_only_editrisk_errors(record: dict[str, Any]) -> None:
    _only_editrisk_errors(lambda: EditRequest.from_dict(record, file="f.jsonl", record=0))


@FUZZ
@given(
    st.lists(requests | json_values, max_size=3).map(
        lambda rs: "".join(json.dumps(r) + "\n" for r in rs).encode()
    )
    | st.binary(max_size=200)
)
def test_request_files_raise_only_editrisk_errors(data: bytes) -> None:
    path = _file(data, ".jsonl")
    try:
        _only_editrisk_errors(lambda: load_requests(path))
    finally:
        path.unlink()


# -- delta files ----------------------------------------------------------------------------
def _delta_bytes() -> bytes:
    d = Delta({"h.1.w": torch.ones(4, 3)}, {"editor": "ft", "model_fingerprint": "abc"})
    path = _file(b"", ".safetensors")
    d.save(path)
    data = path.read_bytes()
    path.unlink()
    return data


GOOD_DELTA = _delta_bytes()
mutated = st.lists(
    st.tuples(st.integers(0, len(GOOD_DELTA) - 1), st.integers(0, 255)), min_size=1, max_size=4
).map(lambda flips: bytes(_flip(GOOD_DELTA, flips)))


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for at, value in flips:
        out[at] = value
    return out


keys = st.sampled_from(["dense::", "lowrank_left::", "lowrank_right::", "bogus::", ""]).flatmap(
    lambda kind: st.text("abc.01", min_size=0, max_size=6).map(lambda n: kind + n)
)
tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), min_size=1, max_size=2),
    st.sampled_from([torch.float32, torch.float16, torch.int64]),
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["editrisk.delta/1", "x"]),
        "metadata": st.sampled_from(["{}", "[", "[1]", '{"layers": 5}', '{"layers": {"a": "x"}}',
                                     '{"model_fingerprint": 1}', "null"]),
    },
)  # fmt: skip


@FUZZ
@given(st.binary(max_size=300) | mutated)
def test_delta_bytes_raise_only_editrisk_errors(data: bytes) -> None:
    path = _file(data, ".safetensors")
    try:
        _only_editrisk_errors(lambda: Delta.load(path))
    finally:
        path.unlink()


@FUZZ
@given(st.dictionaries(keys, tensors, max_size=3), metadata)
def test_delta_files_raise_only_editrisk_errors(parts: dict, meta: dict) -> None:
    path = _file(b"", ".safetensors")
    try:
        save_file(parts, str(path), metadata=meta)
        _only_editrisk_errors(lambda: Delta.load(path))
    finally:
        path.unlink()


# -- study configs --------------------------------------------------------------------------
SECTIONS = {
    "data": ["source", "n_edits", "n_heldout", "path", "relations", "order", "mqd"],
    "protocol": ["name", "batch_size"],
    "schedule": ["immediate", "final", "retention_every", "general_every"],
    "grid": ["layer", "alpha", "seed", "edit_set", "paths"],
    "evaluation": ["batch_size", "shifts", "perplexity_sentences"],
    "executor": ["kind", "workers", "num_cpus"],
    "diagnostics": ["spectral_iters", "condition"],
}
section = st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda s: st.tuples(
        st.just(s),
        st.dictionaries(st.sampled_from([*SECTIONS[s], "bogus"]), json_values, max_size=3),
    )
)
methods = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["ft", "rome", "memit", "nope"]) | json_values},
        optional={"label": st.text(max_size=12) | json_values,
                  "hparams": st.dictionaries(st.sampled_from(["layers", "steps", "lr", "prefixes",
                                                              "x"]), json_values, max_size=3)},
    ) | json_values,
    max_size=2,
)  # fmt: skip
configs = st.builds(
    lambda sections, top, ms: {"model": "tiny-gpt2", **dict(sections), **top, "methods": ms},
    st.lists(section, max_size=3),
    st.dictionaries(
        st.sampled_from(["name", "family", "model", "device", "dtype", "edit_sets",
                         "checkpoint_every", "bogus"]), json_values, max_size=3),
    methods,
)  # fmt: skip


@FUZZ
@given(configs | json_values)
def test_config_parser_raises_only_editrisk_errors(raw: Any) -> None:
    _only_editrisk_errors(lambda: resolve(raw, "fuzz.yaml"))


@FUZZ
@given(
    configs.map(lambda c: yaml.safe_dump(c).encode())
    | st.binary(max_size=200)
    | st.text(max_size=100).map(str.encode)
)
def test_config_files_raise_only_editrisk_errors(data: bytes) -> None:
    path = _file(data, ".yaml")
    try:
        _only_editrisk_errors(lambda: resolve(read_config_file(path), str(path)))
    finally:
        path.unlink()
