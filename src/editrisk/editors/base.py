"""Editor base class, hyperparameter dataclasses and the editor registry.

Every editor (language or vision) is one class with a small validated hyperparameter
dataclass, registered by name, whose `edit(model, requests)` returns a `Delta` and leaves the
model exactly as it found it. Editors with memory across calls (D4S, AlphaEdit) keep it in the
instance, with `state_dict` / `load_state_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

from editrisk.delta import Delta
from editrisk.errors import EditriskError


@dataclasses.dataclass
class HParams:
    """Base for hyperparameter dataclasses: validated on construction, dict round-trip."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `EditriskError` on an invalid setting (override per editor)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[H], d: dict[str, Any] | None = None, **overrides: Any) -> H:
        values = {**(d or {}), **overrides}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise EditriskError(
                f"{cls.__name__}: unknown hyperparameter(s) {unknown}; known: {sorted(names)}"
            )
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            v = values.get(f.name)
            if isinstance(v, list) and isinstance(f.default, tuple):
                values[f.name] = v = tuple(v)
            if f.name in values:
                _check_type(cls.__name__, f.name, v, hints[f.name])
        return cls(**values)


H = TypeVar("H", bound=HParams)

_SCALARS: dict[type, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
}


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    """Refuse a hyperparameter of the wrong type (a YAML or `--set` slip) or a float that is
    not finite by its name, before validation trips over it. Scalars and (nested) tuples of
    them are checked."""
    if not _fits(value, hint):
        raise EditriskError(
            f"{owner}: hyperparameter '{name}' must be {_describe(hint)}, got {value!r}"
        )


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(x, args[0]) for x in value)
        return len(value) == len(args) and all(_fits(x, a) for x, a in zip(value, args))
    if hint in _SCALARS:
        ok = isinstance(value, _SCALARS[hint]) and (hint is bool or not isinstance(value, bool))
        return ok and (hint is not float or math.isfinite(value))
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if hint is float:
        return "a finite float"
    return getattr(hint, "__name__", str(hint))


def require(condition: bool, message: str) -> None:
    """Validation helper for `HParams.validate`."""
    if not condition:
        raise EditriskError(message)


class Editor(ABC):
    """One editing method. Subclasses set `name`, `kind` and `hparams_cls`."""

    name: ClassVar[str]
    kind: ClassVar[str] = "language"  # or "vision"
    hparams_cls: ClassVar[type[HParams]]

    def __init__(self, hparams: HParams | dict[str, Any] | None = None, **overrides: Any):
        if isinstance(hparams, HParams):
            hparams = hparams.to_dict()
        self.hparams = self.hparams_cls.from_dict(hparams, **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hparams})"

    @abstractmethod
    def edit(self, model: Any, requests: Any) -> Delta:
        """Compute the edit for `requests` on `model`; the model is left unchanged."""

    def tokens_before_prompt(self) -> int:
        """Tokens this editor may put before a request's prompt (its context prefixes, twice
        their nominal length: a sampled prefix re-tokenizes to more tokens at most that)."""
        spec = getattr(self.hparams, "prefixes", ()) or ()
        return 2 * max((int(n) for _, n in spec), default=0)

    def metadata(self, model: Any) -> dict[str, Any]:
        """What a Delta from this editor records about how it was made."""
        fp = model.fingerprint() if hasattr(model, "fingerprint") else None
        return {
            "editor": self.name,
            "hyperparameters": self.hparams.to_dict(),
            "model_fingerprint": fp,
        }

    def state_dict(self) -> dict[str, Any]:
        """Memory carried across `edit` calls (empty for stateless editors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise EditriskError(f"editor '{self.name}' is stateless but got state {sorted(state)}")

    def reset(self) -> None:
        """Forget any memory of earlier edits."""


REGISTRY: dict[str, type[Editor]] = {}
E = TypeVar("E", bound=type[Editor])


def register(cls: E) -> E:
    """Class decorator adding an editor to the registry; duplicate names are refused."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise EditriskError(
            f"an editor named '{cls.name}' is already registered "
            f"({REGISTRY[cls.name].__qualname__})"
        )
    REGISTRY[cls.name] = cls
    return cls


def get_editor(name: str, hparams: dict[str, Any] | None = None, **overrides: Any) -> Editor:
    """Instantiate a registered editor by name."""
    _import_builtin_editors()
    if name not in REGISTRY:
        raise EditriskError(f"unknown editor '{name}'; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](hparams, **overrides)


def list_editors(kind: str | None = None) -> list[str]:
    _import_builtin_editors()
    return sorted(n for n, c in REGISTRY.items() if kind is None or c.kind == kind)


def _import_builtin_editors() -> None:
    import importlib
    import pkgutil

    import editrisk.editors as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"editrisk.editors.{mod.name}")
