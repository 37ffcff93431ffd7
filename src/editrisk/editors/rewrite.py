"""Rewrite (Santurkar et al. 2021): a low-rank key-to-value update of one conv/linear layer.

Keys k are the layer's input patches at the masked locations of the styled exemplars; target
values v* are the layer's outputs at the same locations of the clean exemplars. With C = E[k k^T]
over reference images, the update direction is the whitened key d = C^-1 k* (k* the mean masked
key) and the update is dW = Lambda d^T with Lambda the least-squares fit of the masked residuals

    min_Lambda  sum_{i in mask} || v*_i - (W + Lambda d^T) k_i - b ||^2.

With one key this maps k* exactly to v*. rank > 1 uses the top singular directions of C^-1 K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from editrisk.delta import Delta, LowRank
from editrisk.editors.base import Editor, HParams, register, require
from editrisk.errors import EditriskError
from editrisk.hooks import get_module
from editrisk.vision.keys import key_second_moment, keys_and_values, masks_at, weight_matrix


@dataclass
class RewriteHParams(HParams):
    layer: int | str = 3  # editable-layer index in the architecture table, or module path
    rank: int = 1  # number of whitened key directions in the update
    ridge: float = 1e-2  # C + ridge * mean(diag C) * I, for a stable inverse
    mask_threshold: float = 0.5  # fraction of a location's receptive cell that must be masked

    def validate(self) -> None:
        require(self.rank >= 1, f"rank must be >= 1, got {self.rank}")
        require(self.ridge >= 0, f"ridge must be >= 0, got {self.ridge}")
        require(0 < self.mask_threshold <= 1, "mask_threshold must be in (0, 1]")


def rank_one_rewrite(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    keys: torch.Tensor,
    values: torch.Tensor,
    cov: torch.Tensor,
    rank: int = 1,
) -> LowRank:
    """The update (Lambda, D) of W (out, d) fitting `values` (M, out) from `keys` (M, d)."""
    w = weight.double()
    k, v = keys.double(), values.double()
    resid = v - k @ w.T - (bias.double() if bias is not None else 0)
    cinv_k = torch.linalg.solve(cov, k.T)  # (d, M): whitened keys
    if rank == 1:
        d = torch.linalg.solve(cov, k.mean(0, keepdim=True).T)  # (d, 1)
    else:
        u, _, _ = torch.linalg.svd(cinv_k, full_matrices=False)
        d = u[:, : min(rank, u.shape[1])]
    proj = k @ d  # (M, r)
    lam = torch.linalg.lstsq(proj, resid).solution.T  # (out, r)
    return LowRank(lam.float(), d.float())


@register
class Rewrite(Editor):
    name = "rewrite"
    kind = "vision"
    hparams_cls = RewriteHParams

    def edit(self, model, requests) -> Delta:  # noqa: ANN001 - Classifier, ConceptRewriteTask
        hp: RewriteHParams = self.hparams  # type: ignore[assignment]
        task = requests
        if task.train_clean is None:
            raise EditriskError(f"rewrite needs clean exemplars (task '{task.name}' has none)")
        layer = model.layer(hp.layer)
        module = get_module(model.model, layer)
        reference = task.reference if task.reference is not None else task.train_clean
        keys, _, hw = keys_and_values(model.model, layer, task.train_images)
        _, values, _ = keys_and_values(model.model, layer, task.train_clean)
        sel = masks_at(task.train_masks, hw, hp.mask_threshold)
        if not sel.any():
            raise EditriskError(f"no masked location survives at layer '{layer}' ({hw})")
        k, v = keys[sel], values[sel]
        cov = key_second_moment(model.model, layer, reference, model.fingerprint())
        cov = cov + hp.ridge * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
        w = weight_matrix(module).detach().cpu()
        bias = module.bias.detach().cpu() if module.bias is not None else None
        update = rank_one_rewrite(w, bias, k.cpu(), v.cpu(), cov, hp.rank)
        pname = f"{layer}.weight"
        u: torch.Tensor | LowRank = update
        if module.weight.ndim != 2:
            u = update.dense().reshape(module.weight.shape)
        return Delta(
            {pname: u},
            {
                **self.metadata(model),
                "layer": layer,
                "task": task.name,
                "masked_locations": int(sel.sum()),
            },
        )
