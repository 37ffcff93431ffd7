"""Weight diagnostics: L1 (sum and mean |w|), Frobenius, spectral norm, condition number, and
the per-step rows of every edited matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from editrisk.delta import Delta


def spectral_norm(matrix: torch.Tensor, iters: int = 0, seed: int = 0) -> float:
    """Largest singular value; exact (SVD) when `iters == 0`, else by `iters` power iterations."""
    m = matrix.detach().to(torch.float32)
    if m.ndim != 2:
        m = m.reshape(m.shape[0], -1)
    if iters <= 0:
        return float(torch.linalg.matrix_norm(m, ord=2))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(m.shape[1], generator=gen).to(m.device)
    v = v / v.norm()
    for _ in range(iters):
        u = m @ v
        v = m.T @ u
        v = v / v.norm().clamp_min(1e-30)
    return float((m @ v).norm())


def condition_number(matrix: torch.Tensor) -> float:
    """sigma_max / sigma_min of a 2-D weight (inf when singular)."""
    s = torch.linalg.svdvals(matrix.detach().to(torch.float32).reshape(matrix.shape[0], -1))
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def matrix_norms(
    matrix: torch.Tensor, *, spectral_iters: int = 0, condition: bool = False
) -> dict[str, float]:
    """The norms the D4S paper and the sequential-editing literature track, labelled."""
    m = matrix.detach().to(torch.float32)
    out = {
        "l1_sum": float(m.abs().sum()),
        "l1_mean": float(m.abs().mean()),
        "fro": float(torch.linalg.vector_norm(m)),
        "spectral": spectral_norm(m, iters=spectral_iters) if m.ndim >= 2 else float(m.abs().max()),
    }
    if condition and m.ndim >= 2:
        out["cond"] = condition_number(m)
    return out


def step_diagnostics(
    model: torch.nn.Module,
    cumulative: Delta,
    step: Delta | None = None,
    spectral_iters: int = 8,
    condition: bool = False,
) -> list[dict[str, float | int | str | None]]:
    """One row per edited parameter: norms of the weight (`weight.`), of the cumulative delta
    since the start (`cum.`) and of this step's delta (`step.`), and `unedited.l1_sum`, the L1
    of the weight minus the cumulative delta (the unedited weight: the report's reference line).
    `condition` adds the weight's condition number (an SVD: not cheap)."""
    params = dict(model.named_parameters())
    rows: list[dict[str, float | int | str | None]] = []
    for name in sorted(cumulative.names):
        row: dict[str, float | int | str | None] = {
            "param": name,
            "param_layer": cumulative.layer(name),
        }
        parts = [("weight", params[name], condition), ("cum", cumulative.dense(name), False)]
        if step is not None and name in step.updates:
            parts.append(("step", step.dense(name), False))
        for prefix, matrix, cond in parts:
            norms = matrix_norms(matrix, spectral_iters=spectral_iters, condition=cond)
            row.update({f"{prefix}.{k}": v for k, v in norms.items()})
        w0 = params[name].detach().float() - cumulative.dense(name).to(params[name].device)
        row["unedited.l1_sum"] = float(w0.abs().sum())
        rows.append(row)
    return rows
