"""Per-model editing presets follow what the model is (its config), not the name it was
loaded by: published presets by shape, the depth rule for everything else."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import GPT2Config, GPTJConfig, LlamaConfig, Qwen3Config

import editrisk
from editrisk.editors import get_editor
from editrisk.editors._kv import default_layers
from editrisk.models import load_model
from editrisk.models.presets import editor_for, preset_for


def test_presets_resolve_the_same_by_name_and_from_a_folder(tmp_path) -> None:
    by_name = load_model("tiny-llama", device="cpu")
    folder = editrisk.export_model(by_name, None, tmp_path / "copy")
    from_folder = load_model(str(folder), device="cpu")
    assert from_folder.name != by_name.name  # the name string differs...
    for editor in ("rome", "memit", "alphaedit", "ft"):
        a, b = preset_for(by_name, editor), preset_for(from_folder, editor)
        assert a == b  # ...what it is does not
        assert default_layers(by_name, editor) == default_layers(from_folder, editor) == a.layers
    assert preset_for(from_folder, "rome").rule == "tiny: tiny fixtures"


# Config objects only (no weights): the published presets match by model type and shape.
PUBLISHED = [
    # (config, editor, layers, a setting the paper uses, rule)
    (GPT2Config(n_layer=48, n_embd=1600, n_head=25), "rome", (17,), ("clamp_norm_factor", 4.0),
     "published: GPT-2 XL"),
    (GPT2Config(n_layer=48, n_embd=1600, n_head=25), "memit", (13, 14, 15, 16, 17),
     ("mom2_weight", 20000.0), "published: GPT-2 XL"),
    (GPTJConfig(), "rome", (5,), ("steps", 20), "published: GPT-J-6B"),
    (GPTJConfig(), "memit", (3, 4, 5, 6, 7, 8), ("mom2_weight", 15000.0), "published: GPT-J-6B"),
    (LlamaConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
                 vocab_size=128256), "memit", (4, 5, 6, 7, 8), ("lr", 0.1),
     "published: Llama-3-8B"),
    (LlamaConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
                 vocab_size=128256), "alphaedit", (4, 5, 6, 7, 8), ("l2", 10.0),
     "published: Llama-3-8B"),
    (LlamaConfig(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                 vocab_size=49152), "rome", (6,), None, "measured: smollm2-135m"),
    (LlamaConfig(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                 vocab_size=49152), "rect", (2, 3, 4, 5, 6), ("keep_fraction", 0.5),
     "measured: smollm2-135m"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "editor", "layers", "setting", "rule"), PUBLISHED)
def test_published_presets_match_by_config(config, editor, layers, setting, rule) -> None:
    p = preset_for(config, editor)
    assert (p.layers, p.rule) == (layers, rule)
    if setting is not None:
        assert p.settings[setting[0]] == setting[1]
        get_editor(editor, p.hparams)  # the preset is valid for the editor


def test_ft_takes_romes_layer_but_not_its_settings() -> None:
    p = preset_for(GPT2Config(n_layer=48, n_embd=1600, n_head=25), "ft")
    assert p.layers == (17,) and p.settings == {}


@pytest.mark.parametrize(
    ("make", "rome_frac"),
    [
        (lambda n: GPT2Config(n_layer=n, n_embd=64, n_head=4), 17 / 48),
        (lambda n: GPTJConfig(n_layer=n, n_embd=64, n_head=4, rotary_dim=4), 5 / 28),
        (lambda n: Qwen3Config(num_hidden_layers=n, hidden_size=64), 5 / 32),
    ],
)
def test_fallback_scales_with_depth(make, rome_frac) -> None:
    """Not a published shape: layers at the reference model's fractions of depth."""
    seen = []
    for n in (8, 16, 24, 48, 96):
        p = preset_for(make(n), "rome")
        assert p.rule.startswith("depth:") and p.settings == {}
        (layer,) = p.layers
        assert 0 <= layer < n and abs(layer - rome_frac * n) <= 0.5
        window = preset_for(make(n), "memit").layers
        assert window == tuple(range(window[0], window[-1] + 1)) and window[-1] < n
        seen.append(layer)
    assert seen == sorted(seen) and seen[-1] > seen[0]  # deeper model, deeper layer


def test_gpt2_xl_shaped_other_width_gets_layer_17_from_depth() -> None:
    p = preset_for(GPT2Config(n_layer=48, n_embd=1280, n_head=20), "rome")
    assert p.layers == (17,) and p.rule.startswith("depth:")


def test_editor_for_puts_the_caller_over_the_preset() -> None:
    h = load_model("tiny-gpt2", device="cpu")
    ed = editor_for(h, "rome", {"steps": 3})
    assert ed.hparams.steps == 3 and ed.hparams.token == "prompt_last"
    assert ed.hparams.layers == preset_for(h, "rome").layers


def test_editors_with_their_own_settings_get_no_preset() -> None:
    """UltraEdit's lr and GRACE's layer mean something else than MEMIT's: no preset leaks."""
    h = load_model("tiny-gpt2", device="cpu")
    big = GPT2Config(n_layer=48, n_embd=1600, n_head=25)
    for name in ("ultraedit", "grace"):
        with pytest.raises(editrisk.EditriskError, match="no preset"):
            preset_for(big, name)
        assert editor_for(h, name).hparams == get_editor(name).hparams
    assert editor_for(h, "ultraedit", {"lr": 5e-4}).hparams.lr == 5e-4


@pytest.mark.slow
def test_smollm2_defaults_whatever_it_is_called(smollm) -> None:
    for name in ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "/models/smollm2"):
        h = dataclasses.replace(smollm, name=name)
        assert default_layers(h, "rome") == (6,)
        assert default_layers(h, "memit") == (2, 3, 4, 5, 6)
