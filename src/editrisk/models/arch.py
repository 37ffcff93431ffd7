"""Architecture table: abstract locations -> module paths, one entry per causal-LM family.

Adding a family is one `ArchSpec` entry. Layer-indexed paths contain `{}` for the layer index.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from editrisk.errors import EditriskError, UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchSpec:
    """Where the editable parts of one model family live.

    `mlp_out_transposed` is True when the MLP output projection stores its weight as
    (in_features, out_features) (GPT-2's Conv1D) rather than torch's (out, in).
    """

    family: str
    model_types: tuple[str, ...]
    layers: str
    mlp_in: str
    mlp_out: str
    mlp: str
    attn: str
    final_norm: str
    unembed: str
    embed: str
    n_layer_attr: str
    hidden_attr: str
    intermediate_attr: str | None
    mlp_out_transposed: bool = False


ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec(
        family="gpt2",
        model_types=("gpt2",),
        layers="transformer.h",
        mlp_in="transformer.h.{}.mlp.c_fc",
        mlp_out="transformer.h.{}.mlp.c_proj",
        mlp="transformer.h.{}.mlp",
        attn="transformer.h.{}.attn",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        embed="transformer.wte",
        n_layer_attr="n_layer",
        hidden_attr="n_embd",
        intermediate_attr="n_inner",
        mlp_out_transposed=True,
    ),
    ArchSpec(
        family="gptj",
        model_types=("gptj",),
        layers="transformer.h",
        mlp_in="transformer.h.{}.mlp.fc_in",
        mlp_out="transformer.h.{}.mlp.fc_out",
        mlp="transformer.h.{}.mlp",
        attn="transformer.h.{}.attn",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        embed="transformer.wte",
        n_layer_attr="n_layer",
        hidden_attr="n_embd",
        intermediate_attr="n_inner",
    ),
    ArchSpec(
        family="gpt-neox",
        model_types=("gpt_neox",),
        layers="gpt_neox.layers",
        mlp_in="gpt_neox.layers.{}.mlp.dense_h_to_4h",
        mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
        mlp="gpt_neox.layers.{}.mlp",
        attn="gpt_neox.layers.{}.attention",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",
        embed="gpt_neox.embed_in",
        n_layer_attr="num_hidden_layers",
        hidden_attr="hidden_size",
        intermediate_attr="intermediate_size",
    ),
    ArchSpec(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3"),
        layers="model.layers",
        mlp_in="model.layers.{}.mlp.up_proj",
        mlp_out="model.layers.{}.mlp.down_proj",
        mlp="model.layers.{}.mlp",
        attn="model.layers.{}.self_attn",
        final_norm="model.norm",
        unembed="lm_head",
        embed="model.embed_tokens",
        n_layer_attr="num_hidden_layers",
        hidden_attr="hidden_size",
        intermediate_attr="intermediate_size",
    ),
)

LOCATIONS = ("mlp_in", "mlp_out", "mlp", "attn", "final_norm", "unembed", "embed")


def supported_model_types() -> list[str]:
    return sorted(t for spec in ARCHITECTURES for t in spec.model_types)


def spec_for(model_type: str) -> ArchSpec:
    for spec in ARCHITECTURES:
        if model_type in spec.model_types:
            return spec
    raise UnsupportedArchitectureError(
        f"model type '{model_type}' is not in editrisk's architecture table; "
        f"supported: {', '.join(supported_model_types())}"
    )


class LayerRangeError(EditriskError, IndexError):
    """A layer index the model does not have (an input error, and an IndexError)."""


@dataclass(frozen=True)
class ArchMap:
    """An `ArchSpec` resolved against one model: sizes plus location -> module name."""

    spec: ArchSpec
    n_layers: int
    hidden_size: int
    intermediate_size: int

    @classmethod
    def for_model(cls, model: nn.Module) -> ArchMap:
        config = model.config
        spec = spec_for(config.model_type)
        hidden = getattr(config, spec.hidden_attr)
        inter = getattr(config, spec.intermediate_attr, None) if spec.intermediate_attr else None
        return cls(spec, getattr(config, spec.n_layer_attr), hidden, inter or 4 * hidden)

    @property
    def family(self) -> str:
        return self.spec.family

    def name(self, location: str, layer: int | None = None) -> str:
        """Module name of `location` ('mlp_out', 'final_norm', ...) at `layer`."""
        if location not in LOCATIONS:
            raise KeyError(f"unknown location '{location}'; known: {', '.join(LOCATIONS)}")
        template = getattr(self.spec, location)
        if "{}" in template:
            if layer is None:
                raise ValueError(f"location '{location}' needs a layer index")
            if not -self.n_layers <= layer < self.n_layers:
                raise LayerRangeError(
                    f"layer {layer} is out of range: the model has {self.n_layers} layers"
                )
            return template.format(layer % self.n_layers)
        return template

    def layer_module(self, layer: int) -> str:
        return f"{self.spec.layers}.{layer % self.n_layers}"

    def weight_name(self, location: str, layer: int | None = None) -> str:
        return self.name(location, layer) + ".weight"

    def module(self, model: nn.Module, location: str, layer: int | None = None) -> nn.Module:
        return model.get_submodule(self.name(location, layer))

    def layer_of(self, param_name: str) -> int | None:
        """Layer index of a parameter name under this family's layer stack, else None."""
        prefix = self.spec.layers + "."
        if not param_name.startswith(prefix):
            return None
        head = param_name[len(prefix) :].split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def editable(self) -> dict[str, str]:
        """Location -> module-name template, for display."""
        return {loc: getattr(self.spec, loc) for loc in LOCATIONS}
