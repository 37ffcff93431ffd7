"""editrisk: edit trained networks and measure what each edit costs.

The public names load on first use (PEP 562 `__getattr__`), so `import editrisk` and the
`editrisk` command's help do not pay for torch and transformers until a name that needs them
is touched. `from editrisk import Delta` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Delta": "editrisk.delta",
    "EditRequest": "editrisk.requests",
    "EditriskError": "editrisk.errors",
    "InputError": "editrisk.errors",
    "LowRank": "editrisk.delta",
    "ModelHandle": "editrisk.models",
    "Neighbour": "editrisk.requests",
    "StopForward": "editrisk.hooks",
    "Trace": "editrisk.hooks",
    "cache_dir": "editrisk.settings",
    "edit": "editrisk.api",
    "export_model": "editrisk.api",
    "load_model": "editrisk.models",
    "register_architecture": "editrisk.models.arch",
}

__all__ = [
    "Delta",
    "EditRequest",
    "EditriskError",
    "InputError",
    "LowRank",
    "ModelHandle",
    "Neighbour",
    "StopForward",
    "Trace",
    "cache_dir",
    "edit",
    "export_model",
    "load_model",
    "register_architecture",
    "__version__",
]  # every name but __version__ has a _LAZY entry (tests/test_imports.py checks)

if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from editrisk.api import edit, export_model
    from editrisk.delta import Delta, LowRank
    from editrisk.errors import EditriskError, InputError
    from editrisk.hooks import StopForward, Trace
    from editrisk.models import ModelHandle, load_model
    from editrisk.models.arch import register_architecture
    from editrisk.requests import EditRequest, Neighbour
    from editrisk.settings import cache_dir


def _version() -> str:
    """The installed distribution's version (package metadata), or 0+unknown from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("editrisk")
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'editrisk' has no attribute {name!r}")
    globals()[name] = value  # cache: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
