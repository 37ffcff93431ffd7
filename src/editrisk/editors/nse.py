"""NSE, "Neuron-Level Sequential Editing" (Jiang et al. 2024): MEMIT made for many rounds of
edits by two changes.

- Weights rewinding: z* is optimised on the ORIGINAL weights (the editor removes its own
  running total from the model while it does), so later rounds do not chase the drift of
  earlier ones; keys and residuals are then taken on the model as edited so far.
- Neuron-level updates: per layer, only the neurons (columns of the MLP output projection,
  i.e. coordinates of the key) that the edit's keys activate most are updated: the fewest
  whose mean |activation| sums to `neuron_mass` of the total. The least-squares update is
  solved on those columns alone, Delta[:, S] = R K_S^T (lambda C_SS + K_S K_S^T)^-1, and every
  other column stays exactly as it was.
MEMIT's layer loop (each layer's keys recomputed after the layers below are updated) is the
multi-layer iteration; the paper's repeated passes over the layers are not implemented.
`edit` expects the model to carry the deltas it returned so far.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from editrisk.delta import Delta
from editrisk.editing.solvers import ridge_solve
from editrisk.editing.targets import Targets
from editrisk.editors._kv import layer_state, load_layer_state, update_for
from editrisk.editors.base import register, require
from editrisk.editors.memit import MEMIT, MEMITParams
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


@dataclasses.dataclass
class NSEParams(MEMITParams):
    """MEMIT's settings plus `neuron_mass`: the share of the keys' total mean |activation|
    that the updated neurons must carry (1.0: every neuron with any activation)."""

    neuron_mass: float = 0.8

    def validate(self) -> None:
        super().validate()
        require(0 < self.neuron_mass <= 1, "neuron_mass must be in (0, 1]")


def select_neurons(keys: torch.Tensor, mass: float) -> torch.Tensor:
    """Indices (ascending) of the fewest key coordinates whose mean |activation| over the
    keys (in, n) sums to at least `mass` of the total."""
    score = keys.abs().mean(1)
    order = torch.argsort(score, descending=True)
    share = torch.cumsum(score[order], 0) / score.sum().clamp_min(1e-30)
    count = int(torch.searchsorted(share, torch.tensor(mass, dtype=share.dtype))) + 1
    return torch.sort(order[: min(count, len(order))]).values


@register
class NSE(MEMIT):
    name = "nse"
    hparams_cls = NSEParams
    hparams: NSEParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        self.reset()

    def reset(self) -> None:
        self.total: dict[int, torch.Tensor] = {}  # (out, in), what the model carries
        self._pending: dict[int, torch.Tensor] = {}

    def targets(
        self, h: ModelHandle, reqs: list[EditRequest], module: str, prefixes: list[str]
    ) -> Targets:
        """z* on the original weights: the editor's running total is taken out meanwhile."""
        undo = Delta(dict(update_for(h, layer, -t) for layer, t in self.total.items()))
        with undo.applied(h.model):
            return super().targets(h, reqs, module, prefixes)

    def solve(
        self,
        layer: int,
        keys: torch.Tensor,
        resid: torch.Tensor,
        cov: torch.Tensor,
    ) -> torch.Tensor:
        cols = select_neurons(keys, self.hparams.neuron_mass)
        k = keys[cols]
        a = self.hparams.mom2_weight * cov[cols][:, cols] + k @ k.T
        upd = torch.zeros(resid.shape[0], keys.shape[0], dtype=resid.dtype, device=resid.device)
        upd[:, cols] = ridge_solve(a, resid @ k.T)
        self._pending[layer] = upd
        return upd

    def commit(self) -> None:
        for layer, upd in self._pending.items():
            self.total[layer] = self.total.get(layer, 0) + upd.cpu()
        self._pending = {}

    def state_dict(self) -> dict[str, Any]:
        return layer_state("total", self.total)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.total = load_layer_state(state, "total", "an NSE")
