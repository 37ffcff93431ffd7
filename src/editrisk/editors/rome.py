"""ROME (Meng et al. 2022): a rank-one update of one MLP output projection mapping the
subject's key k* to the value v* that makes the model say the new target.

Keys and values of all requests come from one batched pass on the unedited model; the
rank-one updates are then applied in order, each solved against the weight as updated so far.
A prompt that starts with its subject has two keys (the edited prompt's subject tokens and
running text's), both mapped to v*: a rank-two update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from editrisk.delta import Delta, LowRank
from editrisk.editing.keys import compute_keys
from editrisk.editing.solvers import min_norm_update
from editrisk.editing.targets import optimise_targets
from editrisk.editors._kv import KVEditor, KVParams, delta_from, weight_out_in
from editrisk.editors.base import register, require
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest, validate_requests


@dataclasses.dataclass
class ROMEParams(KVParams):
    """ROME: one layer; `use_covariance` applies C^-1 (ROME's default), ridge-regularised by
    `cov_ridge` times C's mean eigenvalue so the solve stays well conditioned."""

    use_covariance: bool = True
    cov_ridge: float = 1e-3

    def validate(self) -> None:
        super().validate()
        require(len(self.layers) <= 1, "ROME edits exactly one layer")
        require(self.cov_ridge >= 0, "cov_ridge must be >= 0")


@register
class ROME(KVEditor):
    name = "rome"
    hparams_cls = ROMEParams
    hparams: ROMEParams

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h, reqs = model, validate_requests(requests)
        if not reqs:
            raise EditriskError("no requests to edit")
        (layer,) = self.layers_for(h)
        prefixes = self.prefixes(h)
        cov = None
        if self.hparams.use_covariance:
            c = self.covariances(h, (layer,))[layer]
            cov = c + self.hparams.cov_ridge * c.diagonal().mean() * torch.eye(
                c.shape[0], dtype=c.dtype, device=c.device
            )
        keys = compute_keys(h, reqs, [layer], prefixes, token=self.hparams.token)[layer]
        targets = optimise_targets(
            h,
            reqs,
            h.arch.name("mlp_out", layer),
            prefixes,
            self.hparams.target_settings(),
            token=self.hparams.token,
        )
        w0 = weight_out_in(h, layer)
        weight = w0
        keys, delta = keys.to(w0), targets.delta.to(w0)
        lefts, rights = [], []
        for q in range(len(reqs)):  # each request's keys (one, or two) map to its v*
            k = keys[[g for g, owner in enumerate(targets.owner) if owner == q]].T
            resid = delta[q][:, None] - (weight - w0) @ k  # v* minus the output so far
            left, right = min_norm_update(k, resid, cov)
            weight = weight + left @ right.T
            lefts.append(left)
            rights.append(right)
        update = LowRank(torch.cat(lefts, 1), torch.cat(rights, 1))
        meta = self.metadata(h)
        meta["target_steps"] = targets.steps_run
        return delta_from(h, {layer: update}, meta)
