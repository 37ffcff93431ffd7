"""The interface every family adapter implements (see `editrisk.families`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel
from torch import nn

from editrisk.delta import Delta
from editrisk.editors.base import Editor

if TYPE_CHECKING:
    from editrisk.engine.config import StudyConfig

Row = dict[str, Any]


class Family(ABC):
    """A loaded model of one family with its edit sets, for one seed of a study.

    `Data`, `EditSet`, `Evaluation` are the schemas of the config's `data`, `edit_sets.<name>`
    and `evaluation` sections; `resolve_model` checks the `model` entry."""

    name: ClassVar[str]
    Data: ClassVar[type[BaseModel]]
    EditSet: ClassVar[type[BaseModel]]
    Evaluation: ClassVar[type[BaseModel]]

    def __init__(self, cfg: StudyConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self._unedited: dict[tuple, list[Row]] = {}

    @classmethod
    @abstractmethod
    def resolve_model(cls, model: Any, source: str) -> Any:
        """The config's `model` entry validated, defaults filled in (JSON-serialisable)."""

    @property
    @abstractmethod
    def module(self) -> nn.Module:
        """The torch module whose weights a Delta changes."""

    @property
    @abstractmethod
    def handle(self) -> Any:
        """What editors take as their model (a ModelHandle, a Classifier)."""

    @abstractmethod
    def model_info(self) -> dict[str, Any]:
        """Name, fingerprint and size of the unedited model, for the run record and rows."""

    @abstractmethod
    def edit_set(self, name: str) -> list[Any]:
        """The requests (or tasks) of edit set `name`, in order."""

    @abstractmethod
    def request_id(self, request: Any) -> str: ...

    @abstractmethod
    def n_layers(self) -> int:
        """Number of editable layers in the family's architecture table."""

    @abstractmethod
    def layer_index(self, param: str) -> int | None:
        """The architecture table's layer of parameter `param` (the one notion of layer)."""

    @abstractmethod
    def layer_params(self, layer: int) -> dict[str, Any]:
        """Editor hyperparameters that make an editor edit table layer `layer`."""

    def check_inputs(self, editor: Editor) -> None:  # noqa: B027 - optional
        """Refuse edit sets `editor` cannot take on this model (an `InputError` naming the
        record and field), before the run directory is written."""

    def warm(self, editor: Editor) -> None:  # noqa: B027 - optional
        """Fill the disk caches `editor` reads (statistics of the unedited model)."""

    def edit(self, editor: Editor, requests: Sequence[Any]) -> Delta:
        """One editor call; the Delta's parameters labelled with the table's layers."""
        return editor.edit(self.handle, list(requests)).with_layers(self.layer_index)

    @abstractmethod
    def evaluate(self, what: str, requests: Sequence[Any]) -> list[Row]:
        """Rows (a `kind` and metric columns) of the model's current state: `what` is
        'edits' (the given requests) or 'general' (the family's general ability)."""

    def evaluate_unedited(self, what: str, requests: Sequence[Any]) -> list[Row]:
        """`evaluate` of the unedited model (the caller guarantees it is), measured once per
        context and shared by every job (and every forked worker, when made before the fork)."""
        key = (what, tuple(self.request_id(r) for r in requests))
        if key not in self._unedited:
            self._unedited[key] = self.evaluate(what, requests)
        return self._unedited[key]

    def reference_rows(self) -> list[Row]:
        """Rows measured once per study and seed beside the unedited model (a testbed)."""
        return []

    def check_layer(self, layer: int | str) -> dict[str, Any]:
        """`layer_params` of a grid layer ('default' leaves the editor's own choice)."""
        if layer == "default":
            return {}
        n = self.n_layers()
        if not isinstance(layer, int) or not -n <= layer < n:
            from editrisk.errors import EditriskError

            raise EditriskError(f"layer {layer} is out of range: the model has {n} layers")
        return self.layer_params(layer % n)
