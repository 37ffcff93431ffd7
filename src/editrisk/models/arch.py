"""Architecture table: abstract locations -> module paths, one entry per causal-LM family.

A family is one validated `ArchSpec`: the built-in ones below, or one a user registers at
runtime with `register_architecture` (no editrisk code changes). Layer-indexed paths contain
`{}` for the layer index. Editors only need `mlp_out` (its input is the key, its output the
value), the layer stack (`layers`), `final_norm` and `unembed`; the other locations are shown
by `editrisk models show` and checked to exist when a model is resolved.

This module imports neither torch nor transformers (`import editrisk` stays cheap).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from editrisk.errors import EditriskError, UnsupportedArchitectureError

if TYPE_CHECKING:
    from torch import nn

LOCATIONS = ("mlp_in", "mlp_out", "mlp", "attn", "final_norm", "unembed", "embed")
LAYER_LOCATIONS = ("mlp_in", "mlp_out", "mlp", "attn")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_]+$")


class ArchitectureSpecError(EditriskError, ValueError):
    """An architecture entry with a missing, malformed or inconsistent field."""


@dataclass(frozen=True)
class ArchSpec:
    """Where the editable parts of one model family live (validated on construction).

    family: a short name ('llama'); model_types: the `config.model_type` values it covers.
    layers: the ModuleList of decoder blocks ('model.layers'); mlp_in / mlp_out: the MLP's
    input and output projections and mlp / attn: the MLP and attention blocks, each under
    `layers` with `{}` for the index ('model.layers.{}.mlp.down_proj'); final_norm, unembed,
    embed: global modules. n_layer_attr, hidden_attr, intermediate_attr: the config
    attributes holding depth, width and MLP width (None: 4 x width).
    `mlp_out_transposed` is True when the MLP output projection stores its weight as
    (in_features, out_features) (GPT-2's Conv1D) rather than torch's (out, in).
    `flat_mlp` is True when the layer flattens (batch, token) into one axis before the MLP
    (OPT): `load_model` then runs `mlp_out` on the token grid (see `models.adapters`).
    `mlp_post_norm` names a norm between the MLP and the residual stream (Gemma-2, OLMo-2):
    ROME is exact there, but MEMIT-style editors' layer-output target passes through that
    norm, so their edits are approximate (weaker) on such families.
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
    n_layer_attr: str = "num_hidden_layers"
    hidden_attr: str = "hidden_size"
    intermediate_attr: str | None = "intermediate_size"
    mlp_out_transposed: bool = False
    flat_mlp: bool = False
    mlp_post_norm: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model_types, str):
            object.__setattr__(self, "model_types", (self.model_types,))
        elif isinstance(self.model_types, (list, set, frozenset)):
            object.__setattr__(self, "model_types", tuple(self.model_types))
        for problem in self.problems():
            raise ArchitectureSpecError(f"architecture '{self.family}': {problem}")

    def problems(self) -> list[str]:
        """What is wrong with this entry (empty when it is usable)."""
        out = []
        if not isinstance(self.family, str) or not _NAME.match(self.family):
            out.append(
                f"field 'family' must be a short name (letters, digits, _ . -), got {self.family!r}"
            )
        types = self.model_types
        if not isinstance(types, tuple) or not types:
            out.append("field 'model_types' must be a non-empty list of config model types")
        elif not all(isinstance(t, str) and _NAME.match(t) for t in types):
            out.append(f"field 'model_types' holds a name that is not a model type: {types!r}")
        if not _is_path(self.layers, indexed=False):
            out.append(
                f"field 'layers' must be a dotted module path without {{}}, got {self.layers!r}"
            )
        for loc in LAYER_LOCATIONS:
            value = getattr(self, loc)
            head = f"{self.layers}.{{}}."
            if not _is_path(value, indexed=True) or not str(value).startswith(head):
                out.append(
                    f"field '{loc}' must be a module path under the layer stack, "
                    f"'{head}...' (with {{}} for the layer index), got {value!r}"
                )
        post = self.mlp_post_norm
        if post is not None and (
            not _is_path(post, indexed=True) or not post.startswith(f"{self.layers}.{{}}.")
        ):
            out.append(
                f"field 'mlp_post_norm' must be None or a module path under the layer stack, "
                f"got {post!r}"
            )
        for loc in ("final_norm", "unembed", "embed"):
            value = getattr(self, loc)
            if not _is_path(value, indexed=False):
                out.append(
                    f"field '{loc}' must be a dotted module path without {{}}, got {value!r}"
                )
        for attr in ("n_layer_attr", "hidden_attr"):
            if not isinstance(getattr(self, attr), str) or not _ATTR.match(getattr(self, attr)):
                out.append(
                    f"field '{attr}' must be a config attribute name, got {getattr(self, attr)!r}"
                )
        inter = self.intermediate_attr
        if inter is not None and (not isinstance(inter, str) or not _ATTR.match(inter)):
            out.append(
                f"field 'intermediate_attr' must be a config attribute name or None, got {inter!r}"
            )
        for flag in ("mlp_out_transposed", "flat_mlp"):
            if not isinstance(getattr(self, flag), bool):
                out.append(f"field '{flag}' must be true or false, got {getattr(self, flag)!r}")
        return out


def _is_path(value: Any, *, indexed: bool) -> bool:
    """A dotted module path; `indexed`: exactly one segment is the layer index `{}`."""
    if not isinstance(value, str) or not value:
        return False
    parts = value.split(".")
    holes = sum(p == "{}" for p in parts)
    return holes == int(indexed) and all(p == "{}" or _SEGMENT.match(p) for p in parts)


def _llama_like(family: str, model_types: tuple[str, ...], post_norm: bool = False) -> ArchSpec:
    """The layout Llama set and most decoder-only families since share."""
    return ArchSpec(
        family=family,
        model_types=model_types,
        layers="model.layers",
        mlp_in="model.layers.{}.mlp.up_proj",
        mlp_out="model.layers.{}.mlp.down_proj",
        mlp="model.layers.{}.mlp",
        attn="model.layers.{}.self_attn",
        final_norm="model.norm",
        unembed="lm_head",
        embed="model.embed_tokens",
        mlp_post_norm="model.layers.{}.post_feedforward_layernorm" if post_norm else None,
    )


# Built-in families; module names checked against transformers 5.x (tests build a tiny model
# of each and resolve every location). A family's model types share one layout.
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
    ),
    _llama_like("llama", ("llama", "mistral", "qwen2", "qwen3", "smollm3")),
    # Gemma's embedding multiplies by sqrt(width) inside the module, and Gemma-2 soft-caps its
    # logits after lm_head: editrisk's target optimisation reads lm_head(final norm) uncapped.
    _llama_like("gemma", ("gemma",)),
    _llama_like("gemma2", ("gemma2",), post_norm=True),
    _llama_like("olmo", ("olmo",)),
    _llama_like("olmo2", ("olmo2",), post_norm=True),
    ArchSpec(  # Phi-3 fuses the gate and up projections into one matrix
        family="phi3",
        model_types=("phi3",),
        layers="model.layers",
        mlp_in="model.layers.{}.mlp.gate_up_proj",
        mlp_out="model.layers.{}.mlp.down_proj",
        mlp="model.layers.{}.mlp",
        attn="model.layers.{}.self_attn",
        final_norm="model.norm",
        unembed="lm_head",
        embed="model.embed_tokens",
    ),
    ArchSpec(  # OPT has no MLP module: fc1 -> activation -> fc2 sit in the decoder layer
        family="opt",
        model_types=("opt",),
        layers="model.decoder.layers",
        mlp_in="model.decoder.layers.{}.fc1",
        mlp_out="model.decoder.layers.{}.fc2",
        mlp="model.decoder.layers.{}.fc2",
        attn="model.decoder.layers.{}.self_attn",
        final_norm="model.decoder.final_layer_norm",
        unembed="lm_head",
        embed="model.decoder.embed_tokens",
        intermediate_attr="ffn_dim",
        flat_mlp=True,
    ),
    ArchSpec(
        family="falcon",
        model_types=("falcon",),
        layers="transformer.h",
        mlp_in="transformer.h.{}.mlp.dense_h_to_4h",
        mlp_out="transformer.h.{}.mlp.dense_4h_to_h",
        mlp="transformer.h.{}.mlp",
        attn="transformer.h.{}.self_attention",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        embed="transformer.word_embeddings",
        intermediate_attr="ffn_hidden_size",
    ),
)

# Families registered at runtime, searched before the built-in ones.
_REGISTERED: list[ArchSpec] = []


def register_architecture(
    spec: ArchSpec | None = None, /, *, replace: bool = False, **fields: Any
) -> ArchSpec:
    """Register a causal-LM family so every editor can edit its models.

    Pass an `ArchSpec` or its fields as keywords (`family`, `model_types`, `layers`,
    `mlp_in`, `mlp_out`, `mlp`, `attn`, `final_norm`, `unembed`, `embed`, and the config
    attribute names if they differ from Llama's). A model type another family already
    covers is refused unless `replace=True` (then this entry wins). Returns the entry.
    """
    if spec is None:
        known = {f.name for f in dataclasses.fields(ArchSpec)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ArchitectureSpecError(
                f"register_architecture: unknown field(s) {unknown}; known: {sorted(known)}"
            )
        missing = [
            f.name
            for f in dataclasses.fields(ArchSpec)
            if f.name not in fields and f.default is dataclasses.MISSING
        ]
        if missing:
            raise ArchitectureSpecError(f"register_architecture: missing field(s) {missing}")
        spec = ArchSpec(**fields)
    elif fields:
        raise ArchitectureSpecError("register_architecture: pass an ArchSpec or fields, not both")
    elif not isinstance(spec, ArchSpec):
        raise ArchitectureSpecError(
            f"register_architecture: expected an ArchSpec, got {type(spec).__name__}"
        )
    if not replace:
        for other in architectures():
            taken = sorted(set(spec.model_types) & set(other.model_types))
            if taken:
                raise ArchitectureSpecError(
                    f"architecture '{spec.family}': model type(s) {taken} already belong to "
                    f"family '{other.family}'; pass replace=True to override it"
                )
    _REGISTERED[:] = [s for s in _REGISTERED if s.family != spec.family]
    _REGISTERED.insert(0, spec)
    return spec


def unregister_architecture(family: str) -> None:
    """Forget a family registered at runtime (built-in families cannot be removed)."""
    if not any(s.family == family for s in _REGISTERED):
        raise ArchitectureSpecError(f"no architecture '{family}' was registered at runtime")
    _REGISTERED[:] = [s for s in _REGISTERED if s.family != family]


def architectures() -> tuple[ArchSpec, ...]:
    """Every family, runtime registrations first (they win on a shared model type)."""
    return (*_REGISTERED, *ARCHITECTURES)


def supported_model_types() -> list[str]:
    return sorted({t for spec in architectures() for t in spec.model_types})


def spec_for(model_type: str) -> ArchSpec:
    for spec in architectures():
        if model_type in spec.model_types:
            return spec
    raise UnsupportedArchitectureError(
        f"model type '{model_type}' is not in editrisk's architecture table; "
        f"supported: {', '.join(supported_model_types())}. A new family is one "
        "editrisk.register_architecture(...) call (see README, 'Architectures')"
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
        """Resolve the model's family entry and check that its config attributes and every
        location exist (a wrong registration fails here, naming the field, not mid-edit)."""
        arch = cls.for_config(model.config)
        arch.check(model)
        return arch

    @classmethod
    def for_config(cls, config: Any) -> ArchMap:
        """The family entry and sizes a model config implies (no weights needed)."""
        spec = spec_for(config.model_type)

        def size(attr: str) -> Any:
            value = getattr(config, attr, None)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ArchitectureSpecError(
                    f"architecture '{spec.family}': config attribute '{attr}' of model type "
                    f"'{config.model_type}' is {value!r}, not an integer"
                )
            return value

        n_layers, hidden = size(spec.n_layer_attr), size(spec.hidden_attr)
        for attr, value in ((spec.n_layer_attr, n_layers), (spec.hidden_attr, hidden)):
            if value is None:
                raise ArchitectureSpecError(
                    f"architecture '{spec.family}': the config of model type "
                    f"'{config.model_type}' has no attribute '{attr}'"
                )
        inter = size(spec.intermediate_attr) if spec.intermediate_attr else None
        return cls(spec, n_layers, hidden, inter or 4 * hidden)

    def check(self, model: nn.Module) -> None:
        """Every location names a module of `model` (layer-indexed ones at layer 0)."""
        names = {loc: self.name(loc, 0 if loc in LAYER_LOCATIONS else None) for loc in LOCATIONS}
        if self.spec.mlp_post_norm is not None:
            names["mlp_post_norm"] = self.spec.mlp_post_norm.format(0)
        for loc, name in names.items():
            try:
                model.get_submodule(name)
            except AttributeError:
                raise ArchitectureSpecError(
                    f"architecture '{self.family}': field '{loc}' names module '{name}', "
                    f"which this {type(model).__name__} does not have"
                ) from None

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
