"""Architectures by registration, every built-in family's locations, the OPT adapter, hub ids
that fail fast offline, and the tiny-fixture preset under which edits take on every family."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, BloomConfig, Olmo2Config

import editrisk
from editrisk import EditriskError
from editrisk.evaluation import score_targets
from editrisk.models import TINY_MODELS, load_model, tiny_tokenizer
from editrisk.models.arch import (
    ARCHITECTURES,
    LOCATIONS,
    ArchitectureSpecError,
    ArchMap,
    ArchSpec,
    register_architecture,
    spec_for,
    unregister_architecture,
)
from editrisk.models.presets import editor_for
from editrisk.models.tiny import build_tiny
from editrisk.requests import EditRequest

BLOOM = dict(
    family="toy-bloom",
    model_types=("bloom",),
    layers="transformer.h",
    mlp_in="transformer.h.{}.mlp.dense_h_to_4h",
    mlp_out="transformer.h.{}.mlp.dense_4h_to_h",
    mlp="transformer.h.{}.mlp",
    attn="transformer.h.{}.self_attention",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    embed="transformer.word_embeddings",
    n_layer_attr="n_layer",
    intermediate_attr=None,  # 4 x width
)


# Requests; a test edits those a model does not already answer with the new target.
POOL = [
    EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr"),
    EditRequest("Canada", "{} is located in", "Africa", "America", id="ca"),
    EditRequest("Japan", "The official language of {} is spoken in", "Europe", "Tokyo", id="jp"),
    EditRequest("Germany", "The capital of {} is", "Rome", "Berlin", id="de"),
    EditRequest("Brazil", "People in {} pay with", "euros", "money", id="br"),
    EditRequest("Egypt", "{} is a city in", "Asia", "Africa", id="eg"),
]


@pytest.fixture
def registry():
    """Runtime registrations made by a test are forgotten after it."""
    from editrisk.models import arch

    saved = list(arch._REGISTERED)
    yield
    arch._REGISTERED[:] = saved


def _toy_bloom_folder(tmp_path):
    """A seeded random BLOOM (a family editrisk does not ship) saved as a model folder."""
    cfg = BloomConfig(vocab_size=512, hidden_size=32, n_layer=4, n_head=4, bos_token_id=0,
                      eos_token_id=0, pad_token_id=0, initializer_range=0.3)  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    return str(tmp_path)


def _logp(h, req: EditRequest) -> tuple[float, float]:
    new, true = score_targets(h, [(req.rendered, req.target_new), (req.rendered, req.target_true)])
    return new.mean_logprob, true.mean_logprob


def test_registered_toy_family_edits_end_to_end(tmp_path, registry) -> None:
    folder = _toy_bloom_folder(tmp_path)
    with pytest.raises(EditriskError, match="'bloom' is not in .*register_architecture"):
        load_model(folder, device="cpu")
    spec = editrisk.register_architecture(**BLOOM)
    assert spec_for("bloom") is spec
    h = load_model(folder, device="cpu")
    assert (h.arch.family, h.arch.n_layers, h.arch.intermediate_size) == ("toy-bloom", 4, 128)
    req = next(r for r in POOL if (lambda p: p[0] < p[1])(_logp(h, r)))  # not known before
    before = _logp(h, req)
    delta = editrisk.edit(h, "rome", [req], editor_for(h, "rome").hparams)
    assert set(delta.names) == {"transformer.h.0.mlp.dense_4h_to_h.weight"}
    with delta.applied(h.model):
        after = _logp(h, req)
    assert before[0] < before[1] and after[0] > after[1], (before, after)


def _spec(**changes):
    return {**BLOOM, **changes}


BAD_ENTRIES = [
    # (fields, words the error must contain)
    (_spec(family=""), ["'family'"]),
    (_spec(model_types=()), ["'model_types'"]),
    (_spec(model_types=("ok", "no spaces")), ["'model_types'"]),
    (_spec(layers="transformer.h.{}"), ["'layers'"]),
    (_spec(mlp_out="transformer.h.mlp.dense_4h_to_h"), ["'mlp_out'", "{}"]),
    (_spec(mlp_out="other.{}.mlp.fc"), ["'mlp_out'", "transformer.h.{}."]),
    (_spec(attn="transformer.h.{}.{}.attn"), ["'attn'"]),
    (_spec(final_norm="transformer.h.{}.ln"), ["'final_norm'"]),
    (_spec(unembed="lm head"), ["'unembed'"]),
    (_spec(n_layer_attr="n-layer"), ["'n_layer_attr'"]),
    (_spec(intermediate_attr=3), ["'intermediate_attr'"]),
    (_spec(mlp_out_transposed="yes"), ["'mlp_out_transposed'"]),
    (_spec(mlp_post_norm="transformer.ln_f"), ["'mlp_post_norm'"]),
    ({**_spec(), "mlp_outt": "x"}, ["unknown field", "mlp_outt"]),
    ({k: v for k, v in BLOOM.items() if k != "mlp_out"}, ["missing field", "mlp_out"]),
    (_spec(model_types=("llama",)), ["'llama'", "family 'llama'", "replace=True"]),
]


@pytest.mark.parametrize(("fields", "words"), BAD_ENTRIES)
def test_bad_entries_are_refused_by_field(fields, words, registry) -> None:
    with pytest.raises(ArchitectureSpecError) as err:
        register_architecture(**fields)
    for word in words:
        assert word in str(err.value)
    assert spec_for("llama").family == "llama"  # nothing half-registered


def test_replace_overrides_a_built_in_model_type_and_unregister_restores_it(registry) -> None:
    mine = register_architecture(**_spec(family="my-llama", model_types=("llama",)), replace=True)
    assert spec_for("llama") is mine
    unregister_architecture("my-llama")
    assert spec_for("llama").family == "llama"
    with pytest.raises(ArchitectureSpecError, match="no architecture 'my-llama'"):
        unregister_architecture("my-llama")
    with pytest.raises(ArchitectureSpecError, match="not both"):
        register_architecture(mine, family="x")


def test_wrong_module_names_fail_when_the_model_is_resolved(registry) -> None:
    model = build_tiny("tiny-gpt2")
    gpt2 = dataclasses.asdict(spec_for("gpt2"))
    register_architecture(ArchSpec(**{**gpt2, "family": "typo", "mlp": "transformer.h.{}.mpl"}),
                          replace=True)  # fmt: skip
    with pytest.raises(
        ArchitectureSpecError, match="field 'mlp' names module 'transformer.h.0.mpl'"
    ):
        ArchMap.for_model(model)
    register_architecture(ArchSpec(**{**gpt2, "family": "typo2", "hidden_attr": "width"}),
                          replace=True)  # fmt: skip
    with pytest.raises(ArchitectureSpecError, match="has no attribute 'width'"):
        ArchMap.for_model(model)


def test_every_built_in_model_type_has_a_tiny_fixture_or_a_location_check() -> None:
    """The fixtures cover every family but OLMo-2, checked below on a config-built model."""
    fixture_types = {build_tiny(n).config.model_type for n in TINY_MODELS}
    families = {spec_for(t).family for t in fixture_types}
    assert {s.family for s in ARCHITECTURES} - families == {"olmo2"}


def _check_locations(h_model, arch) -> None:
    for loc in LOCATIONS:
        layer = 0 if "{}" in getattr(arch.spec, loc) else None
        assert arch.module(h_model, loc, layer) is not None
    w = arch.module(h_model, "mlp_out", arch.n_layers - 1).weight
    in_dim, out_dim = (w.shape[0], w.shape[1]) if arch.spec.mlp_out_transposed else w.shape[::-1]
    assert (in_dim, out_dim) == (arch.intermediate_size, arch.hidden_size)


def test_olmo2_locations_resolve() -> None:
    cfg = Olmo2Config(vocab_size=512, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, pad_token_id=0,
                      bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg)
    arch = ArchMap.for_model(model)
    assert arch.family == "olmo2" and arch.spec.mlp_post_norm is not None
    _check_locations(model, arch)


def test_opt_runs_its_mlp_on_the_token_grid_with_the_same_numbers() -> None:
    """OPT flattens (batch, token) before fc2; the adapter keeps hooks on the grid and the
    model's outputs unchanged."""
    raw = build_tiny("tiny-opt")
    h = load_model("tiny-opt", device="cpu")
    batch = h.encode(["The capital of France is", "Canada is located in the north of"])
    with torch.no_grad():
        torch.testing.assert_close(h.model(**batch).logits, raw(**batch).logits)
    seen = []
    fc2 = h.arch.module(h.model, "mlp_out", 1)
    handle = fc2.register_forward_hook(lambda _m, a, out: seen.append((a[0].shape, out.shape)))
    try:
        with torch.no_grad():
            h.model(**batch)
    finally:
        handle.remove()
    n, t = batch["input_ids"].shape
    assert seen == [((n, t, 64), (n, t, 32))]


# --- the tiny-fixture preset: edits that take on every family --------------------------


@pytest.mark.parametrize("editor", ["rome", "memit"])
def test_tiny_preset_edits_take_on_every_family(tiny_family, editor: str) -> None:
    """With the tiny fixtures' preset (`editrisk models show tiny-*`), P(new) ends above
    P(true) on requests where it was below, on every family; MEMIT-style edits are
    approximate where a norm follows the MLP (Gemma-2), so only ROME is held to it there."""
    h = tiny_family
    if editor == "memit" and h.arch.spec.mlp_post_norm is not None:
        pytest.skip("MEMIT's layer-output target passes the post-MLP norm (mlp_post_norm)")
    ed = editor_for(h, editor)
    assert ed.hparams.token == "prompt_last" and ed.hparams.layers[0] == 0
    below = [r for r in POOL if (lambda p: p[0] < p[1])(_logp(h, r))][:2]
    assert below, "no request has P(new) < P(true) before the edit"
    for req in below:
        with ed.edit(h, [req]).applied(h.model):
            new, true = _logp(h, req)
        assert new > true, f"{h.name} {editor} {req.id}: P(new) {new:.2f} <= P(true) {true:.2f}"


def test_default_settings_do_not_take_on_a_tiny_fixture() -> None:
    """Why the tiny preset exists: with ROME's own defaults the edit misses on a fixture."""
    from editrisk.editors import get_editor

    h = load_model("tiny-llama", device="cpu")
    req = POOL[0]
    new0, true0 = _logp(h, req)
    assert new0 < true0
    with get_editor("rome").edit(h, [req]).applied(h.model):
        new1, true1 = _logp(h, req)
    assert new1 < true1


# --- hub ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["someone/not-a-real-model-0", "not-a-real-short-id-0"])
def test_hub_id_offline_fails_fast_with_the_way_to_work_offline(name, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EditriskError) as err:
        load_model(name, device="cpu")
    msg = str(err.value)
    for words in (f"unknown model '{name}'", "not in the local Hugging Face cache",
                  "HF_HUB_OFFLINE is set", "local model folder", "smollm2-135m"):  # fmt: skip
        assert words in msg


def test_hub_id_unreachable_hub_says_so(monkeypatch) -> None:
    from editrisk.models import sources

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_unreachable", lambda timeout=2.0: "hub.example: refused")
    with pytest.raises(EditriskError, match=r"cannot be reached \(hub.example: refused\)"):
        load_model("gpt2-not-cached-0", device="cpu")


def test_hub_probe_gives_up_within_its_timeout(monkeypatch) -> None:
    """The probe answers from a local socket: reachable while it listens, the reason once
    it is closed (no network needed)."""
    import socket

    from editrisk.models import sources

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert sources.hub_unreachable(timeout=0.5) is None  # it accepts: reachable
        server.close()
        assert sources.hub_unreachable(timeout=0.5) is not None  # closed: refused
    finally:
        server.close()


def test_names_that_are_not_hub_ids_are_refused(tmp_path) -> None:
    for name in ("a/b/c", "bad name", "-x"):
        with pytest.raises(EditriskError, match="hub id \\('gpt2', 'owner/name'\\)"):
            load_model(name, device="cpu")


@pytest.mark.parametrize(
    ("offline", "cached", "down", "expected"),
    [
        ("1", True, None, True),  # offline, cached: from the cache only
        ("0", True, "hub.example: refused", True),  # no hub, cached: from the cache only
        ("0", True, None, False),  # hub up: transformers checks for updates as usual
        ("0", False, None, False),  # hub up, not cached: download
    ],
)
def test_hub_ids_load_from_the_cache_when_the_hub_cannot_be_used(
    offline, cached, down, expected, monkeypatch
) -> None:
    from editrisk.models import sources

    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_cached", lambda repo_id: cached)
    monkeypatch.setattr(sources, "hub_unreachable", lambda timeout=2.0: down)
    source = sources.resolve_source("gpt2")
    assert (source.kind, source.name, source.local_only) == ("hub", "gpt2", expected)


def test_models_show_prints_each_editors_preset_and_the_rule(tmp_path) -> None:
    from typer.testing import CliRunner

    from editrisk.cli import app

    h = load_model("tiny-opt", device="cpu")
    h.model.save_pretrained(tmp_path)
    h.tokenizer.save_pretrained(tmp_path)
    out = CliRunner().invoke(app, ["models", "show", str(tmp_path)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for words in ("editing presets", "tiny: tiny fixtures", "token=prompt_last",
                  "matched on: model_type opt, 4 layers, width 32", "--set key=value"):  # fmt: skip
        assert words in text
    rows = {line.split("│")[1].strip(): line for line in out.output.splitlines() if "│" in line}
    assert "[0]" in rows["rome"] and "[0,1]" in rows["memit"] and "(editor defaults)" in rows["ft"]
    bad = CliRunner().invoke(app, ["models", "show", "not-cached-short-id-0"])
    assert bad.exit_code == 2 and "HF_HUB_OFFLINE is set" in " ".join(bad.output.split())
