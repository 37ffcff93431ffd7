"""An edit that misses says so: `editrisk.edit` records each request's outcome in the delta
(`delta.missed`) and warns; `editrisk edit` prints a warning. Forced cases on tiny models: a
fine-tuning edit too weak to move anything (one step at lr 1e-6) misses, a strong one (40
steps at lr 0.05, no norm constraint) takes."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import editrisk
from editrisk.api import EditMissWarning, check_edit, edit_outcomes
from editrisk.cli import app
from editrisk.delta import Delta
from editrisk.evaluation.scoring import TargetScore
from editrisk.models import load_model
from editrisk.requests import EditRequest

WEAK = {"steps": 1, "lr": 1e-6}
STRONG = {"steps": 40, "lr": 0.05, "norm_constraint": 0.0}
FRANCE = EditRequest("France", "The capital of {} is", "Rome", "Paris")


def _score(p: float, argmax: bool = False) -> TargetScore:
    return TargetScore(math.log(p), 1, (argmax,))


@pytest.mark.parametrize(
    ("new", "true", "argmax", "took"),
    [
        ((0.1, 0.6), (0.5, 0.2), False, True),  # rose, ends above P(true)
        ((0.1, 0.3), (0.5, 0.4), True, False),  # rose, still below P(true)
        ((0.6, 0.5), (0.1, 0.1), True, False),  # already above P(true) but fell
        ((0.3, 0.3), (0.1, 0.1), True, False),  # did not move
        ((0.1, 0.4), None, True, True),  # no true target: rose and is the greedy answer
        ((0.1, 0.4), None, False, False),  # no true target: rose, not the greedy answer
        ((0.4, 0.1), None, True, False),  # no true target: fell
    ],
)
def test_the_rule(new, true, argmax, took) -> None:
    req = EditRequest("X", "{} is", "a", "b" if true else None)
    before = [_score(new[0])] + ([_score(true[0])] if true else [])
    after = [_score(new[1], argmax)] + ([_score(true[1])] if true else [])
    (o,) = edit_outcomes([req], before, after)
    assert o.took is took
    assert (o.p_new_before, o.p_new_after) == pytest.approx(new)
    assert (o.p_true_after is None) == (true is None)


def test_outcomes_pair_true_targets_with_their_requests() -> None:
    """Requests without a true target in between do not shift the true scores."""
    reqs = [
        EditRequest("A", "{} is", "x", "y"),
        EditRequest("B", "{} is", "x"),
        EditRequest("C", "{} is", "x", "z"),
    ]
    before = [_score(0.1), _score(0.1), _score(0.1), _score(0.9), _score(0.01)]
    after = [_score(0.5), _score(0.5, True), _score(0.5), _score(0.9), _score(0.01)]
    got = edit_outcomes(reqs, before, after)
    assert [o.took for o in got] == [False, True, True]
    assert [o.p_true_after for o in got] == pytest.approx([0.9, None, 0.01])


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_api_warns_on_a_missed_edit_and_records_it(name: str, tmp_path: Path) -> None:
    h = load_model(name, device="cpu")
    with pytest.warns(EditMissWarning, match="did not take for 1 of 1"):
        delta = editrisk.edit(h, "ft", FRANCE, WEAK)
    (miss,) = delta.missed
    assert miss["prompt"] == FRANCE.rendered and miss["target_new"] == "Rome"
    assert miss["p_new_after"] <= miss["p_true_after"]
    assert not miss["took"]
    assert Delta.load(delta.save(tmp_path / "d.safetensors")).missed == delta.missed


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_api_is_silent_on_an_edit_that_takes(name: str) -> None:
    h = load_model(name, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EditMissWarning)
        delta = editrisk.edit(h, "ft", FRANCE, STRONG)
    assert delta.missed == []
    (o,) = delta.metadata["check"]["requests"]
    assert o["took"] and o["p_new_after"] > o["p_true_after"] and o["p_new_after"] > 0.1


def test_a_delta_of_nothing_misses_and_unchecked_edits_record_nothing() -> None:
    h = load_model("tiny-gpt2", device="cpu")
    name = h.arch.weight_name("mlp_out", 1)
    zero = Delta({name: torch.zeros_like(dict(h.model.named_parameters())[name])})
    (o,) = check_edit(h, zero, [FRANCE])
    assert not o.took and o.p_new_after == o.p_new_before
    with warnings.catch_warnings():
        warnings.simplefilter("error", EditMissWarning)
        delta = editrisk.edit(h, "ft", FRANCE, WEAK, check=False)
    assert "check" not in delta.metadata and delta.missed == []


ARGS = ["--subject", "France", "--prompt", "The capital of {} is", "--target-new", "Rome",
        "--target-true", "Paris", "--editor", "ft"]  # fmt: skip


@pytest.mark.parametrize(
    ("sets", "warned"),
    [(["steps=1", "lr=0.000001"], True), (["steps=40", "lr=0.05", "norm_constraint=0.0"], False)],
)
def test_cli_warns_only_when_the_edit_misses(sets, warned: bool, tmp_path: Path) -> None:
    sets = [x for kv in sets for x in ("--set", kv)]
    out_file = tmp_path / "d.safetensors"
    out = CliRunner().invoke(
        app, ["edit", "tiny-gpt2", *ARGS, *sets, "--save-delta", str(out_file)]
    )
    assert out.exit_code == 0, out.output
    assert ("did not take for 1 of 1" in out.output) is warned
    saved = Delta.load(out_file)
    assert len(saved.missed) == int(warned)
    assert saved.metadata["check"]["requests"][0]["took"] is not warned
