"""AlphaEdit (Fang et al. 2025): MEMIT's update projected onto the null space of the
preserved-knowledge keys, so their outputs stay unchanged; earlier edits' keys are kept
(as K_p K_p^T) so later edits leave them alone too."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch

from editrisk.editing.solvers import null_space_projector, projected_update
from editrisk.editors._kv import layer_state, load_layer_state
from editrisk.editors.base import register, require
from editrisk.editors.memit import MEMIT, MEMITParams


@dataclasses.dataclass
class AlphaEditParams(MEMITParams):
    """`null_space_threshold`: eigen-directions of C below this fraction of the largest
    eigenvalue count as unused by preserved knowledge; `l2`: ridge on the update."""

    null_space_threshold: float = 1e-2
    l2: float = 10.0

    def validate(self) -> None:
        super().validate()
        require(0 < self.null_space_threshold < 1, "null_space_threshold must be in (0, 1)")
        require(self.l2 > 0, "l2 must be > 0")


@register
class AlphaEdit(MEMIT):
    name = "alphaedit"
    hparams_cls = AlphaEditParams
    hparams: AlphaEditParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        # derived from C, so not state; keyed by what determines it (see `projector`)
        self._projectors: dict[tuple[int, str, float], torch.Tensor] = {}
        self.reset()

    def reset(self) -> None:
        self.past_kk: dict[int, torch.Tensor] = {}
        self._pending: dict[int, torch.Tensor] = {}

    def projector(self, layer: int, cov: torch.Tensor) -> torch.Tensor:
        """The null-space projector of `cov` at `layer`, cached by (layer, the covariance's
        content, threshold): an editor reused on another model, corpus, token count, sequence
        length or threshold computes the projector of that covariance, never a stale one."""
        threshold = self.hparams.null_space_threshold
        key = (layer, tensor_digest(cov), threshold)
        if key not in self._projectors:
            self._projectors[key] = null_space_projector(cov, threshold)
        return self._projectors[key]

    def solve(
        self,
        layer: int,
        keys: torch.Tensor,
        resid: torch.Tensor,
        cov: torch.Tensor,
    ) -> torch.Tensor:
        past = self.past_kk.get(layer, torch.zeros_like(cov))
        self._pending[layer] = past + keys @ keys.T
        return projected_update(keys, resid, self.projector(layer, cov), past, self.hparams.l2)

    def commit(self) -> None:
        self.past_kk.update(self._pending)
        self._pending = {}

    def state_dict(self) -> dict[str, Any]:
        return layer_state("past_kk", self.past_kk)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.past_kk = load_layer_state(state, "past_kk", "an AlphaEdit")


def tensor_digest(t: torch.Tensor) -> str:
    """Content hash of a tensor (shape, dtype and values): whatever made a covariance, two
    covariances share a digest only if they are equal (about 20 ms for a 1536 x 1536 one)."""
    data = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{tuple(data.shape)}-{data.dtype}".encode())
    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()[:32]
