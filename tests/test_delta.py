"""Delta invariants, checked on every tiny architecture."""

from __future__ import annotations

import pytest
import torch

from editrisk import Delta, EditriskError, LowRank
from editrisk.models import ModelHandle


def _state(h: ModelHandle) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in h.model.state_dict().items()}


def _make_delta(h: ModelHandle, layers=(1, 2), lowrank: bool = False, seed: int = 0) -> Delta:
    gen = torch.Generator().manual_seed(seed)
    params = dict(h.model.named_parameters())
    updates = {}
    for layer in layers:
        name = h.arch.weight_name("mlp_out", layer)
        shape = params[name].shape
        if lowrank:
            updates[name] = LowRank(
                torch.randn(shape[0], 2, generator=gen), torch.randn(shape[1], 2, generator=gen)
            )
        else:
            updates[name] = torch.randn(shape, generator=gen)
    return Delta(updates, {"editor": "test"})


@pytest.mark.parametrize("lowrank", [False, True])
def test_apply_then_revert_is_bitwise(tiny: ModelHandle, lowrank: bool) -> None:
    before = _state(tiny)
    delta = _make_delta(tiny, lowrank=lowrank)
    delta.apply(tiny.model)
    changed = {k for k, v in tiny.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(delta.names)  # only targeted parameters change
    delta.revert(tiny.model)
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_apply_adds_exactly_the_update(tiny: ModelHandle) -> None:
    delta = _make_delta(tiny, layers=(0,))
    (name,) = delta.names
    w0 = dict(tiny.model.named_parameters())[name].detach().clone()
    with delta.applied(tiny.model):
        w1 = dict(tiny.model.named_parameters())[name].detach()
        torch.testing.assert_close(w1 - w0, delta.dense(name), rtol=1e-5, atol=1e-5)
    assert torch.equal(dict(tiny.model.named_parameters())[name], w0)


def test_scale_zero_leaves_model_unchanged(tiny: ModelHandle) -> None:
    before = _state(tiny)
    batch = tiny.encode(["The capital of France is"])
    logits0 = tiny.model(**batch).logits
    _make_delta(tiny).scale(0.0).apply(tiny.model, backup=False)
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(tiny.model(**batch).logits, logits0)


def test_nan_delta_is_refused_and_model_untouched(tiny: ModelHandle) -> None:
    before = _state(tiny)
    delta = _make_delta(tiny)
    name = delta.names[-1]
    delta.updates[name] = delta.dense(name).clone()
    delta.updates[name][0, 0] = float("nan")
    with pytest.raises(EditriskError, match="NaN"):
        delta.apply(tiny.model)
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_wrong_shape_or_name_refused(tiny: ModelHandle) -> None:
    with pytest.raises(EditriskError, match="does not have"):
        Delta({"no.such.weight": torch.zeros(2, 2)}).apply(tiny.model)
    name = tiny.arch.weight_name("mlp_out", 0)
    with pytest.raises(EditriskError, match="shape"):
        Delta({name: torch.zeros(3, 3)}).apply(tiny.model)


@pytest.mark.parametrize("lowrank", [False, True])
def test_save_load_round_trip(tiny: ModelHandle, tmp_path, lowrank: bool) -> None:
    delta = _make_delta(tiny, lowrank=lowrank)
    delta.metadata.update(hyperparameters={"layers": [1, 2]}, model_fingerprint="abc")
    loaded = Delta.load(delta.save(tmp_path / "d.safetensors"))
    assert loaded.metadata == delta.metadata
    assert loaded.names == delta.names
    for n in delta.names:
        assert type(loaded.updates[n]) is type(delta.updates[n])
        assert torch.equal(loaded.dense(n), delta.dense(n))


def test_load_rejects_foreign_file(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(EditriskError, match="not an editrisk delta"):
        Delta.load(tmp_path / "f.safetensors")
    with pytest.raises(EditriskError, match="not found"):
        Delta.load(tmp_path / "missing.safetensors")


def test_restrict_scale_add(tiny: ModelHandle) -> None:
    delta = _make_delta(tiny, layers=(0, 1, 2))
    only1 = delta.restrict(layers=[1])
    assert only1.layers == [1]
    assert only1.names == [tiny.arch.weight_name("mlp_out", 1)]
    half = delta.scale(0.5)
    for n in delta.names:
        torch.testing.assert_close(half.dense(n) * 2, delta.dense(n))
    total = delta.restrict(layers=[0]) + delta.restrict(layers=[1, 2])
    assert set(total.names) == set(delta.names)
    doubled = delta + delta
    for n in delta.names:
        torch.testing.assert_close(doubled.dense(n), 2 * delta.dense(n))
    with pytest.raises(KeyError):
        delta.restrict(params=["missing"])


def test_lowrank_add_stays_lowrank(tiny: ModelHandle) -> None:
    a = _make_delta(tiny, layers=(1,), lowrank=True, seed=1)
    b = _make_delta(tiny, layers=(1,), lowrank=True, seed=2)
    (name,) = a.names
    total = a + b
    assert isinstance(total.updates[name], LowRank) and total.updates[name].rank == 4
    torch.testing.assert_close(total.dense(name), a.dense(name) + b.dense(name))


def test_editor_made_deltas_add(tiny: ModelHandle) -> None:
    """Editors label a delta with the list of layers they edited, families with a name ->
    layer table: deltas of either kind add, and the layers survive."""
    import editrisk
    from editrisk import EditRequest

    req = [EditRequest("France", "The capital of {} is", "Rome", "Paris")]
    hp = {"layers": [1], "steps": 2, "prefixes": []}
    a = editrisk.edit(tiny, "memit", req, hp, check=False)
    b = editrisk.edit(tiny, "memit", req, {**hp, "layers": [0]}, check=False)
    assert isinstance(a.metadata["layers"], list)
    total = a + b
    assert total.metadata["layers"] == [0, 1] and total.layers == [0, 1]
    for n in total.names:
        want = sum(d.dense(n) for d in (a, b) if n in d.updates)
        torch.testing.assert_close(total.dense(n), want)
    table = a.with_layers(tiny.arch.layer_of)
    mixed = table + b
    assert mixed.metadata["layers"] == table.metadata["layers"] and mixed.layers == [0, 1]


def test_norms_match_numpy(tiny: ModelHandle) -> None:
    import numpy as np

    delta = _make_delta(tiny, layers=(1,))
    (name,) = delta.names
    m = delta.dense(name).numpy().astype(np.float64)
    norms = delta.norms()[name]
    assert norms["l1_sum"] == pytest.approx(np.abs(m).sum(), rel=1e-5)
    assert norms["l1_mean"] == pytest.approx(np.abs(m).mean(), rel=1e-5)
    assert norms["fro"] == pytest.approx(np.linalg.norm(m), rel=1e-5)
    assert norms["spectral"] == pytest.approx(np.linalg.norm(m, 2), rel=1e-5)
    approx = delta.norms(spectral_iters=50)[name]["spectral"]
    assert approx == pytest.approx(np.linalg.norm(m, 2), rel=1e-2)
    w = dict(tiny.model.named_parameters())[name].detach().numpy().astype(np.float64)
    wn = delta.weight_norms(tiny.model)[name]
    assert wn["base"]["l1_sum"] == pytest.approx(np.abs(w).sum(), rel=1e-5)
    assert wn["edited"]["fro"] == pytest.approx(np.linalg.norm(w + m), rel=1e-5)


def test_double_apply_refused(tiny: ModelHandle) -> None:
    delta = _make_delta(tiny)
    delta.apply(tiny.model)
    with pytest.raises(EditriskError, match="already applied"):
        delta.apply(tiny.model)
    delta.revert(tiny.model)


def test_apply_casts_to_half_precision(tiny: ModelHandle) -> None:
    tiny.model.to(torch.bfloat16)
    before = _state(tiny)
    delta = _make_delta(tiny, layers=(1,))
    with delta.applied(tiny.model):
        (name,) = delta.names
        w = dict(tiny.model.named_parameters())[name]
        assert w.dtype == torch.bfloat16 and not torch.equal(w, before[name])
    assert all(torch.equal(v, before[k]) for k, v in tiny.model.state_dict().items())
