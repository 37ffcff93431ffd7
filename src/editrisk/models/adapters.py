"""Small, reversible adaptations that let the shared edit machinery read a family's modules.

The keys, values and hooks read a module's input and output on the (batch, token, dim) grid.
OPT's decoder layer flattens (batch, token) into one axis before its MLP, so its `fc2` sees
(batch * token, dim). `TokenGridLinear` runs that Linear on the grid instead (same weights,
same numbers, same parameter names) and hands the layer the flat shape back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from editrisk.models.arch import ArchitectureSpecError, ArchMap


class TokenGridLinear(nn.Linear):
    """An `nn.Linear` whose hooks see (batch, token, dim) although its caller passes
    (batch * token, dim); the grid comes from the enclosing layer's input (`_grid`)."""

    _grid: tuple[int, int] | None = None

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        grid = self._grid
        if x.ndim != 2 or grid is None or x.shape[0] != grid[0] * grid[1]:
            return super().__call__(x, *args, **kwargs)
        out = super().__call__(x.view(*grid, x.shape[-1]), *args, **kwargs)
        return out.reshape(x.shape[0], out.shape[-1])


def _record_grid(linear: TokenGridLinear):  # noqa: ANN202 - a torch hook
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        linear._grid = tuple(hidden.shape[:2]) if hidden is not None and hidden.ndim == 3 else None

    return hook


def adapt_model(model: nn.Module, arch: ArchMap) -> None:
    """Apply the family's adaptations to `model` in place (idempotent)."""
    if not arch.spec.flat_mlp:
        return
    for layer in range(arch.n_layers):
        linear = arch.module(model, "mlp_out", layer)
        if isinstance(linear, TokenGridLinear):
            continue
        if type(linear) is not nn.Linear:
            raise ArchitectureSpecError(
                f"architecture {arch.family!r}: flat_mlp needs an nn.Linear at "
                f"{arch.name('mlp_out', layer)}, not {type(linear).__name__}"
            )
        linear.__class__ = TokenGridLinear
        block = model.get_submodule(arch.layer_module(layer))
        block.register_forward_pre_hook(_record_grid(linear), with_kwargs=True)
