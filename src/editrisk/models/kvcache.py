"""The key/value cache across transformers 5.x releases, which rename the forward argument
and output field `past_key_values` to `cache` (the old name warns, then goes away)."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def cache_kwargs(model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """The forward keyword that passes `cache` to `model`, under the name it accepts."""
    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def cache_of(output: Any) -> Any:
    """The cache a forward returned (`output.cache`, or `past_key_values` before the rename)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
