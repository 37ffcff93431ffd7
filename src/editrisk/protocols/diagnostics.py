"""Per-step weight diagnostics of every edited matrix: the weight itself, the cumulative
delta since the start of the run and this step's delta (L1 sum and mean, Frobenius, spectral
by power iteration, optionally the condition number)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from editrisk.delta import layer_of
from editrisk.diagnostics import matrix_norms


def step_diagnostics(
    model: nn.Module,
    cumulative: Mapping[str, torch.Tensor],
    step: Mapping[str, torch.Tensor] | None = None,
    spectral_iters: int = 8,
    condition: bool = False,
) -> list[dict[str, float | int | str | None]]:
    """One row per edited parameter (the keys of `cumulative`), norms prefixed `weight.`,
    `cum.` and `step.`. `condition` adds the weight's condition number (an SVD: not cheap)."""
    params = dict(model.named_parameters())
    rows: list[dict[str, float | int | str | None]] = []
    for name in sorted(cumulative):
        row: dict[str, float | int | str | None] = {"param": name, "layer": layer_of(name)}
        parts = [("weight", params[name], condition), ("cum", cumulative[name], False)]
        if step is not None and name in step:
            parts.append(("step", step[name], False))
        for prefix, matrix, cond in parts:
            norms = matrix_norms(matrix, spectral_iters=spectral_iters, condition=cond)
            row.update({f"{prefix}.{k}": v for k, v in norms.items()})
        rows.append(row)
    return rows
