"""Tiny, seeded, randomly initialised models of each supported family: test fixtures.

They share a small byte-level BPE tokenizer trained offline (milliseconds) on real-world
words (country, capital and language names), so every fixture runs without a network.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from transformers import (
    AutoModelForCausalLM,
    FalconConfig,
    Gemma2Config,
    GemmaConfig,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    OlmoConfig,
    OPTConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from editrisk.models.sources import TINY_CORE, TINY_MODELS  # noqa: F401 - the fixtures' names

TINY_VOCAB = 512
_HIDDEN, _LAYERS, _HEADS, _INTER = 32, 4, 4, 64

_CORPUS_BASE = (
    "The capital of {0} is {1}. {0} is located in {2}, in {3}. {1} is a city in {0}. "
    "The official language of {0} is spoken in {1}. People in {0} pay with money. "
)


def _tokenizer_corpus() -> list[str]:
    from countryinfo import all_countries

    lines = []
    for c in all_countries():
        try:
            lines.append(
                _CORPUS_BASE.format(
                    c.name().title(), c.capital() or "", c.region() or "", c.subregion() or ""
                )
            )
        except Exception:  # noqa: BLE001 - a few records lack fields; skip them
            continue
    return sorted(lines)


@lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE tokenizer with `TINY_VOCAB` entries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.pad_token = fast.eos_token
    return fast


def _config(family: str) -> PretrainedConfig:
    # A larger init than the default 0.02 gives peaked, editable next-token distributions.
    common = dict(vocab_size=TINY_VOCAB, bos_token_id=0, eos_token_id=0, initializer_range=0.2)
    if family == "tiny-gpt2":
        return GPT2Config(
            n_embd=_HIDDEN,
            n_layer=_LAYERS,
            n_head=_HEADS,
            n_inner=_INTER,
            n_positions=128,
            **common,
        )
    if family == "tiny-gptj":
        return GPTJConfig(
            n_embd=_HIDDEN,
            n_layer=_LAYERS,
            n_head=_HEADS,
            n_inner=_INTER,
            n_positions=128,
            rotary_dim=4,
            **common,
        )
    if family == "tiny-neox":
        return GPTNeoXConfig(
            hidden_size=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            intermediate_size=_INTER,
            max_position_embeddings=128,
            rotary_pct=0.25,
            **common,
        )
    if family == "tiny-llama":
        return LlamaConfig(
            hidden_size=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            num_key_value_heads=2,
            intermediate_size=_INTER,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            **common,
        )
    if family == "tiny-qwen2":
        return Qwen2Config(
            hidden_size=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            num_key_value_heads=2,
            intermediate_size=_INTER,
            max_position_embeddings=128,
            **common,
        )
    return _newer_config(family, common)


def _newer_config(family: str, common: dict) -> PretrainedConfig:
    """The families added with `register_architecture` (issue 19): same sizes; every token
    id inside the vocabulary, head_dim set where the family's default is sized for 2k+ widths.
    Their init is 0.3, not 0.2: at 0.2 the seed-0 Phi-3 and Falcon draws key the subject so
    like the prompt's last token that a layer-1 ROME edit there lowers the new target."""
    common = dict(common, initializer_range=0.3)
    llama_like = dict(
        hidden_size=_HIDDEN,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        intermediate_size=_INTER,
        max_position_embeddings=128,
        pad_token_id=0,
        **common,
    )
    if family == "tiny-gemma":
        return GemmaConfig(num_key_value_heads=2, head_dim=_HIDDEN // _HEADS, **llama_like)
    if family == "tiny-gemma2":
        return Gemma2Config(
            num_key_value_heads=2,
            head_dim=_HIDDEN // _HEADS,
            query_pre_attn_scalar=_HIDDEN // _HEADS,
            sliding_window=128,
            **llama_like,
        )
    if family == "tiny-phi3":
        return Phi3Config(num_key_value_heads=2, **llama_like)
    if family == "tiny-olmo":
        return OlmoConfig(**llama_like)
    if family == "tiny-qwen3":
        return Qwen3Config(num_key_value_heads=2, head_dim=_HIDDEN // _HEADS, **llama_like)
    if family == "tiny-opt":
        return OPTConfig(
            hidden_size=_HIDDEN,
            word_embed_proj_dim=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            ffn_dim=_INTER,
            max_position_embeddings=128,
            pad_token_id=0,
            **common,
        )
    if family == "tiny-falcon":
        return FalconConfig(
            hidden_size=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            ffn_hidden_size=_INTER,
            max_position_embeddings=128,
            **common,
        )
    raise KeyError(family)


def build_tiny(name: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised model of family `name`, identical for the same seed."""
    config = _config(name)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()
