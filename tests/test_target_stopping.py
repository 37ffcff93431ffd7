"""The target optimisation's stop rules and weight decays (shared by ROME, MEMIT, D4S,
AlphaEdit): stricter rules never stop earlier; the decay is a real choice."""

from __future__ import annotations

import dataclasses

import pytest

from editrisk.editing.targets import TargetSettings, optimise_targets
from editrisk.errors import EditriskError
from editrisk.requests import EditRequest

REQS = [
    EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr"),
    EditRequest("Canada", "{} is located in", "Africa", "America", id="ca"),
]
PREFIXES = ["", "The end. ", "Once upon a time. "]


def test_stricter_stop_rules_run_at_least_as_long(tiny) -> None:
    module = tiny.arch.name("mlp_out", 1)
    base = TargetSettings(steps=12, lr=0.5, weight_decay=0.1, kl_factor=0.0, stop_loss=0.5)
    runs = {
        rule: optimise_targets(
            tiny, REQS, module, PREFIXES, dataclasses.replace(base, stop_on=rule)
        )
        for rule in ("nll", "rows", "loss")
    }
    for q in range(len(REQS)):
        assert runs["nll"].steps_run[q] <= runs["rows"].steps_run[q]
        assert runs["nll"].steps_run[q] <= runs["loss"].steps_run[q]


def test_decay_choice_changes_the_optimisation_not_its_start(tiny) -> None:
    """Both decays are zero at delta = 0 (same first loss) and pull differently after."""
    module = tiny.arch.name("mlp_out", 1)
    s = TargetSettings(steps=3, lr=0.5, weight_decay=2.0, kl_factor=0.0, stop_loss=0.0)
    sq = optimise_targets(tiny, REQS[:1], module, [""], dataclasses.replace(s, decay="squared"))
    lin = optimise_targets(tiny, REQS[:1], module, [""], dataclasses.replace(s, decay="paper"))
    assert sq.history[0] == pytest.approx(lin.history[0])  # delta starts at zero
    assert not np_close(sq.delta, lin.delta)  # the decay's gradient differs


def np_close(a, b) -> bool:  # noqa: ANN001
    return bool((a - b).abs().max() < 1e-6)


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(EditriskError, match="decay must be"):
        TargetSettings(decay="cubic")
    with pytest.raises(EditriskError, match="stop_on must be"):
        TargetSettings(stop_on="never")
