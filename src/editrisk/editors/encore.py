"""ENCORE, "Early stopping and Norm-Constrained Robust knowledge Editing" (Gupta et al. 2025,
"Lifelong Sequential Knowledge Editing without Model Degradation"): MEMIT with two
regularisers against the decline under many sequential edits.

- Most-probable early stopping (MPES): the target optimisation stops as soon as every target
  token is the most probable one on every context prefix, rather than driving its NLL to a
  small threshold (over-optimised z* overfit the edited prompts).
- A Frobenius norm constraint on the update: each layer solves
  min ||Delta K - R||^2 + lambda tr(Delta C Delta^T) + norm_lam ||Delta||_F^2, i.e.
  Delta = R K^T (lambda C + K K^T + norm_lam I)^-1, with norm_lam = `norm_weight` times C's
  mean eigenvalue (C is a normalised second moment here, so the weight is scale-free).
The constraint is read as on each call's own change (the weights before it are the anchor).
"""

from __future__ import annotations

import dataclasses

import torch

from editrisk.editing.solvers import norm_constrained_update
from editrisk.editors.base import register, require
from editrisk.editors.memit import MEMIT, MEMITParams


@dataclasses.dataclass
class ENCOREParams(MEMITParams):
    """MEMIT's settings with MPES (`stop_on="argmax"`) and `norm_weight`, the norm
    constraint's weight relative to the key covariance's mean eigenvalue."""

    stop_on: str = "argmax"
    norm_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        require(self.norm_weight >= 0, "norm_weight must be >= 0")


@register
class ENCORE(MEMIT):
    name = "encore"
    hparams_cls = ENCOREParams
    hparams: ENCOREParams

    def solve(
        self,
        layer: int,
        keys: torch.Tensor,
        resid: torch.Tensor,
        cov: torch.Tensor,
    ) -> torch.Tensor:
        norm_lam = self.hparams.norm_weight * float(cov.diagonal().mean())
        return norm_constrained_update(keys, resid, cov, self.hparams.mom2_weight, norm_lam)
