"""Editing presets chosen by what a model is (its config: model type and shapes), never by the
name it was loaded by: the same weights get the same settings whether loaded by built-in
name, hub id, local folder or from an `export_model` folder.

Rules, first match wins:
1. published: the settings ROME, MEMIT and AlphaEdit's papers ship for GPT-2 XL, GPT-J-6B and
   Llama-3-8B (their hparams files; every number below names its file);
2. measured: smollm2-135m's layers from editrisk's own layer sweep;
3. tiny: editrisk's random 4-layer test fixtures (settings under which edits take there);
4. depth: any other model, layers as the fractions of depth the papers chose for the
   nearest published model type (GPT-2 XL for gpt2, GPT-J for gptj / gpt_neox, Llama-3-8B
   for everything else), scaled to the model's depth.

A preset's `layers` are what an editor uses when its `layers` setting is left empty. Its
other settings are what the papers (or the measurements) used: apply them with
`editor_for(h, name)` or `editrisk edit ... --set key=value` (`editrisk models show` prints
them); an editor's own defaults stay what they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from editrisk.errors import EditriskError

if TYPE_CHECKING:
    from editrisk.editors.base import Editor
    from editrisk.models.loading import ModelHandle

# Editors whose layer choice is ROME's (one layer); every other key/value editor spreads over
# MEMIT's window (D4S, AlphaEdit, ENCORE, NSE and RECT/PRUNE's bases build on MEMIT or ROME).
ROME_LIKE = frozenset({"rome", "ft"})
# Editors whose settings mean something else (UltraEdit's `lr` scales pseudo-values, GRACE
# edits one layer's codebook): no preset, their own defaults choose.
OWN_SETTINGS = frozenset({"grace", "ultraedit"})


@dataclass(frozen=True)
class Shape:
    """What a model is, read from its config (the same for every copy of it)."""

    model_type: str
    family: str
    n_layers: int
    hidden: int
    intermediate: int
    vocab: int

    @classmethod
    def of_config(cls, config: Any) -> Shape:
        from editrisk.models.arch import ArchMap

        a = ArchMap.for_config(config)
        vocab = int(getattr(config, "vocab_size", 0) or 0)
        return cls(
            config.model_type, a.family, a.n_layers, a.hidden_size, a.intermediate_size, vocab
        )

    def describe(self) -> str:
        return (
            f"model_type {self.model_type}, {self.n_layers} layers, width {self.hidden}, "
            f"MLP {self.intermediate}, vocab {self.vocab}"
        )


@dataclass(frozen=True)
class ShapeRule:
    """Settings for models of these types with exactly these sizes (None: any)."""

    name: str
    kind: str  # 'published', 'measured' or 'tiny'
    model_types: tuple[str, ...] | None
    n_layers: int | None
    hidden: int | None
    rome: dict[str, Any]
    memit: dict[str, Any]
    source: str
    intermediate: int | None = None
    vocab: int | None = None
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # editor -> more settings

    def matches(self, s: Shape) -> bool:
        return (
            (self.model_types is None or s.model_type in self.model_types)
            and self.n_layers in (None, s.n_layers)
            and self.hidden in (None, s.hidden)
            and self.intermediate in (None, s.intermediate)
            and self.vocab in (None, s.vocab)
        )


# ROME/MEMIT's v* settings in editrisk's names: v_num_grad_steps -> steps, v_lr -> lr,
# v_weight_decay -> weight_decay, kl_factor, clamp_norm_factor, mom2_update_weight ->
# mom2_weight (both weigh the mean second moment C), mom2_adjustment -> use_covariance.
# Their covariance comes from 100,000 Wikipedia samples; editrisk's corpus is its own setting.
_ROME_V = dict(steps=20, lr=0.5, weight_decay=0.5, kl_factor=0.0625, clamp_norm_factor=4.0)
_MEMIT_V = dict(lr=0.5, weight_decay=0.5, kl_factor=0.0625, clamp_norm_factor=0.75)

SHAPE_RULES: tuple[ShapeRule, ...] = (
    ShapeRule(
        name="GPT-2 XL",
        kind="published",
        model_types=("gpt2",),
        n_layers=48,
        hidden=1600,
        # ROME: kmeng01/rome hparams/ROME/gpt2-xl.json (layer 17, 20 steps, lr 0.5, wd 0.5,
        # clamp 4, kl 0.0625). MEMIT: hparams/MEMIT/gpt2-xl.json (layers 13-17, 20 steps,
        # clamp 0.75, mom2_update_weight 20000).
        rome=dict(layers=(17,), **_ROME_V),
        memit=dict(layers=(13, 14, 15, 16, 17), steps=20, mom2_weight=20000.0, **_MEMIT_V),
        source="ROME (Meng et al. 2022) and MEMIT (Meng et al. 2023) hparams for gpt2-xl",
    ),
    ShapeRule(
        name="GPT-J-6B",
        kind="published",
        model_types=("gptj",),
        n_layers=28,
        hidden=4096,
        # ROME: kmeng01/rome hparams/ROME/EleutherAI_gpt-j-6B.json (layer 5, 20 steps,
        # lr 0.5, wd 0.5, clamp 4, kl 0.0625). MEMIT: kmeng01/memit
        # hparams/MEMIT/EleutherAI_gpt-j-6B.json (layers 3-8, 25 steps, clamp 0.75,
        # mom2_update_weight 15000).
        rome=dict(layers=(5,), **_ROME_V),
        memit=dict(layers=(3, 4, 5, 6, 7, 8), steps=25, mom2_weight=15000.0, **_MEMIT_V),
        source="ROME (Meng et al. 2022) and MEMIT (Meng et al. 2023) hparams for GPT-J-6B",
    ),
    ShapeRule(
        name="Llama-3-8B",
        kind="published",
        model_types=("llama",),
        n_layers=32,
        hidden=4096,
        intermediate=14336,
        # AlphaEdit (Fang et al. 2025), jianghoucheng/AlphaEdit: hparams/ROME/Llama3-8B.json
        # (layer 5, 25 steps, lr 0.5, wd 1e-3, clamp 4, kl 0.0625, mom2_adjustment false);
        # hparams/MEMIT/Llama3-8B.json (layers 4-8, 25 steps, lr 0.1, wd 0.5, clamp 0.75,
        # mom2_update_weight 15000); hparams/AlphaEdit/Llama3-8B.json adds
        # nullspace_threshold 2e-2 and L2 10.
        rome=dict(
            layers=(5,),
            steps=25,
            lr=0.5,
            weight_decay=1e-3,
            kl_factor=0.0625,
            clamp_norm_factor=4.0,
            use_covariance=False,
        ),  # fmt: skip
        memit=dict(
            layers=(4, 5, 6, 7, 8),
            steps=25,
            lr=0.1,
            weight_decay=0.5,
            kl_factor=0.0625,
            clamp_norm_factor=0.75,
            mom2_weight=15000.0,
        ),  # fmt: skip
        extra={"alphaedit": dict(null_space_threshold=0.02, l2=10.0)},
        source="AlphaEdit (Fang et al. 2025) hparams for Llama3-8B (its ROME, MEMIT, AlphaEdit)",
    ),
    ShapeRule(
        name="smollm2-135m",
        kind="measured",
        model_types=("llama",),
        n_layers=30,
        hidden=576,
        intermediate=1536,
        vocab=49152,
        # benchmarks/bench_layers.py: 20 known WorldFacts, ROME at layers 2-10; paraphrase
        # best at layer 6 (0.82), neighbourhood falling with depth (0.97 at 2, 0.92 at 6,
        # 0.80 at 10). MEMIT spreads over the window ending at that layer.
        rome=dict(layers=(6,)),
        memit=dict(layers=(2, 3, 4, 5, 6)),
        # benchmarks/bench_transfer.py --editors rect: keeping half of the entries (not the
        # paper's 0.2) was chosen on every one of ten leave-one-relation-out folds.
        extra={"rect": dict(keep_fraction=0.5)},
        source="editrisk's layer sweep on SmolLM2-135M (benchmarks/bench_layers.py); RECT's "
        "kept fraction by leave-one-relation-out (benchmarks/bench_transfer.py)",
    ),
)


def _tiny_rule() -> ShapeRule:
    """The tiny fixtures (random weights, 4 layers of width 32, vocab 512, any family).

    With an editor's own defaults few edits take on them: the subject's vector reaches the
    answer position only through 2-3 layers of random attention, so v* plateaus (nll about
    5.4 after 100 steps at layer 1; nothing at the last layer). Edited at the last prompt
    token of layer 0 (MEMIT: 0-1) with a free v* (no KL, no decay, clamp 50 x), P(new) ends
    above P(true) on 37 of the 37 requests (ROME; MEMIT 36) where it was below, of six
    WorldFacts-style requests on each of the 12 fixtures; with the defaults at the same
    layers, on 12 (ROME) and 9 (MEMIT). MEMIT's miss is on Gemma-2, whose MLP output passes
    a norm (`ArchSpec.mlp_post_norm`). Measured by benchmarks/bench_tiny_presets.py.
    """
    from editrisk.models.tiny import _HIDDEN, _LAYERS, TINY_VOCAB

    free_v = dict(
        token="prompt_last", steps=25, lr=1.0, weight_decay=0.0, kl_factor=0.0,
        clamp_norm_factor=50.0, stop_loss=0.01, prefixes=(), corpus_tokens=2048,
    )  # fmt: skip
    return ShapeRule(
        name="tiny fixtures",
        kind="tiny",
        model_types=None,
        n_layers=_LAYERS,
        hidden=_HIDDEN,
        vocab=TINY_VOCAB,
        rome=dict(layers=(0,), **free_v),
        memit=dict(layers=(0, 1), mom2_weight=1.0, **free_v),
        source="editrisk's tiny random fixtures: settings under which their edits take",
    )


@dataclass(frozen=True)
class DepthRule:
    """Layers as fractions of depth, from one published model's choices."""

    reference: str
    rome: float
    memit: tuple[float, float]


# ROME GPT-2 XL layer 17 of 48, MEMIT 13-17; ROME GPT-J layer 5 of 28, MEMIT 3-8; Llama-3-8B
# (AlphaEdit's ROME and MEMIT) layer 5 of 32, window 4-8. Sources as in SHAPE_RULES.
_GPT2 = DepthRule("GPT-2 XL (ROME 17/48, MEMIT 13-17/48)", 17 / 48, (13 / 48, 17 / 48))
_GPTJ = DepthRule("GPT-J-6B (ROME 5/28, MEMIT 3-8/28)", 5 / 28, (3 / 28, 8 / 28))
_LLAMA = DepthRule("Llama-3-8B (ROME 5/32, MEMIT 4-8/32)", 5 / 32, (4 / 32, 8 / 32))
DEPTH_RULES: dict[str, DepthRule] = {"gpt2": _GPT2, "gptj": _GPTJ, "gpt_neox": _GPTJ}
DEFAULT_DEPTH_RULE = _LLAMA


def _at(fraction: float, n_layers: int) -> int:
    """The layer at `fraction` of depth (half up), inside the model."""
    return min(n_layers - 1, max(0, int(fraction * n_layers + 0.5)))


@dataclass(frozen=True)
class Preset:
    """The settings `editor` would use on a model, and why.

    layers: the default layers; settings: the other hyperparameters the rule sets (empty
    for the depth rule: the editor's defaults); rule: 'published: GPT-2 XL', 'measured:
    smollm2-135m', 'tiny: tiny fixtures' or 'depth: ...'; why: what of the config matched;
    source: where the numbers come from.
    """

    editor: str
    layers: tuple[int, ...]
    settings: dict[str, Any]
    rule: str
    why: str
    source: str

    @property
    def hparams(self) -> dict[str, Any]:
        """Everything the preset sets, as editor hyperparameters."""
        return {"layers": self.layers, **self.settings}


def _fields(editor: str) -> set[str] | None:
    """Hyperparameter names of a registered editor (None if it is not registered)."""
    from editrisk.editors.base import REGISTRY, list_editors

    list_editors()  # imports the built-in editors, which registers them
    cls = REGISTRY.get(editor)
    return None if cls is None else {f.name for f in dataclasses.fields(cls.hparams_cls)}


def preset_for(h: ModelHandle | Any, editor: str) -> Preset:
    """The preset `editor` gets on `h` (a `ModelHandle` or a transformers config): the first
    shape rule its config matches, else layers at the depth fractions of its model type's
    reference model."""
    if editor in OWN_SETTINGS:
        raise EditriskError(f"no preset for '{editor}': it chooses its own layers and settings")
    config = h.model.config if hasattr(h, "model") else h
    shape = Shape.of_config(config)
    group = "rome" if editor in ROME_LIKE else "memit"
    for rule in (*SHAPE_RULES, _tiny_rule()):
        if rule.matches(shape):
            values = {**getattr(rule, group), **rule.extra.get(editor, {})}
            known = _fields(editor)
            if known is not None:  # keep what this editor has (FT has no kl_factor, ...)
                values = {k: v for k, v in values.items() if k in known or k == "layers"}
            layers = tuple(values.pop("layers"))
            if group == "rome" and editor != "rome":
                values = {}  # FT: only ROME's layer
            return Preset(
                editor, layers, values, f"{rule.kind}: {rule.name}", shape.describe(), rule.source
            )
    depth = DEPTH_RULES.get(shape.model_type, DEFAULT_DEPTH_RULE)
    n = shape.n_layers
    if group == "rome":
        layers: tuple[int, ...] = (_at(depth.rome, n),)
        how = f"layer {depth.rome:.3f} x {n}"
    else:
        lo, hi = (_at(f, n) for f in depth.memit)
        layers = tuple(range(lo, hi + 1))
        how = f"layers {depth.memit[0]:.3f}-{depth.memit[1]:.3f} x {n}"
    reference = "own" if shape.model_type in DEPTH_RULES else "default (Llama)"
    return Preset(
        editor,
        layers,
        {},
        f"depth: {how}",
        f"{shape.describe()}; {reference} reference {depth.reference}",
        "fractions of depth from the papers' choices (see SHAPE_RULES)",
    )


def editor_for(h: ModelHandle, editor: str, overrides: dict[str, Any] | None = None) -> Editor:
    """`editor` with `h`'s preset settings under `overrides` (what the caller sets wins)."""
    from editrisk.editors import get_editor

    if _fields(editor) is None:
        get_editor(editor)  # raises the registry's own error, listing the editors
    if editor in OWN_SETTINGS:
        return get_editor(editor, overrides)
    return get_editor(editor, {**preset_for(h, editor).hparams, **(overrides or {})})
