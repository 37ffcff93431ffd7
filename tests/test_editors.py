"""Language editors on every tiny architecture: shared invariants, plus reference checks of
the mathematics (ROME maps k* to v*, MEMIT is the closed-form least squares, D4S after n
sequential edits equals a MEMIT batch edit, AlphaEdit leaves preserved keys alone)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from editrisk import EditriskError
from editrisk.editing.context import context_prefixes
from editrisk.editing.keys import compute_keys
from editrisk.editing.solvers import (
    least_squares_update,
    null_space_projector,
    projected_update,
    rank_one_update,
)
from editrisk.editing.targets import TargetSettings, optimise_targets
from editrisk.editors import get_editor
from editrisk.editors._kv import weight_out_in
from editrisk.evaluation import score_targets
from editrisk.requests import EditRequest

# Small, fast settings for random tiny models (their hidden states have small norms). Only
# the empty context prefix: random models' keys vary wildly under gibberish prefixes.
FAST = dict(
    steps=25,
    lr=1.0,
    weight_decay=0.0,
    kl_factor=0.0,
    clamp_norm_factor=50.0,
    corpus_tokens=2048,
    prefixes=(),
    stop_loss=0.01,
    mom2_weight=1.0,
)
ROME_FAST = {k: v for k, v in FAST.items() if k != "mom2_weight"}
EDITORS = {
    "rome": dict(ROME_FAST, layers=(1,)),
    "memit": dict(FAST, layers=(1,)),
    "d4s": dict(FAST, layers=(1,)),
    "alphaedit": dict(FAST, layers=(1, 2), null_space_threshold=0.9, l2=0.01),
    "ft": dict(layers=(1, 2), steps=20, lr=0.05, norm_constraint=0.0),
    "rect": dict(base="memit", layers=(1,), base_hparams=FAST, keep_fraction=0.2),
    "prune": dict(base="rome", layers=(1,), base_hparams=ROME_FAST),
    "encore": dict(FAST, layers=(1,), stop_on="argmax"),
    "nse": dict(FAST, layers=(1,), neuron_mass=0.8),
    "ultraedit": dict(layers=(1,), lr=0.01, positions="all"),
}
# Single-token targets: a random tiny model can be pushed far on one token, not on a phrase.
REQS = [
    EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr"),
    EditRequest("Canada", "{} is located in", "Africa", "America", id="ca"),
]


def _state(h):
    return {k: v.detach().clone() for k, v in h.model.state_dict().items()}


def _prob(h, reqs=REQS):
    return [s.mean_logprob for s in score_targets(h, [(r.rendered, r.target_new) for r in reqs])]


@pytest.mark.parametrize("editor", list(EDITORS))
def test_editor_invariants(tiny_family, editor: str) -> None:
    """Edit leaves the model untouched, changes only its layers' weights, reverts bitwise,
    and (but for AlphaEdit, checked below) raises the target's probability. On every
    built-in family: the editor x architecture table. Where a norm sits between the MLP and
    the residual stream (Gemma-2, OLMo-2: `mlp_post_norm`), MEMIT-style editors' layer-output
    target passes through it and their edits are approximate: efficacy is not asserted."""
    tiny = tiny_family
    approximate = tiny.arch.spec.mlp_post_norm is not None and editor not in ("rome", "prune", "ft")
    before = _state(tiny)
    expected = {tiny.arch.weight_name("mlp_out", layer) for layer in EDITORS[editor]["layers"]}
    for req in REQS:
        base = _prob(tiny, [req])[0]
        delta = get_editor(editor, EDITORS[editor]).edit(tiny, [req])
        after = _state(tiny)
        assert all(torch.equal(after[k], before[k]) for k in before), "edit() mutated the model"
        assert set(delta.names) == expected
        assert delta.metadata["editor"] == editor
        with delta.applied(tiny.model):
            changed = {
                k for k, v in tiny.model.state_dict().items() if not torch.equal(v, before[k])
            }
            edited = _prob(tiny, [req])[0]
        assert changed == expected
        if editor != "alphaedit" and not approximate:
            assert edited > base + 0.2, f"target log-prob did not rise: {base:.2f} -> {edited:.2f}"
        assert all(torch.equal(v, before[k]) for k, v in tiny.model.state_dict().items())


@pytest.mark.parametrize("editor", ["memit", "d4s", "alphaedit"])
def test_multilayer_edit_moves_last_layer_toward_z(tiny, editor: str) -> None:
    """Spread over two layers, the edit moves the last edited layer's output at the subject
    toward the optimised z* (the quantity MEMIT's least squares targets)."""
    from editrisk.editing.keys import gather_at_index
    from editrisk.editing.prompts import edit_rows

    hp = dict(EDITORS[editor], layers=(1, 2))
    ed = get_editor(editor, hp)
    z = optimise_targets(
        tiny, REQS, tiny.arch.layer_module(2), [""], ed.hparams.target_settings()
    ).target
    rows = edit_rows(tiny.tokenizer, REQS, [""], with_targets=False)
    out = tiny.arch.layer_module(2)
    before = gather_at_index(tiny, rows, outputs_of=[out])[out]
    with ed.edit(tiny, REQS).applied(tiny.model):
        after = gather_at_index(tiny, rows, outputs_of=[out])[out]
    gap_before, gap_after = (z - before).norm(dim=1), (z - after).norm(dim=1)
    assert bool((gap_after < 0.6 * gap_before).all()), (gap_before, gap_after)


def test_one_forward_reads_a_layer_and_a_module_inside_it(tiny) -> None:
    """The layer loop reads a layer's MLP input and the last edited layer's output in one
    forward; when they are the same layer, the forward must not stop at the inner module
    before the layer's output exists. Each read equals the read on its own."""
    from editrisk.editing.keys import gather_at_index
    from editrisk.editing.prompts import edit_rows

    rows = edit_rows(tiny.tokenizer, REQS, [""], with_targets=False)
    for layer, last in ((1, 2), (2, 2)):
        inner, outer = tiny.arch.name("mlp_out", layer), tiny.arch.layer_module(last)
        both = gather_at_index(tiny, rows, inputs_of=[inner], outputs_of=[outer])
        alone_in = gather_at_index(tiny, rows, inputs_of=[inner])[f"{inner}:in"]
        alone_out = gather_at_index(tiny, rows, outputs_of=[outer])[outer]
        assert torch.equal(both[f"{inner}:in"], alone_in)
        assert torch.equal(both[outer], alone_out)


def test_unknown_editor_and_bad_hparams() -> None:
    with pytest.raises(EditriskError, match="unknown editor 'nope'"):
        get_editor("nope")
    with pytest.raises(EditriskError, match="unknown hyperparameter"):
        get_editor("rome", {"layerz": [1]})
    with pytest.raises(EditriskError, match="exactly one layer"):
        get_editor("rome", layers=[1, 2])
    with pytest.raises(EditriskError, match="loss must be"):
        get_editor("ft", loss="everything")


def test_rank_one_update_maps_key_to_value() -> None:
    gen = torch.Generator().manual_seed(0)
    w, k, v = torch.randn(6, 10, generator=gen), torch.randn(10, generator=gen), torch.randn(6)
    a = torch.randn(10, 40, generator=gen)
    cov = a @ a.T / 40
    left, right = rank_one_update(w, k, v, cov)
    torch.testing.assert_close((w.double() + left @ right.T) @ k.double(), v.double())
    # Minimal in the C-weighted norm: right is parallel to C^-1 k.
    ck = torch.linalg.solve(cov.double(), k.double())
    assert torch.allclose(
        torch.nn.functional.cosine_similarity(right[:, 0], ck, 0),
        torch.tensor(1.0, dtype=torch.float64),
    )


def test_rome_edit_maps_k_star_to_v_star(tiny) -> None:
    hp = EDITORS["rome"]
    ed = get_editor("rome", hp)
    req = REQS[:1]
    delta = ed.edit(tiny, req)
    prefixes = context_prefixes(tiny, hp["prefixes"])
    k = compute_keys(tiny, req, [1], prefixes)[1][0].double()
    z = optimise_targets(
        tiny, req, tiny.arch.name("mlp_out", 1), prefixes, ed.hparams.target_settings()
    )
    v = z.target[0].double()
    w0 = weight_out_in(tiny, 1)
    with delta.applied(tiny.model):
        w1 = weight_out_in(tiny, 1)
    init = z.init[0].double()  # the layer's output at k* before the edit (bias included)
    torch.testing.assert_close((w1 - w0) @ k + init, v, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(init, v, atol=1e-3)


def test_memit_solver_is_closed_form_least_squares() -> None:
    rng = np.random.default_rng(0)
    d_in, d_out, n, lam = 12, 5, 3, 0.7
    keys, resid = rng.normal(size=(d_in, n)), rng.normal(size=(d_out, n))
    a = rng.normal(size=(d_in, 50))
    cov = a @ a.T / 50
    got = least_squares_update(torch.tensor(keys), torch.tensor(resid), torch.tensor(cov), lam)
    # Independent reference: min ||D K - R||^2 + lam tr(D C D^T) as one stacked lstsq.
    chol = np.linalg.cholesky(cov)
    lhs = np.concatenate([keys, np.sqrt(lam) * chol], 1).T
    rhs = np.concatenate([resid, np.zeros((d_out, d_in))], 1).T
    ref = np.linalg.lstsq(lhs, rhs, rcond=None)[0].T
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-8, atol=1e-10)


def test_memit_one_request_one_layer_matches_closed_form(tiny) -> None:
    hp = dict(EDITORS["memit"], layers=(2,))
    ed = get_editor("memit", hp)
    req = REQS[:1]
    delta = ed.edit(tiny, req)
    prefixes = context_prefixes(tiny, hp["prefixes"])
    k = compute_keys(tiny, req, [2], prefixes)[2].T.double()
    z = optimise_targets(
        tiny, req, tiny.arch.layer_module(2), prefixes, ed.hparams.target_settings()
    )
    resid = (z.target - z.init).T.double()  # one layer: all of the residual
    cov = ed.covariances(tiny, (2,))[2]
    expected = least_squares_update(k, resid, cov, hp["mom2_weight"])
    w0 = weight_out_in(tiny, 2)
    with delta.applied(tiny.model):
        got = weight_out_in(tiny, 2) - w0
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-5)


def test_d4s_solver_sequence_equals_memit_batch() -> None:
    """Exact: D4S's total after n one-request steps == MEMIT's batch solution over all n."""
    gen = torch.Generator().manual_seed(1)
    d_in, d_out, n, lam = 10, 4, 5, 0.3
    a = torch.randn(d_in, 30, generator=gen, dtype=torch.float64)
    cov = a @ a.T / 30
    keys = torch.randn(d_in, n, generator=gen, dtype=torch.float64)
    resid = torch.randn(d_out, n, generator=gen, dtype=torch.float64)  # W0-relative residuals
    d4s = get_editor("d4s", mom2_weight=lam)
    for i in range(n):
        total = d4s.solve(0, keys[:, i : i + 1], resid[:, i : i + 1], cov)
        d4s.commit()
    batch = least_squares_update(keys, resid, cov, lam)
    torch.testing.assert_close(total, batch)
    assert d4s.n_edits == n


def test_d4s_sequential_matches_memit_batch_on_model(tiny) -> None:
    """End to end: D4S computes every edit against the original weights, so n single edits
    applied in sequence land where one MEMIT batch edit of all n does."""
    hp = dict(EDITORS["d4s"], layers=(1,))
    d4s = get_editor("d4s", hp)
    applied = []
    try:
        for r in REQS:
            d = d4s.edit(tiny, [r])
            d.apply(tiny.model)
            applied.append(d)
        seq = weight_out_in(tiny, 1)
    finally:
        for d in reversed(applied):
            d.revert(tiny.model)
    w0 = weight_out_in(tiny, 1)
    batch = get_editor("memit", hp).edit(tiny, REQS)
    with batch.applied(tiny.model):
        ref = weight_out_in(tiny, 1)
    rel = (seq - ref).norm() / (ref - w0).norm()
    assert rel < 1e-3, f"D4S sequence differs from MEMIT batch by {rel:.3f} (relative)"


def test_d4s_state_constant_size_and_round_trip(tiny) -> None:
    hp = dict(EDITORS["d4s"], steps=3)
    d4s = get_editor("d4s", hp)
    sizes = []
    for r in REQS * 2:
        d4s.edit(tiny, [r]).apply(tiny.model, backup=False)
        sizes.append(sum(t.numel() for t in d4s.state_dict().values()))
    assert len(set(sizes)) == 1 and d4s.n_edits == 4
    clone = get_editor("d4s", hp)
    clone.load_state_dict(d4s.state_dict())
    for key, value in d4s.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value)


def test_alphaedit_update_leaves_preserved_keys_unchanged() -> None:
    gen = torch.Generator().manual_seed(2)
    d_in, d_out = 16, 6
    preserved = torch.randn(d_in, 6, generator=gen, dtype=torch.float64)  # rank 6 of 16
    cov = preserved @ preserved.T / 6
    proj = null_space_projector(cov, 1e-6)
    keys = torch.randn(d_in, 3, generator=gen, dtype=torch.float64)
    resid = torch.randn(d_out, 3, generator=gen, dtype=torch.float64)
    upd = projected_update(keys, resid, proj, torch.zeros(d_in, d_in, dtype=torch.float64), 1e-3)
    assert (upd @ preserved).abs().max() < 1e-8
    assert (upd @ keys - resid).norm() < 0.5 * resid.norm()  # and still makes the edit


@pytest.mark.parametrize("staggered", [False, True])
def test_batched_targets_equal_one_by_one(tiny, staggered: bool) -> None:
    """Batched equals one at a time; `staggered`: requests converge at different steps, so
    the batch shrinks as they drop out."""
    s = TargetSettings(steps=6, lr=0.2, weight_decay=0.1, kl_factor=0.1, clamp_norm_factor=50)
    prefixes = ["", "Hello there. "]
    module = tiny.arch.name("mlp_out", 1)
    if staggered:  # a stop threshold that each request's NLL crosses at a different step
        traj = [
            [
                optimise_targets(
                    tiny, [r], module, prefixes, dataclasses.replace(s, steps=k)
                ).final_nll[0]
                for k in range(1, s.steps + 1)
            ]
            for r in REQS
        ]
        for thr in sorted(v + 1e-4 for tr in traj for v in tr):
            first = [next((k for k, v in enumerate(tr) if v < thr), len(tr) - 1) for tr in traj]
            if first[0] != first[1]:
                s = dataclasses.replace(s, stop_loss=thr)
                break
    singles = [optimise_targets(tiny, [r], module, prefixes, s) for r in REQS]
    batched = optimise_targets(tiny, REQS, module, prefixes, s)
    for i, single in enumerate(singles):
        torch.testing.assert_close(batched.delta[i], single.delta[0], rtol=1e-4, atol=1e-4)
        assert batched.steps_run[i] == single.steps_run[0]
    if staggered:
        assert len({sg.steps_run[0] for sg in singles}) == 2  # they did stop apart


def test_prefix_cache_is_exact(tiny) -> None:
    s = TargetSettings(steps=4, lr=0.3, weight_decay=0.2, kl_factor=0.5, clamp_norm_factor=50)
    prefixes = ["", "Once upon a time. ", "In the city of Rome. "]
    for module in (tiny.arch.name("mlp_out", 1), tiny.arch.layer_module(2)):
        fast = optimise_targets(tiny, REQS, module, prefixes, s, cache_prefix=True)
        plain = optimise_targets(tiny, REQS, module, prefixes, s, cache_prefix=False)
        assert fast.history == pytest.approx(plain.history, rel=1e-5)
        torch.testing.assert_close(fast.delta, plain.delta, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.init, plain.init, rtol=1e-4, atol=1e-5)


def test_layers_below_the_edit_run_once(tiny, monkeypatch) -> None:
    """Cached mode computes the layers below the edited one once, not at every step."""
    layer0 = tiny.model.get_submodule(tiny.arch.layer_module(0))
    calls = []
    original = type(layer0).forward

    def counting(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(self is layer0)
        return original(self, *a, **k)

    monkeypatch.setattr(type(layer0), "forward", counting)
    s = TargetSettings(steps=5, stop_loss=0.0)
    module = tiny.arch.name("mlp_out", 2)
    fast = optimise_targets(tiny, REQS, module, ["", "Hello there. "], s, cache_prefix=True)
    assert len(fast.history) == 5 and sum(calls) == 2  # the prefix pass and the first step
    calls.clear()
    optimise_targets(tiny, REQS, module, ["", "Hello there. "], s, cache_prefix=False)
    assert sum(calls) == 5


def test_editor_hparams_round_trip() -> None:
    ed = get_editor("memit", {"layers": [3, 4], "mom2_weight": 2.0})
    again = get_editor("memit", ed.hparams.to_dict())
    assert again.hparams == ed.hparams and again.hparams.layers == (3, 4)


def test_prefixed_rows_tokenize_the_subject_as_running_text(tiny) -> None:
    """After a prefix, prompt and prefix are one text (the subject as running text has it);
    a prompt that starts with its subject then has other subject tokens than alone, and those
    rows form their own variant (their own key), the bare prompt keeping its tokens."""
    from editrisk.editing.prompts import edit_rows

    tok = tiny.tokenizer
    req = EditRequest("Canada", "{} is located in", "Africa", "America", id="ca")
    plain, prefixed = edit_rows(tok, [req], ["", "The end. "], with_targets=True)
    assert plain.ids[: -len(plain.targets) + 1 or None] == tuple(
        tok("Canada is located in", add_special_tokens=False)["input_ids"]
    )
    joined = tok("The end. Canada is located in", add_special_tokens=False)["input_ids"]
    assert prefixed.ids[: len(joined)] == tuple(joined)
    assert prefixed.targets == plain.targets
    assert (plain.variant, prefixed.variant) == (0, 1)
    mid = EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr")
    assert {r.variant for r in edit_rows(tok, [mid], ["", "The end. "], with_targets=False)} == {0}
