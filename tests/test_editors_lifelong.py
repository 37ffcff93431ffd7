"""The editors built against the decline under many edits, on every tiny architecture: each
one's defining property (RECT keeps only the largest relative changes; PRUNE bounds the
singular values of the accumulated edit), and their state round trips."""

from __future__ import annotations

import math

import pytest
import torch
from test_editors import EDITORS, FAST, REQS

from editrisk import EditriskError
from editrisk.editors import get_editor
from editrisk.editors.prune import restrain

BASE = {"memit": dict(FAST), "rome": EDITORS["rome"], "ft": EDITORS["ft"]}


def _base_hparams(base: str) -> dict:
    return {k: v for k, v in BASE[base].items() if k != "layers"}


@pytest.mark.parametrize("base", ["memit", "rome", "ft"])
def test_rect_keeps_only_the_largest_relative_changes(tiny, base: str) -> None:
    hp = dict(base=base, layers=(1,), base_hparams=_base_hparams(base), keep_fraction=0.2)
    torch.manual_seed(0)
    full = get_editor(base, dict(_base_hparams(base), layers=(1,))).edit(tiny, REQS[:1])
    torch.manual_seed(0)
    rect = get_editor("rect", hp).edit(tiny, REQS[:1])
    assert rect.names == full.names and rect.metadata["base"] == base
    params = dict(tiny.model.named_parameters())
    for n in rect.names:
        u, kept = full.dense(n).float(), rect.dense(n)
        rel = (u.double() / params[n].detach().double()).abs()
        mask = kept != 0
        k = math.ceil(0.2 * u.numel())
        assert int(mask.sum()) == min(k, int((u != 0).sum()))
        torch.testing.assert_close(kept[mask], u[mask])  # kept entries are the base's
        assert rel[mask].min() >= rel[~mask].max()  # and they are the largest |dW| / |W|


def test_rect_refuses_bad_settings() -> None:
    with pytest.raises(EditriskError, match="keep_fraction"):
        get_editor("rect", keep_fraction=0.0)
    with pytest.raises(EditriskError, match="base must be one of"):
        get_editor("rect", base="d4s")
    with pytest.raises(EditriskError, match="base_hparams: .*unknown hyperparameter"):
        get_editor("rect", base_hparams={"mom2_wieght": 1.0})


def test_restrain_rescales_only_singular_values_above_the_bound() -> None:
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(8, 4, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(6, 4, generator=gen, dtype=torch.float64))
    s = torch.tensor([9.0, 3.0, 1.5, 0.5], dtype=torch.float64)
    got = torch.linalg.svdvals(restrain((u * s) @ v.T, sigma_max=2.0, log_base=math.e))
    want = [math.log(9.0) - math.log(2.0) + 2.0, math.log(3.0) - math.log(2.0) + 2.0, 1.5, 0.5]
    torch.testing.assert_close(got[:4], torch.tensor(want, dtype=torch.float64))
    assert float(got[4:].abs().max()) < 1e-10  # rank kept


def test_prune_bounds_the_accumulated_edit(tiny) -> None:
    """After every sequential step the accumulated edit's singular values are those of the
    unrestrained accumulation (restrained total so far + the base's new update), each above
    the original weight's largest singular value sigma_max rescaled to
    log(s) - log(sigma_max) + sigma_max; so none exceeds that bound."""
    ed = get_editor("prune", base="memit", layers=(1,), base_hparams=_base_hparams("memit"))
    steps: list[dict[str, torch.Tensor]] = []
    real = ed.base.edit

    def spy(model, requests):  # noqa: ANN001, ANN202
        d = real(model, requests)
        steps.append({n: d.dense(n).double() for n in d.names})
        return d

    ed.base.edit = spy
    name = tiny.arch.weight_name("mlp_out", 1)
    w0 = dict(tiny.model.named_parameters())[name].detach().double().clone()
    sigma_max = float(torch.linalg.matrix_norm(w0, ord=2))
    total = torch.zeros_like(w0)
    active = 0
    for i, r in enumerate(REQS * 2):
        d = ed.edit(tiny, [r])
        d.apply(tiny.model, backup=False)
        raw = torch.linalg.svdvals(total + steps[i][name])
        total = total + d.dense(name).double()
        got = torch.linalg.svdvals(total)
        bound = torch.where(raw > sigma_max, raw.log() - math.log(sigma_max) + sigma_max, raw)
        torch.testing.assert_close(got, bound, rtol=1e-4, atol=1e-5)
        limit = sigma_max + max(0.0, math.log(float(raw.max()) / sigma_max))
        assert float(got.max()) <= limit + 1e-4  # float32 increments
        active += int(raw.max() > sigma_max)
    assert active >= 1, "the bound never applied: the test would not tell PRUNE from its base"
    assert ed.n_steps == 4


def test_prune_state_round_trip_and_reset(tiny) -> None:
    hp = dict(base="memit", layers=(1,), base_hparams=dict(_base_hparams("memit"), steps=3))
    ed = get_editor("prune", hp)
    for r in REQS:
        ed.edit(tiny, [r]).apply(tiny.model, backup=False)
    clone = get_editor("prune", hp)
    clone.load_state_dict(ed.state_dict())
    assert clone.state_dict().keys() == ed.state_dict().keys()
    for key, value in ed.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value)
    nxt = [ed.edit(tiny, REQS[:1]), clone.edit(tiny, REQS[:1])]  # same memory, same next edit
    for n in nxt[0].names:
        torch.testing.assert_close(nxt[0].dense(n), nxt[1].dense(n))
    clone.reset()
    assert clone.n_steps == 0 and not clone.total and not clone.sigma_max
    with pytest.raises(EditriskError, match="not a PRUNE state"):
        clone.load_state_dict({"n_steps": torch.tensor(1), "bogus": torch.zeros(1)})
