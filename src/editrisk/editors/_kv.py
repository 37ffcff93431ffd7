"""What ROME, MEMIT, D4S and AlphaEdit share: per-model defaults, context prefixes,
covariance statistics and access to the MLP output projection's weight as (out, in)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from editrisk.delta import Delta, LowRank
from editrisk.editing.context import context_prefixes
from editrisk.editing.covariance import get_corpus, layer_covariances
from editrisk.editing.targets import DECAYS, STOP_RULES, TargetSettings
from editrisk.editors.base import Editor, HParams, require
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.models.presets import preset_for


def default_layers(h: ModelHandle, editor: str) -> tuple[int, ...]:
    """The per-model default layers of `editor` ("rome": one layer; else MEMIT's window),
    from the preset its config matches (`editrisk.models.presets`: published, measured,
    tiny-fixture or depth rule), never from the name it was loaded by."""
    return preset_for(h, editor).layers


@dataclasses.dataclass
class KVParams(HParams):
    """Settings shared by the key/value editors (see `TargetSettings` for the v/z loss)."""

    layers: tuple[int, ...] = ()  # empty: per-model default
    steps: int = 20
    lr: float = 0.5
    weight_decay: float = 0.5
    kl_factor: float = 0.0625
    clamp_norm_factor: float = 4.0
    stop_loss: float = 0.05
    decay: str = "squared"
    stop_on: str = "nll"
    token: str = "subject_last"
    prefixes: tuple[tuple[int, int], ...] = ((5, 5), (5, 10))  # (count, tokens) per length
    corpus: str = "pydoc"  # 'pydoc', 'model-samples', 'hf:NAME', or paths
    corpus_tokens: int = 32768
    seed: int = 0

    def validate(self) -> None:
        require(self.steps >= 1, "steps must be >= 1")
        require(self.lr > 0, "lr must be > 0")
        require(self.clamp_norm_factor > 0, "clamp_norm_factor must be > 0")
        require(self.corpus_tokens > 0, "corpus_tokens must be > 0")
        require(self.decay in DECAYS, f"decay must be one of {DECAYS}")
        require(self.stop_on in STOP_RULES, f"stop_on must be one of {STOP_RULES}")
        require(all(int(x) >= 0 for x in self.layers), "layers must be >= 0")

    def target_settings(self) -> TargetSettings:
        return TargetSettings(
            steps=self.steps,
            lr=self.lr,
            weight_decay=self.weight_decay,
            kl_factor=self.kl_factor,
            clamp_norm_factor=self.clamp_norm_factor,
            stop_loss=self.stop_loss,
            decay=self.decay,
            stop_on=self.stop_on,
        )


class KVEditor(Editor):
    """Base of the key/value editors."""

    hparams: KVParams

    def layers_for(self, h: ModelHandle) -> tuple[int, ...]:
        layers = self.hparams.layers or default_layers(h, self.name)
        for layer in layers:
            h.arch.name("mlp_out", layer)  # range check
        return tuple(sorted(layers))

    def prefixes(self, h: ModelHandle) -> list[str]:
        return context_prefixes(h, self.hparams.prefixes, seed=self.hparams.seed)

    def covariances(self, h: ModelHandle, layers: tuple[int, ...]) -> dict[int, torch.Tensor]:
        corpus = get_corpus(h, self.hparams.corpus)
        stats = layer_covariances(h, layers, corpus, max_tokens=self.hparams.corpus_tokens)
        return {k: v.to(h.device) for k, v in stats.items()}

    def metadata(self, model: Any) -> dict[str, Any]:
        meta = super().metadata(model)
        meta["layers"] = list(self.layers_for(model))
        return meta


def weight_out_in(h: ModelHandle, layer: int) -> torch.Tensor:
    """The MLP output projection's weight at `layer` as a float64 (out, in) matrix."""
    w = h.model.get_submodule(h.arch.name("mlp_out", layer)).weight.detach()
    w = w.T if h.arch.spec.mlp_out_transposed else w
    return w.double()


def update_for(
    h: ModelHandle, layer: int, update: torch.Tensor | LowRank
) -> tuple[str, torch.Tensor | LowRank]:
    """(parameter name, update in the parameter's own layout) for an (out, in) update."""
    name = h.arch.weight_name("mlp_out", layer)
    dtype = torch.float32
    if isinstance(update, LowRank):
        left, right = update.left.to(dtype), update.right.to(dtype)
        if h.arch.spec.mlp_out_transposed:
            left, right = right, left
        return name, LowRank(left, right)
    update = update.to(dtype)
    return name, (update.T.contiguous() if h.arch.spec.mlp_out_transposed else update)


def delta_from(
    h: ModelHandle, updates: dict[int, torch.Tensor | LowRank], metadata: dict[str, Any]
) -> Delta:
    return Delta(dict(update_for(h, layer, u) for layer, u in updates.items()), metadata)


def layer_state(kind: str, tensors: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An editor's per-layer tensors as `state_dict` entries `<kind>.<layer>`."""
    return {f"{kind}.{layer}": t for layer, t in tensors.items()}


def load_layer_state(state: dict[str, Any], kind: str, editor: str) -> dict[int, torch.Tensor]:
    """Per-layer float64 tensors from `layer_state` entries; any other entry is an error."""
    out = {}
    for key, value in state.items():
        name, _, layer = key.partition(".")
        if name != kind or not layer.isdigit():
            raise EditriskError(f"not {editor} state entry: {key}")
        out[int(layer)] = value.to(torch.float64)
    return out
