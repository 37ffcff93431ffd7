"""What RECT and PRUNE share: an editor that post-processes the Delta of a base editor
(MEMIT, ROME or FT-L) named in its hyperparameters, with the base's own settings beside."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from editrisk.editors.base import Editor, HParams, get_editor, require
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle

BASES = ("memit", "rome", "ft")
# What the engine asks of a key/value editor (covariance warm-up); present only when the
# base has it, so `hasattr(editor, "covariances")` answers for the base.
_DELEGATED = frozenset({"covariances", "layers_for", "prefixes"})


@dataclasses.dataclass
class WrapParams(HParams):
    """`base`: the editor whose update is post-processed; `layers`: its layers (empty: the
    base's per-model default); `base_hparams`: its other settings, as for the base alone."""

    base: str = "memit"
    layers: tuple[int, ...] = ()
    base_hparams: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        require(self.base in BASES, f"base must be one of {BASES}, not {self.base!r}")
        require(all(int(x) >= 0 for x in self.layers), "layers must be >= 0")
        require("layers" not in self.base_hparams, "give 'layers' beside base_hparams, not in it")
        self.make_base()  # the base's settings are checked here, by the base

    def make_base(self) -> Editor:
        try:
            return get_editor(self.base, dict(self.base_hparams), layers=self.layers)
        except EditriskError as err:
            raise EditriskError(f"base_hparams: {err}") from None


class WrapEditor(Editor):
    """Base of the editors that post-process another editor's Delta."""

    hparams: WrapParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        self.base = self.hparams.make_base()

    def __getattr__(self, name: str) -> Any:
        base = self.__dict__.get("base")
        if name in _DELEGATED and base is not None:
            return getattr(base, name)
        raise AttributeError(name)

    def tokens_before_prompt(self) -> int:
        return self.base.tokens_before_prompt()

    def metadata(self, model: Any) -> dict[str, Any]:
        return {**self.base.metadata(model), **super().metadata(model), "base": self.base.name}

    def base_delta_dense(self, model: ModelHandle, requests: Any) -> dict[str, torch.Tensor]:
        """The base editor's update, parameter name -> dense float64 tensor."""
        delta = self.base.edit(model, requests)
        return {n: delta.dense(n).double() for n in delta.names}
