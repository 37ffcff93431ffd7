"""Architecture table, loading, fingerprints and the real model."""

from __future__ import annotations

import pytest
import torch

from editrisk import EditriskError, load_model
from editrisk.models.arch import LOCATIONS, ArchMap, spec_for, supported_model_types
from editrisk.models.loading import model_fingerprint


def _check_locations(h) -> None:
    for loc in LOCATIONS:
        layer = 0 if "{}" in getattr(h.arch.spec, loc) else None
        assert h.arch.module(h.model, loc, layer) is not None
    down = h.arch.module(h.model, "mlp_out", h.arch.n_layers - 1)
    up = h.arch.module(h.model, "mlp_in", 0)
    w = down.weight
    in_dim = w.shape[0] if h.arch.spec.mlp_out_transposed else w.shape[1]
    out_dim = w.shape[1] if h.arch.spec.mlp_out_transposed else w.shape[0]
    assert in_dim == h.arch.intermediate_size and out_dim == h.arch.hidden_size
    assert up is not None
    assert h.arch.layer_of(h.arch.weight_name("mlp_out", 2)) == 2


def test_every_location_resolves_on_every_family(tiny_family) -> None:
    _check_locations(tiny_family)


def test_unknown_family_lists_supported() -> None:
    with pytest.raises(EditriskError, match="supported: .*gpt2.*llama.*register_architecture"):
        spec_for("bert")
    for model_type in ("qwen2", "qwen3", "gemma", "gemma2", "phi3", "opt", "falcon", "olmo"):
        assert model_type in supported_model_types()


def test_layer_index_checked(tiny) -> None:
    with pytest.raises(IndexError):
        tiny.arch.name("mlp_out", tiny.arch.n_layers)
    assert tiny.arch.name("mlp_out", -1) == tiny.arch.name("mlp_out", tiny.arch.n_layers - 1)


def test_tiny_models_are_seeded(tiny_family) -> None:
    tiny = tiny_family
    again = load_model(tiny.name, device="cpu")
    other = load_model(tiny.name, device="cpu", seed=1)
    assert again.fingerprint() == tiny.fingerprint()
    assert other.fingerprint() != tiny.fingerprint()


def test_fingerprint_tracks_weights() -> None:
    h = load_model("tiny-gpt2", device="cpu")
    fp = model_fingerprint(h.model)
    with torch.no_grad():
        h.model.get_submodule(h.arch.name("mlp_out", 0)).weight[0, 0] += 1.0
    assert model_fingerprint(h.model) != fp


def test_bad_specs_are_clear(tmp_path) -> None:
    with pytest.raises(EditriskError, match="unknown model 'nope'.*not in the local Hugging Face"):
        load_model("nope")  # a short hub id (like gpt2), offline in tests and not cached
    with pytest.raises(EditriskError, match="without config.json"):
        load_model(str(tmp_path))
    with pytest.raises(EditriskError, match="GGUF file not found"):
        load_model(str(tmp_path / "x.gguf"))
    with pytest.raises(EditriskError, match="dtype"):
        load_model("tiny-gpt2", dtype="int3")


def test_local_folder_round_trip(tmp_path) -> None:
    h = load_model("tiny-llama", device="cpu")
    h.model.save_pretrained(tmp_path)
    h.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), device="cpu")
    assert again.fingerprint() == h.fingerprint()
    assert again.arch == ArchMap.for_model(h.model)


def test_dtype_option(tiny) -> None:
    h = load_model(tiny.name, device="cpu", dtype="bfloat16")
    assert h.dtype == torch.bfloat16
    logits = h.model(**h.encode(["Paris"])).logits
    assert logits.dtype == torch.bfloat16


@pytest.mark.slow
def test_real_model_architecture_and_fact(smollm) -> None:
    assert smollm.arch.family == "llama" and smollm.arch.n_layers == 30
    _check_locations(smollm)
    assert smollm.generate("The capital of France is", max_new_tokens=3).startswith(" Paris")
