"""AlphaEdit's projector cache: keyed by layer, covariance and threshold, so one editor reused
on another model, corpus or threshold never projects with a stale null space."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from editrisk.editing.solvers import null_space_projector
from editrisk.editors.alphaedit import AlphaEdit, tensor_digest
from editrisk.models import load_model
from editrisk.requests import EditRequest

# Fast settings for random tiny models (as in test_editors.py); a loose threshold so that the
# projector depends visibly on the covariance.
HP = dict(
    layers=(1, 2),
    steps=10,
    lr=1.0,
    weight_decay=0.0,
    kl_factor=0.0,
    clamp_norm_factor=50.0,
    corpus_tokens=1024,
    prefixes=(),
    null_space_threshold=0.9,
    l2=0.01,
)
REQ = [EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr")]


@pytest.fixture
def cache(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))


def spd(seed: int, dim: int = 12) -> torch.Tensor:
    x = torch.randn(
        dim, 3 * dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    return x @ x.T / (3 * dim)


def test_projector_follows_covariance_and_threshold() -> None:
    ed = AlphaEdit(HP)
    a, b = spd(0), spd(1)
    pa = ed.projector(1, a)
    assert torch.equal(ed.projector(1, a.clone()), pa)  # equal content: cached
    assert ed.projector(1, a.clone()) is pa
    pb = ed.projector(1, b)  # another covariance on the same layer: its own projector
    torch.testing.assert_close(pb, null_space_projector(b, 0.9), rtol=0, atol=0)
    assert not torch.allclose(pa, pb)
    ed.hparams.null_space_threshold = 0.5  # another threshold: recomputed too
    torch.testing.assert_close(ed.projector(1, a), null_space_projector(a, 0.5), rtol=0, atol=0)
    assert not torch.allclose(ed.projector(1, a), pa)


def test_digest_is_content_shape_and_dtype() -> None:
    a = spd(0)
    assert tensor_digest(a) == tensor_digest(a.clone())
    assert tensor_digest(a) != tensor_digest(spd(1))
    assert tensor_digest(a) != tensor_digest(a.float())
    assert tensor_digest(a) != tensor_digest(a.reshape(-1))


def assert_same_delta(d1, d2) -> None:  # noqa: ANN001
    assert d1.names == d2.names
    for name in d1.names:
        torch.testing.assert_close(d1.dense(name), d2.dense(name), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("first", "second"), [("tiny-gpt2", "tiny-neox"), ("tiny-llama", "tiny-qwen2")]
)
def test_editor_reused_on_another_model_edits_as_a_fresh_one(
    cache, first: str, second: str
) -> None:
    """Same MLP width, so a projector kept per layer only would silently be reused."""
    a, b = load_model(first, device="cpu"), load_model(second, device="cpu")
    reused = AlphaEdit(HP)
    reused.edit(a, REQ)
    reused.reset()  # forget a's keys; the projectors are a cache, not memory
    got = reused.edit(b, REQ)
    want = AlphaEdit(HP).edit(b, REQ)
    assert_same_delta(got, want)


def test_editor_reused_with_another_corpus(cache, tmp_path) -> None:  # noqa: ANN001
    h = load_model("tiny-gpt2", device="cpu")
    text = tmp_path / "corpus.txt"
    text.write_text("Rivers run to the sea and mountains rise above the plains. " * 60)
    reused = AlphaEdit(HP)
    reused.edit(h, REQ)
    reused.reset()
    reused.hparams = dataclasses.replace(reused.hparams, corpus=str(text))
    got = reused.edit(h, REQ)
    want = AlphaEdit(dict(HP, corpus=str(text))).edit(h, REQ)
    assert_same_delta(got, want)


def test_state_dict_round_trip_continues_the_sequence(cache) -> None:  # noqa: ANN001
    """past K K^T is state (saved); projectors are derived (recomputed after loading)."""
    h = load_model("tiny-gpt2", device="cpu")
    second = [EditRequest("Japan", "The capital of {} is", "Europe", "Tokyo", id="jp")]
    ed = AlphaEdit(HP)
    ed.edit(h, REQ)
    state = ed.state_dict()
    assert set(state) == {"past_kk.1", "past_kk.2"}
    restored = AlphaEdit(HP)
    restored.load_state_dict(state)
    assert_same_delta(restored.edit(h, second), ed.edit(h, second))
