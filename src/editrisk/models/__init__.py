"""Models: loading, the architecture table, tiny fixtures, editing presets.

Names load on first use (PEP 562), so `editrisk.models.arch` (and `register_architecture`)
can be imported without torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "ARCHITECTURES": "editrisk.models.arch",
    "ArchMap": "editrisk.models.arch",
    "ArchSpec": "editrisk.models.arch",
    "architectures": "editrisk.models.arch",
    "register_architecture": "editrisk.models.arch",
    "spec_for": "editrisk.models.arch",
    "supported_model_types": "editrisk.models.arch",
    "unregister_architecture": "editrisk.models.arch",
    "BUILTIN_MODELS": "editrisk.models.sources",
    "ModelHandle": "editrisk.models.loading",
    "load_model": "editrisk.models.loading",
    "model_fingerprint": "editrisk.models.loading",
    "Preset": "editrisk.models.presets",
    "preset_for": "editrisk.models.presets",
    "TINY_CORE": "editrisk.models.sources",
    "TINY_MODELS": "editrisk.models.sources",
    "resolve_source": "editrisk.models.sources",
    "build_tiny": "editrisk.models.tiny",
    "tiny_tokenizer": "editrisk.models.tiny",
}

__all__ = [
    "ARCHITECTURES",
    "ArchMap",
    "ArchSpec",
    "BUILTIN_MODELS",
    "ModelHandle",
    "Preset",
    "TINY_CORE",
    "TINY_MODELS",
    "architectures",
    "build_tiny",
    "load_model",
    "model_fingerprint",
    "resolve_source",
    "preset_for",
    "register_architecture",
    "spec_for",
    "supported_model_types",
    "tiny_tokenizer",
    "unregister_architecture",
]  # every name has a _LAZY entry

if TYPE_CHECKING:
    from editrisk.models.arch import (
        ARCHITECTURES,
        ArchMap,
        ArchSpec,
        architectures,
        register_architecture,
        spec_for,
        supported_model_types,
        unregister_architecture,
    )
    from editrisk.models.loading import ModelHandle, load_model, model_fingerprint
    from editrisk.models.presets import Preset, preset_for
    from editrisk.models.sources import BUILTIN_MODELS, TINY_CORE, TINY_MODELS, resolve_source
    from editrisk.models.tiny import build_tiny, tiny_tokenizer


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'editrisk.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
