"""1-LI: endpoints are bitwise, curves follow known deltas, policies pick known answers."""

from __future__ import annotations

import pytest
import torch

from editrisk import Delta, EditriskError
from editrisk.interpolation import (
    interpolate,
    monotonicity_violations,
    paths,
    select_knee,
    select_threshold,
    select_validation,
    trade_off,
)


def _delta(h, layers=(1, 2)) -> Delta:
    gen = torch.Generator().manual_seed(0)
    params = dict(h.model.named_parameters())
    return Delta(
        {
            h.arch.weight_name("mlp_out", ly): 0.1
            * torch.randn(params[h.arch.weight_name("mlp_out", ly)].shape, generator=gen)
            for ly in layers
        }
    )


def test_alpha_endpoints_are_bitwise(tiny) -> None:
    delta = _delta(tiny)
    base = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    with interpolate(delta, 0.0, layer=1).applied(tiny.model):
        assert all(torch.equal(v, base[k]) for k, v in tiny.model.state_dict().items())
    with delta.restrict(layers=[1]).applied(tiny.model):
        full = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    with interpolate(delta, 1.0, layer=1).applied(tiny.model):
        assert all(torch.equal(v, full[k]) for k, v in tiny.model.state_dict().items())
    with pytest.raises(EditriskError, match="does not edit layer 3"):
        interpolate(delta, 0.5, layer=3)
    with pytest.raises(EditriskError, match="alpha"):
        interpolate(delta, 1.5)


def test_trade_off_curve_from_known_delta(tiny) -> None:
    """Evaluating the weight distance from W0 gives exactly alpha * ||delta|| per path."""
    delta = _delta(tiny)
    w0 = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    calls = []

    def evaluate(model):
        calls.append(1)
        now = dict(model.named_parameters())
        return {"dist": float(sum((now[n] - w0[n]).norm() ** 2 for n in w0) ** 0.5)}

    alphas = [0.0, 0.25, 0.5, 1.0]
    rows = trade_off(tiny.model, delta, evaluate, alphas)
    assert set(paths(delta)) == {"layer 1", "layer 2", "all layers"}
    assert len(calls) == 1 + 3 * 3  # alpha = 0 evaluated once for all paths
    for r in rows:
        part = paths(delta)[r["path"]]
        expected = r["alpha"] * float(sum(part.dense(n).norm() ** 2 for n in part) ** 0.5)
        assert r["dist"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert monotonicity_violations(rows, "dist") == []
    assert all(torch.equal(p, w0[n]) for n, p in tiny.model.named_parameters())


def test_monotonicity_violation_reported() -> None:
    rows = [
        {"path": "p", "alpha": a, "m": v}
        for a, v in [(0.0, 0.1), (0.5, 0.6), (0.75, 0.4), (1.0, 0.9)]
    ]
    (v,) = monotonicity_violations(rows, "m")
    assert v["from_alpha"] == 0.5 and v["to_alpha"] == 0.75 and v["change"] == pytest.approx(-0.2)


def _synthetic():
    # Edit success rises with alpha; robustness falls; knee at alpha = 0.3 by construction.
    edit = {0.0: 0.0, 0.1: 0.5, 0.2: 0.8, 0.3: 0.95, 0.5: 0.97, 0.7: 0.98, 1.0: 1.0}
    robust = {0.0: 0.90, 0.1: 0.89, 0.2: 0.88, 0.3: 0.87, 0.5: 0.80, 0.7: 0.70, 1.0: 0.50}
    val = {0.0: 0.0, 0.1: 0.3, 0.2: 0.6, 0.3: 0.85, 0.5: 0.9, 0.7: 0.95, 1.0: 1.0}
    return [
        {"path": "layer 4", "alpha": a, "edit": edit[a], "robust": robust[a], "val": val[a]}
        for a in edit
    ]


def test_policies_on_synthetic_curve() -> None:
    rows = _synthetic()
    t = select_threshold(rows, "layer 4", "edit", "robust", 0.9)
    assert t.alpha == 0.3 and t.policy == "threshold"
    assert select_threshold(rows, "layer 4", "edit", "robust", 0.99).alpha == 1.0
    none = select_threshold(rows, "layer 4", "edit", "robust", 1.5)
    assert none.alpha == 1.0 and "no alpha reaches" in none.reason
    assert select_knee(rows, "layer 4", "edit", "robust").alpha == 0.3
    assert select_validation(rows, "layer 4", "val", 0.9).alpha == 0.5
    assert select_validation(rows, "layer 4", "val", 2.0).alpha == 1.0
    assert set(t.to_dict()) == {"path", "alpha", "policy", "reason"}


def test_interpolate_by_module_path_for_classifiers() -> None:
    """Vision layers are module paths: 1-LI keeps that module's parameters only."""
    from editrisk.interpolation import interpolate

    d = Delta({"blocks.1.conv.weight": torch.ones(2, 2), "blocks.10.conv.weight": torch.ones(2),
               "blocks.1.conv.bias": torch.ones(2)})  # fmt: skip
    half = interpolate(d, 0.5, "blocks.1.conv")
    assert sorted(half.names) == ["blocks.1.conv.bias", "blocks.1.conv.weight"]
    assert torch.equal(half.dense("blocks.1.conv.weight"), torch.full((2, 2), 0.5))
    with pytest.raises(EditriskError, match="does not edit"):
        interpolate(d, 0.5, "blocks.2.conv")
