"""D4S, "Dump for Sequence" (Huang et al. 2024): sequential editing solved, at every step, as
one batch edit of the whole history against the original weights.

Per edited matrix the editor keeps S_RK = sum R_i K_i^T and S_KK = sum K_i K_i^T over all
edits so far, with keys and residuals taken against the ORIGINAL weights (the editor removes
its own running total from the model while it computes). After n edits the total update is
S_RK (lambda C + S_KK)^-1 -- the MEMIT batch update of all n edits -- in memory that does
not grow with n. `edit` expects the model to carry the deltas it returned so far, and returns
the increment to the new total.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from editrisk.delta import Delta
from editrisk.editing.solvers import ridge_solve
from editrisk.editors._kv import delta_from, update_for
from editrisk.editors.base import register
from editrisk.editors.memit import MEMIT, MEMITParams
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


@dataclasses.dataclass
class D4SParams(MEMITParams):
    """D4S uses MEMIT's settings; its memory lives in the editor object."""


@register
class D4S(MEMIT):
    name = "d4s"
    hparams_cls = D4SParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        self.reset()

    def reset(self) -> None:
        self.sum_rk: dict[int, torch.Tensor] = {}
        self.sum_kk: dict[int, torch.Tensor] = {}
        self.total: dict[int, torch.Tensor] = {}
        self.n_edits = 0
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._pending_count = 0

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h = model
        previous = dict(self.total)
        undo = Delta(dict(update_for(h, layer, -t) for layer, t in previous.items()))
        undo.apply(h.model)  # compute against the original weights W0
        try:
            in_frame = super().edit(h, requests)  # per layer: the new total (W0-relative)
        finally:
            undo.revert(h.model)
        increments = {
            layer: self.total[layer] - previous.get(layer, torch.zeros_like(self.total[layer]))
            for layer in self.total
        }
        meta = dict(in_frame.metadata, d4s_edits=self.n_edits)
        return delta_from(h, increments, meta)

    def solve(
        self,
        layer: int,
        keys: torch.Tensor,
        resid: torch.Tensor,
        cov: torch.Tensor,
    ) -> torch.Tensor:
        """New W0-relative total for `layer`: the batch solution over all edits so far."""
        rk = self.sum_rk.get(layer, 0) + resid @ keys.T
        kk = self.sum_kk.get(layer, 0) + keys @ keys.T
        total = ridge_solve(self.hparams.mom2_weight * cov + kk, rk)
        self._pending[layer] = (rk, kk, total)
        self._pending_count = keys.shape[1]
        return total

    def commit(self) -> None:
        for layer, (rk, kk, total) in self._pending.items():
            self.sum_rk[layer], self.sum_kk[layer], self.total[layer] = rk, kk, total
        self.n_edits += self._pending_count
        self._pending = {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_edits": torch.tensor(self.n_edits)}
        for layer in self.sum_rk:
            state[f"sum_rk.{layer}"] = self.sum_rk[layer]
            state[f"sum_kk.{layer}"] = self.sum_kk[layer]
            state[f"total.{layer}"] = self.total[layer]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        try:
            self.n_edits = int(state["n_edits"])
            for key, value in state.items():
                if key == "n_edits":
                    continue
                kind, layer = key.rsplit(".", 1)
                getattr(self, kind)[int(layer)] = value.to(torch.float64)
        except (KeyError, ValueError, AttributeError) as err:
            raise EditriskError(f"not a D4S state: {err}") from err
