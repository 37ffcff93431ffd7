"""Family adapters: what the engine needs to know about one kind of model (language, vision).

A family loads the model, builds its edit sets, names the editable layers from its
architecture table and evaluates a model state into rows. A third family is one new module
that subclasses `Family` and calls `register_family`.
"""

from __future__ import annotations

from editrisk.errors import InputError
from editrisk.families.base import Family

_FAMILIES: dict[str, type[Family]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Register a family adapter under `cls.name` (duplicates are refused)."""
    if cls.name in _FAMILIES:
        raise ValueError(f"family {cls.name!r} is already registered")
    _FAMILIES[cls.name] = cls
    return cls


def get_family(name: str, source: str = "config") -> type[Family]:
    # Imported every time (a no-op once loaded): one family imported directly must not hide
    # the others from a registry that is no longer empty.
    from editrisk.families import language, vision  # noqa: F401 - they register

    if name not in _FAMILIES:
        raise InputError(
            f"unknown family {name!r}; known: {sorted(_FAMILIES)}", file=source, field="family"
        )
    return _FAMILIES[name]


__all__ = ["Family", "get_family", "register_family"]
