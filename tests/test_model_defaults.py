"""Per-model editing defaults follow what the model is, not the name it was loaded by."""

from __future__ import annotations

import dataclasses

import pytest

import editrisk
from editrisk.editors import _kv
from editrisk.editors._kv import default_layers, model_identity
from editrisk.models import load_model


def test_defaults_resolve_the_same_by_name_and_from_an_export(tmp_path, monkeypatch) -> None:
    by_name = load_model("tiny-llama", device="cpu")
    folder = editrisk.export_model(by_name, None, tmp_path / "copy")
    from_folder = load_model(str(folder), device="cpu")
    assert from_folder.name != by_name.name  # the name string differs...
    assert model_identity(from_folder) == model_identity(by_name)  # ...what it is does not
    monkeypatch.setitem(
        _kv.MODEL_DEFAULTS,
        model_identity(by_name),
        {"rome_layer": 3, "memit_layers": (1, 3)},
    )
    for editor, layers in (("rome", (3,)), ("memit", (1, 3))):
        assert default_layers(by_name, editor) == default_layers(from_folder, editor) == layers
    other = load_model("tiny-gpt2", device="cpu")
    assert model_identity(other) != model_identity(by_name)
    assert default_layers(other, "rome") != (3,)  # another architecture keeps the fallback


@pytest.mark.slow
def test_smollm2_defaults_whatever_it_is_called(smollm) -> None:
    for name in ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "/models/smollm2"):
        h = dataclasses.replace(smollm, name=name)
        assert default_layers(h, "rome") == (6,)
        assert default_layers(h, "memit") == (2, 3, 4, 5, 6)
