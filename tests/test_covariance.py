"""Covariance statistics: the blocked second moment, one pass for many layers against a
per-layer reference, the disk cache and its recorded provenance."""

from __future__ import annotations

import pytest
import torch

from editrisk.editing.covariance import (
    Corpus,
    SecondMoment,
    _token_chunks,
    covariance_info,
    layer_covariances,
)
from editrisk.hooks import Trace

TEXT = (
    "The capital of France is Paris. Rome is in Italy and Berlin is in Germany. "
    "Rivers run to the sea, and mountains rise above the plains of the old continent. "
)
CORPUS = Corpus(tuple(TEXT * k for k in (1, 2, 3, 4)), "test-corpus-v1")


@pytest.mark.parametrize(
    ("dim", "blocks", "flush"), [(37, 4, 16384), (37, 4, 5), (16, 4, 7), (5, 1, 1), (3, 8, 100)]
)
def test_blocked_second_moment_is_xtx(dim: int, blocks: int, flush: int) -> None:
    """Whatever the blocking and however often the float32 buffer is folded in."""
    g = torch.Generator().manual_seed(dim)
    xs = [torch.randn(n, dim, generator=g) for n in (11, 7)]
    m = SecondMoment(dim, blocks, flush_rows=flush)
    for x in xs:
        m.add(x)
    full = torch.cat(xs).double()
    torch.testing.assert_close(m.moment(), full.T @ full / 18, rtol=1e-5, atol=1e-6)
    assert m.count == 18
    restored = SecondMoment(dim, blocks)
    restored.load_state_dict(m.state_dict())
    restored.add(xs[0])
    torch.testing.assert_close(
        restored.sum, m.sum + (xs[0].T @ xs[0]).double(), rtol=1e-5, atol=1e-5
    )


def reference(h, layer: int, chunks: list[list[int]]) -> torch.Tensor:  # noqa: ANN001
    """E[k k^T] from one forward per chunk, no padding, no early stop."""
    name = h.arch.name("mlp_out", layer)
    total, n = 0, 0
    for c in chunks:
        with torch.no_grad(), Trace(h.model, name, retain_input=True) as tr:
            h.model(input_ids=torch.tensor([c]))
        k = tr[name].input[0].double()
        total = total + k.T @ k
        n += k.shape[0]
    return total / n


def test_one_pass_for_several_layers_matches_reference(tiny, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    layers = [0, tiny.arch.n_layers - 1]
    got = layer_covariances(
        tiny, layers, CORPUS, max_tokens=300, seq_len=24, batch_size=3, progress=False
    )
    chunks = _token_chunks(tiny, CORPUS, 24, 300)
    for layer in layers:
        torch.testing.assert_close(got[layer], reference(tiny, layer, chunks), rtol=1e-4, atol=1e-6)
        info = covariance_info(tiny, layer, CORPUS, 300, seq_len=24)
        assert info["corpus"] == "test-corpus-v1" and info["seq_len"] == "24"
        assert int(info["tokens"]) == sum(len(c) for c in chunks) <= 300


def test_cached_layers_are_loaded_and_only_missing_ones_computed(
    tiny, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    first = layer_covariances(tiny, [1], CORPUS, max_tokens=200, progress=False)
    calls = []
    original = tiny.model.forward
    monkeypatch.setattr(tiny.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = layer_covariances(tiny, [1], CORPUS, max_tokens=200, progress=False)
    assert calls == [] and torch.equal(again[1], first[1])  # from disk, no forward pass
    both = layer_covariances(tiny, [0, 1], CORPUS, max_tokens=200, progress=False)
    assert calls and torch.equal(both[1], first[1]) and 0 in both
    # another token budget or corpus is another statistic
    assert covariance_info(tiny, 1, CORPUS, 100) is None
    assert covariance_info(tiny, 1, Corpus(CORPUS.texts, "other"), 200) is None


def test_sequence_length_is_part_of_the_cache_key(tiny, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Chunks of 8 tokens give another statistic than chunks of 32 (each chunk's first tokens
    see little context): the second is computed and cached beside the first, not read from it."""
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    short = layer_covariances(tiny, [1], CORPUS, max_tokens=200, seq_len=8, progress=False)
    long = layer_covariances(tiny, [1], CORPUS, max_tokens=200, seq_len=32, progress=False)
    assert not torch.allclose(short[1], long[1])
    files = sorted(tmp_path.rglob("L1-*.safetensors"))
    assert len(files) == 2 and all(".tmp" not in f.name for f in files)
    assert covariance_info(tiny, 1, CORPUS, 200, seq_len=8)["seq_len"] == "8"
    assert covariance_info(tiny, 1, CORPUS, 200, seq_len=32)["seq_len"] == "32"
    assert covariance_info(tiny, 1, CORPUS, 200, seq_len=16) is None
    again = layer_covariances(tiny, [1], CORPUS, max_tokens=200, seq_len=8, progress=False)
    assert torch.equal(again[1], short[1])
