"""Models: loading, the architecture table, tiny fixtures."""

from editrisk.models.arch import ARCHITECTURES, ArchMap, ArchSpec, spec_for, supported_model_types
from editrisk.models.loading import BUILTIN_MODELS, ModelHandle, load_model, model_fingerprint
from editrisk.models.tiny import TINY_MODELS, build_tiny, tiny_tokenizer

__all__ = [
    "ARCHITECTURES",
    "ArchMap",
    "ArchSpec",
    "BUILTIN_MODELS",
    "ModelHandle",
    "TINY_MODELS",
    "build_tiny",
    "load_model",
    "model_fingerprint",
    "spec_for",
    "supported_model_types",
    "tiny_tokenizer",
]
