"""RECT, "RElative Change in weighT" (Gu et al. 2024, "Model Editing Harms General Abilities
of Large Language Models: Regularization to the Rescue"): of a base editor's update keep
only the entries with the largest relative change |dW_ij| / |W_ij|, zero the rest.

The paper's finding is that most of an edit's effect sits in few entries, while the many
small relative changes add up to the damage on general abilities; its default keeps the
top 20% (its code zeroes the bottom 80%).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from editrisk.delta import Delta
from editrisk.editors._wrap import WrapEditor, WrapParams
from editrisk.editors.base import register, require
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


@dataclasses.dataclass
class RECTParams(WrapParams):
    """`keep_fraction`: the fraction of each edited matrix's entries kept (paper: 0.2)."""

    keep_fraction: float = 0.2

    def validate(self) -> None:
        super().validate()
        require(0 < self.keep_fraction <= 1, "keep_fraction must be in (0, 1]")


def keep_top_relative(update: torch.Tensor, weight: torch.Tensor, fraction: float) -> torch.Tensor:
    """`update` with all but the ceil(fraction * size) entries of largest |update| / |weight|
    set to zero (an entry of a zero weight counts as an infinite relative change)."""
    u, w = update.double(), weight.double().to(update.device)
    rel = torch.nan_to_num(u.abs() / w.abs(), nan=0.0, posinf=math.inf).flatten()
    k = math.ceil(fraction * rel.numel())
    keep = torch.zeros_like(rel, dtype=torch.bool)
    keep[torch.topk(rel, k).indices] = True
    return torch.where(keep.view_as(u), u, torch.zeros_like(u))


@register
class RECT(WrapEditor):
    name = "rect"
    hparams_cls = RECTParams
    hparams: RECTParams

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h = model
        params = dict(h.model.named_parameters())
        updates = {
            n: keep_top_relative(u, params[n].detach(), self.hparams.keep_fraction).float()
            for n, u in self.base_delta_dense(h, requests).items()
        }
        return Delta(updates, self.metadata(h))
