"""The editors built against the decline under many edits, on every tiny architecture: each
one's defining property (RECT keeps only the largest relative changes; PRUNE bounds the
singular values of the accumulated edit), and their state round trips."""

from __future__ import annotations

import math

import pytest
import torch
from test_editors import EDITORS, FAST, REQS

from editrisk import EditRequest, EditriskError
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


def _query(h, text: str, layer: int = 1) -> torch.Tensor:
    """The MLP output projection's input at every position of `text`."""
    from editrisk.hooks import Trace
    from editrisk.tokens import prompt_ids

    m = h.arch.name("mlp_out", layer)
    with Trace(h.model, [m], retain_input=True) as tr:
        h.model(input_ids=torch.tensor([prompt_ids(h.tokenizer, text)]))
    return tr[m].input[0].float()


def _logits(h, text: str) -> torch.Tensor:
    from editrisk.tokens import prompt_ids

    with torch.no_grad():
        return h.model(input_ids=torch.tensor([prompt_ids(h.tokenizer, text)])).logits[0]


UNRELATED = ["Bananas grow on tall plants in warm places", "My dog likes to run"]
PARAPHRASE = "The capital of France, is"


def test_grace_defers_outside_its_radius_and_answers_inside(tiny) -> None:
    """Inputs whose every position is outside the deferral radius give bitwise the unedited
    logits; a paraphrase whose last position is inside it gives the new answer."""
    from editrisk.tokens import target_ids

    req = REQS[0]
    key = _query(tiny, req.rendered)[-1]
    d_para = float((_query(tiny, PARAPHRASE)[-1] - key).norm())
    d_far = min(float((_query(tiny, t) - key).norm(dim=1).min()) for t in UNRELATED)
    assert d_para < d_far, "fixture: the paraphrase must be nearer the key than other text"
    ed = get_editor("grace", layers=(1,), radius=(d_para + d_far) / 2, lr=0.5)
    before = {t: _logits(tiny, t) for t in [*UNRELATED, PARAPHRASE, req.rendered]}
    delta = ed.edit(tiny, [req])
    assert delta.names == [] and list(delta.codebooks) == [tiny.arch.name("mlp_out", 1)]
    new = target_ids(tiny.tokenizer, req.target_new)[0]
    with delta.applied(tiny.model):
        for t in UNRELATED:
            assert torch.equal(_logits(tiny, t), before[t])
        for t in (req.rendered, PARAPHRASE):
            after = _logits(tiny, t)[-1]
            assert int(after.argmax()) == new != int(before[t][-1].argmax())
    for t, logits in before.items():  # reverted: every output as before
        assert torch.equal(_logits(tiny, t), logits)


def test_grace_codebook_adds_expands_and_splits() -> None:
    ed = get_editor("grace", radius=1.0)
    v = torch.zeros(3)
    e0 = ed._insert(torch.tensor([0.0, 0.0]), v, label=7)
    far = ed._insert(torch.tensor([10.0, 0.0]), v, label=7)  # beyond 1 + 1: a new entry
    near = ed._insert(torch.tensor([1.5, 0.0]), v, label=7)  # same label within 1 + 1: expand
    assert (e0, far, near) == ({0}, {1}, {0}) and ed.book["radii"].tolist() == [1.5, 1.0]
    split = ed._insert(torch.tensor([10.0, 1.6]), v, label=3)  # other label within reach
    assert split == {1, 2} and ed.book["radii"].tolist() == pytest.approx([1.5, 0.8, 0.8])
    assert ed.book["ids"].tolist() == [0, 1, 2] and ed.book["labels"].tolist() == [7, 7, 3]


def test_grace_delta_life(tiny, tmp_path) -> None:
    """A codebook edit lives like a weight edit: saved and loaded (safetensors, metadata),
    refused when not finite, scaled (alpha 0: bitwise unedited), composed across sequential
    steps into the editor's codebook; the editor's state round-trips."""
    from editrisk.delta import Codebook, Delta

    ed = get_editor("grace", layers=(1,), radius=0.5, steps=5)
    first = ed.edit(tiny, REQS[:1])
    with first.applied(tiny.model):
        second = ed.edit(tiny, REQS[1:])
    total = first + second
    (name,) = total.codebooks
    book = total.codebooks[name]
    assert sorted(book.ids.tolist()) == ed.book["ids"].tolist() == [0, 1]
    path = total.save(tmp_path / "grace.safetensors")
    loaded = Delta.load(path)
    assert loaded.metadata == total.metadata and loaded.layers == [1]
    for a, b in zip(loaded.codebooks[name].tensors(), book.tensors()):
        assert torch.equal(a, b)
    base = _logits(tiny, REQS[0].rendered)
    with loaded.applied(tiny.model):
        edited = _logits(tiny, REQS[0].rendered)
    with total.applied(tiny.model):
        torch.testing.assert_close(_logits(tiny, REQS[0].rendered), edited)
    assert not torch.equal(edited, base)
    with total.scale(0.0).applied(tiny.model):
        assert torch.equal(_logits(tiny, REQS[0].rendered), base)
    with total.restrict(layers=[2]).applied(tiny.model):  # no codebook at layer 2
        assert torch.equal(_logits(tiny, REQS[0].rendered), base)
    bad = Codebook(book.keys, book.values * torch.nan, book.radii, book.ids)
    with pytest.raises(EditriskError, match="NaN"):
        Delta({}, {}, {name: bad}).apply(tiny.model)
    clone = get_editor("grace", layers=(1,), radius=0.5, steps=5)
    clone.load_state_dict(ed.state_dict())
    assert all(torch.equal(clone.state_dict()[k], v) for k, v in ed.state_dict().items())
    more = [EditRequest("Norway", "The capital of {} is", "Lima", "Oslo")]
    with total.applied(tiny.model):  # a resumed editor goes on as the original would
        third, resumed = ed.edit(tiny, more), clone.edit(tiny, more)
    for x, y in zip(third.codebooks[name].tensors(), resumed.codebooks[name].tensors()):
        assert torch.equal(x, y)
    moved = get_editor("grace", layers=(2,), radius=0.5, steps=5)
    moved.load_state_dict(ed.state_dict())
    with pytest.raises(EditriskError, match="at layer 1, not 2"):
        moved.edit(tiny, more)
    with pytest.raises(EditriskError, match="not a GRACE state"):
        clone.load_state_dict({"book.keys": book.keys})


def _all_most_probable(h, req, module: str, prefixes: list[str], delta: torch.Tensor) -> bool:
    """Whether, with `delta` added to `module`'s output at each row's edit position, every
    target token is the most probable one on every row."""
    from editrisk.editing.prompts import edit_rows
    from editrisk.hooks import Trace

    for row in edit_rows(h.tokenizer, [req], prefixes, with_targets=True, token="prompt_last"):

        def add(name: str, out: torch.Tensor, at: int = row.index) -> torch.Tensor:
            out = out.clone()
            out[0, at] += delta.to(out.dtype)
            return out

        with torch.no_grad(), Trace(h.model, [module], edit_output=add):
            logits = h.model(input_ids=torch.tensor([row.ids])).logits[0]
        if logits[list(row.predict_positions)].argmax(-1).tolist() != list(row.targets):
            return False
    return True


def test_mpes_stops_at_the_first_most_probable_point(tiny) -> None:
    """ENCORE's most-probable early stopping ends the target optimisation at the first step
    where the target is the most probable continuation on every context prefix: earlier, and
    with a smaller vector, than stopping on a small NLL. (The vector is added at the prompt's
    last token of the last layer: the random tiny models barely carry a subject's vector to
    the prediction.)"""
    import dataclasses

    from editrisk.editing.targets import TargetSettings, optimise_targets

    req, prefixes = REQS[0], ["", "Hello there. "]
    module = tiny.arch.layer_module(tiny.arch.n_layers - 1)
    mpes = TargetSettings(steps=60, lr=0.5, weight_decay=0.0, kl_factor=0.0,
                          clamp_norm_factor=50.0, stop_on="argmax")  # fmt: skip
    got = optimise_targets(tiny, [req], module, prefixes, mpes, token="prompt_last")
    k = got.steps_run[0]
    assert 0 < k < 59 and _all_most_probable(tiny, req, module, prefixes, got.delta[0])
    shorter = dataclasses.replace(mpes, steps=k)
    before = optimise_targets(tiny, [req], module, prefixes, shorter, token="prompt_last")
    assert not _all_most_probable(tiny, req, module, prefixes, before.delta[0])
    nll = dataclasses.replace(mpes, stop_on="nll", stop_loss=0.01)
    plain = optimise_targets(tiny, [req], module, prefixes, nll, token="prompt_last")
    assert plain.steps_run[0] > k and plain.delta[0].norm() > got.delta[0].norm()


def test_encore_solver_is_the_norm_constrained_least_squares() -> None:
    from editrisk.editing.solvers import least_squares_update, norm_constrained_update

    gen = torch.Generator().manual_seed(3)
    d_in, d_out, n, lam, mu = 12, 5, 3, 0.7, 0.4
    keys = torch.randn(d_in, n, generator=gen, dtype=torch.float64)
    resid = torch.randn(d_out, n, generator=gen, dtype=torch.float64)
    a = torch.randn(d_in, 50, generator=gen, dtype=torch.float64)
    cov = a @ a.T / 50
    got = norm_constrained_update(keys, resid, cov, lam, mu)
    # min ||D K - R||^2 + lam tr(D C D^T) + mu ||D||^2 as one stacked least squares
    chol = torch.linalg.cholesky(cov)
    lhs = torch.cat([keys, lam**0.5 * chol, mu**0.5 * torch.eye(d_in, dtype=torch.float64)], 1)
    rhs = torch.cat([resid, torch.zeros(d_out, 2 * d_in, dtype=torch.float64)], 1)
    ref = torch.linalg.lstsq(lhs.T, rhs.T).solution.T
    torch.testing.assert_close(got, ref)
    assert got.norm() < least_squares_update(keys, resid, cov, lam).norm()


def test_encore_smaller_update_than_memit_at_equal_efficacy(tiny) -> None:
    """On the same requests, wherever both edits succeed (the new target more probable than
    the true one), ENCORE's update has the smaller Frobenius norm."""
    from editrisk.evaluation import score_targets

    both = 0
    for req in REQS:
        norms, ok = {}, {}
        for name in ("memit", "encore"):
            hp = dict(FAST, layers=(1,), steps=50)
            delta = get_editor(name, hp).edit(tiny, [req])
            (param,) = delta.names
            norms[name] = float(delta.dense(param).norm())
            with delta.applied(tiny.model):
                new, true = score_targets(
                    tiny, [(req.rendered, req.target_new), (req.rendered, req.target_true)]
                )
            ok[name] = new.mean_logprob > true.mean_logprob
        if ok["memit"] and ok["encore"]:
            both += 1
            assert norms["encore"] < norms["memit"], norms
    assert both >= 1, "no request that both edit: the comparison would be empty"


def test_nse_changes_only_the_selected_neurons(tiny) -> None:
    """Only the columns of the MLP output projection of the neurons the edit's keys activate
    most (their mean |activation| carrying `neuron_mass` of the total) change."""
    from editrisk.editing.keys import compute_keys
    from editrisk.editors._kv import weight_out_in
    from editrisk.editors.nse import select_neurons

    ed = get_editor("nse", dict(FAST, layers=(1,), neuron_mass=0.5))
    keys = compute_keys(tiny, REQS[:1], [1], [""])[1].T.double()
    chosen = select_neurons(keys, 0.5)
    score = keys.abs().mean(1)
    assert 0 < len(chosen) < keys.shape[0]
    assert score[chosen].sum() >= 0.5 * score.sum()  # enough mass, and the largest scores
    assert score[chosen].min() >= score[[i for i in range(len(score)) if i not in chosen]].max()
    w0 = weight_out_in(tiny, 1)
    with ed.edit(tiny, REQS[:1]).applied(tiny.model):
        changed = (weight_out_in(tiny, 1) != w0).any(0)
    assert torch.nonzero(changed).flatten().tolist() == chosen.tolist()


def test_nse_rewinds_to_the_original_weights_for_its_targets(tiny, monkeypatch) -> None:
    """A later round's z* is the one the original model gives, whatever earlier rounds did;
    the editor's memory round-trips."""
    import editrisk.editors.memit as memit

    seen = []
    real = memit.optimise_targets

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(memit, "optimise_targets", spy)
    hp = dict(FAST, layers=(1,))
    ed = get_editor("nse", hp)
    first = ed.edit(tiny, REQS[:1])
    with first.applied(tiny.model):
        ed.edit(tiny, REQS[1:])
        clone = get_editor("nse", hp)
        clone.load_state_dict(ed.state_dict())
        assert all(torch.equal(clone.state_dict()[k], v) for k, v in ed.state_dict().items())
    get_editor("nse", hp).edit(tiny, REQS[1:])  # on the pristine model
    torch.testing.assert_close(seen[1].target, seen[2].target)
    with pytest.raises(EditriskError, match="not an NSE state"):
        clone.load_state_dict({"sum.1": torch.zeros(1)})


def test_a_codebook_edit_is_not_exported_as_weights(tmp_path) -> None:
    from editrisk import export_model
    from editrisk.models import load_model

    h = load_model("tiny-llama")
    delta = get_editor("grace", layers=(1,), steps=2).edit(h, REQS[:1])
    with pytest.raises(EditriskError, match="codebook .* changes no weight"):
        export_model(h, delta, tmp_path / "out")
    assert not (tmp_path / "out").exists()


ULTRA = dict(layers=(1,), lr=0.01, positions="all")


def _ultra_features(h, req, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and d(target NLL)/d(output) of the MLP output projection at every position of
    prompt + target, computed here without the editor: the projection's weight made
    trainable for one backward pass, its output's gradient kept."""
    from editrisk.hooks import Trace
    from editrisk.tokens import prompt_ids, target_ids

    prompt, target = prompt_ids(h.tokenizer, req.rendered), target_ids(h.tokenizer, req.target_new)
    ids = torch.tensor([prompt + target[:-1]])
    name = h.arch.name("mlp_out", layer)
    weight = h.model.get_submodule(name).weight
    weight.requires_grad_(True)
    try:
        with Trace(h.model, [name], retain_input=True, detach=False) as tr:
            logits = h.model(input_ids=ids).logits[0, len(prompt) - 1 :]
        out = tr[name].output
        out.retain_grad()
        torch.nn.functional.cross_entropy(logits.float(), torch.tensor(target)).backward()
    finally:
        weight.requires_grad_(False)
        weight.grad = None
    return tr[name].input[0].detach().double(), out.grad[0].double()


def test_ultraedit_update_is_the_normalised_ridge_solve(tiny) -> None:
    """A fresh editor's update equals the method computed here from scratch: features
    z = [k, g] normalised by their own mean and (unbiased) deviation, pseudo-values
    -lr ||k_hat||^2 g_hat, and the ridge regression from the raw keys to them, solved in the
    d_in x d_in form (the editor solves the n x n form)."""
    req, lr, ridge, eps = REQS[0], 0.01, 1.0, 1e-6
    keys, grads = _ultra_features(tiny, req, 1)
    z = torch.cat([keys, grads], 1)
    z_hat = (z - z.mean(0)) / (z.std(0) + eps)
    k_hat, g_hat = z_hat[:, : keys.shape[1]], z_hat[:, keys.shape[1] :]
    values = -lr * (k_hat**2).sum(1, keepdim=True) * g_hat
    gram = keys.T @ keys + ridge * torch.eye(keys.shape[1], dtype=torch.float64)
    want = torch.linalg.solve(gram, keys.T @ values).T  # (out, in)
    delta = get_editor("ultraedit", ULTRA).edit(tiny, [req])
    (name,) = delta.names
    got = delta.dense(name).double()
    got = got.T if tiny.arch.spec.mlp_out_transposed else got
    assert float(want.abs().max()) > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


def test_ultraedit_runs_no_optimisation(tiny, monkeypatch) -> None:
    """One forward pass per request, whatever the settings (no steps to set), and no
    optimiser: the update is computed in closed form from one gradient."""
    calls = []
    handle = tiny.model.register_forward_pre_hook(lambda *_: calls.append(1))

    def no_optimiser(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("UltraEdit must not build an optimiser")

    monkeypatch.setattr(torch.optim, "Adam", no_optimiser)
    monkeypatch.setattr(torch.optim, "SGD", no_optimiser)
    try:
        for lr, reqs in [(0.01, REQS[:1]), (1.0, REQS), (1e-4, REQS)]:
            calls.clear()
            get_editor("ultraedit", ULTRA, lr=lr).edit(tiny, reqs)
            assert len(calls) == len(reqs)
    finally:
        handle.remove()
    with pytest.raises(EditriskError, match="unknown hyperparameter"):
        get_editor("ultraedit", steps=10)


def test_ultraedit_lifelong_statistics_are_those_of_all_features(tiny) -> None:
    """After two turns the running statistics are the mean and deviation of both turns'
    features at once; the state's size after 1 and after 5 turns is the same."""
    from editrisk.editors.ultraedit import RunningMoments

    ed = get_editor("ultraedit", ULTRA)
    feats = [torch.cat(ed.features(tiny, r, [1])[1], 1) for r in REQS]
    for r in REQS:
        ed.edit(tiny, [r])
    both = torch.cat(feats)
    stats = ed.moments[1]
    assert int(stats.count) == both.shape[0]
    torch.testing.assert_close(stats.mean, both.mean(0))
    torch.testing.assert_close(stats.std(), both.std(0))
    one = RunningMoments(both.shape[1])
    for chunk in torch.split(both, 3):  # any split of the rows: the same statistics
        one.add(chunk)
    torch.testing.assert_close(one.tensors(), stats.tensors())

    sizes = []
    ed = get_editor("ultraedit", dict(ULTRA, layers=(1, 2)))
    for i in range(5):
        delta = ed.edit(tiny, [REQS[i % 2]])
        delta.apply(tiny.model, backup=False)
        if i in (0, 4):
            sizes.append({k: tuple(v.shape) for k, v in ed.state_dict().items()})
    assert sizes[0] == sizes[1] and len(sizes[0]) == 2


def test_ultraedit_state_round_trip(tiny) -> None:
    """A clone loaded with the editor's state makes the same next edit (a fresh editor, with
    other statistics, does not); bad state is refused."""
    ed = get_editor("ultraedit", ULTRA)
    for r in REQS:
        ed.edit(tiny, [r]).apply(tiny.model, backup=False)
    clone = get_editor("ultraedit", ULTRA)
    clone.load_state_dict(ed.state_dict())
    assert all(torch.equal(clone.state_dict()[k], v) for k, v in ed.state_dict().items())
    nxt = [e.edit(tiny, REQS[:1]) for e in (ed, clone, get_editor("ultraedit", ULTRA))]
    (name,) = nxt[0].names
    assert torch.equal(nxt[0].dense(name), nxt[1].dense(name))
    assert not torch.allclose(nxt[0].dense(name), nxt[2].dense(name))
    clone.reset()
    assert clone.state_dict() == {}
    with pytest.raises(EditriskError, match="not an UltraEdit state"):
        clone.load_state_dict({"sums.1": torch.zeros(3, 4)})
    with pytest.raises(EditriskError, match="not UltraEdit statistics"):
        clone.load_state_dict({"moments.1": torch.zeros(4)})


def test_ultraedit_answer_positions_need_a_stream(tiny) -> None:
    """At the answer positions a single-token edit has one feature row: on a fresh editor it
    is its own mean, so the update is empty; once the statistics have seen a stream
    (`observe`), the same edit raises the target."""
    from editrisk.evaluation import score_targets

    req = REQS[0]
    hp = dict(ULTRA, positions="answer", lr=0.1)
    fresh = get_editor("ultraedit", hp).edit(tiny, [req])
    assert all(float(fresh.dense(n).abs().max()) == 0 for n in fresh.names)
    ed = get_editor("ultraedit", hp)
    ed.observe(tiny, REQS)
    assert int(ed.moments[1].count) == len(REQS)  # one answer position each
    (before,) = score_targets(tiny, [(req.rendered, req.target_new)])
    with ed.edit(tiny, [req]).applied(tiny.model):
        (after,) = score_targets(tiny, [(req.rendered, req.target_new)])
    assert after.mean_logprob > before.mean_logprob + 0.05
