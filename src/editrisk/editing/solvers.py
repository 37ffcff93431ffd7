"""The closed-form solvers ROME, MEMIT, D4S and AlphaEdit differ by. Weights are (out, in).

All maths in float64 on the statistics' device; callers cast the result back.
"""

from __future__ import annotations

import torch


def rank_one_update(
    weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cov: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ROME: the rank-one (left, right) with (W + left right^T) k = v, minimal in the
    C-weighted norm: left = v - W k, right = C^-1 k / (k^T C^-1 k).

    The same k is used in the residual and in the projection (the consistency fix that keeps
    sequential ROME edits from collapsing the model).
    """
    w, k = weight.double(), key.double()
    return min_norm_update(k[:, None], (value.double() - w @ k)[:, None], cov)


def min_norm_update(
    keys: torch.Tensor, resid: torch.Tensor, cov: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The update (left right^T) of least C-weighted norm that adds resid[:, j] to the
    output at keys[:, j] exactly: right = C^-1 K, left = R (K^T C^-1 K)^-1. Keys K (in, m),
    residuals R (out, m); rank m (ROME: one key, or two where the edited prompt and running
    text tokenize the subject apart)."""
    k, r = keys.double(), resid.double()
    ck = torch.linalg.solve(cov.double(), k) if cov is not None else k
    return torch.linalg.solve(k.T @ ck, r.T).T, ck


def ridge_solve(keys_cov: torch.Tensor, rk: torch.Tensor) -> torch.Tensor:
    """Delta = RK^T (A)^-1 for symmetric positive-definite A = lambda C + K K^T."""
    return torch.linalg.solve(keys_cov.double(), rk.double().T).T


def least_squares_update(
    keys: torch.Tensor, resid: torch.Tensor, cov: torch.Tensor, lam: float
) -> torch.Tensor:
    """MEMIT: Delta = R K^T (lambda C + K K^T)^-1, keys K (in, n), residuals R (out, n).

    Minimises ||Delta K - R||^2 + lambda tr(Delta C Delta^T): fit the new memories, disturb
    the keys of the corpus (second moment C) as little as possible.
    """
    k, r = keys.double(), resid.double()
    return ridge_solve(lam * cov.double() + k @ k.T, r @ k.T)


def norm_constrained_update(
    keys: torch.Tensor, resid: torch.Tensor, cov: torch.Tensor, lam: float, norm_lam: float
) -> torch.Tensor:
    """ENCORE: MEMIT's objective plus norm_lam ||Delta||_F^2, so
    Delta = R K^T (lambda C + K K^T + norm_lam I)^-1: the update's Frobenius norm is held down
    (the growth of the edited matrices under sequential editing is what degrades the model)."""
    k, r = keys.double(), resid.double()
    eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    return ridge_solve(lam * cov.double() + k @ k.T + norm_lam * eye, r @ k.T)


def null_space_projector(cov: torch.Tensor, rel_threshold: float) -> torch.Tensor:
    """AlphaEdit's P: projector onto eigen-directions of C whose eigenvalue is below
    `rel_threshold` times the largest (the directions preserved knowledge barely uses)."""
    evals, evecs = torch.linalg.eigh(cov.double())
    basis = evecs[:, evals < rel_threshold * evals.max()]
    return basis @ basis.T


def projected_update(
    keys: torch.Tensor,
    resid: torch.Tensor,
    projector: torch.Tensor,
    past_kk: torch.Tensor,
    reg: float,
) -> torch.Tensor:
    """AlphaEdit: Delta^T = (P (K_p K_p^T + K K^T) + reg I)^-1 P K R^T.

    Its rows lie in range(P), so Delta k0 = 0 for every preserved key k0 with P k0 = 0.
    """
    k, r, p = keys.double(), resid.double(), projector.double()
    a = p @ (past_kk.double() + k @ k.T) + reg * torch.eye(
        p.shape[0], dtype=p.dtype, device=p.device
    )
    return torch.linalg.solve(a, p @ k @ r.T).T
