"""PRUNE, "Perturbation-Restrained Sequential Model Editing" (Ma et al., ICLR 2025): keep
the condition number of the edited matrices bounded by restraining the large singular values
of the accumulated edit.

After each step the accumulated update A = U diag(s) V^T (all edits so far, each computed by
the base editor on the model as edited before it) is replaced by U diag(F(s)) V^T, where for
every singular value above sigma_max, the largest singular value of the ORIGINAL weight,
F(s) = log_b(s) - log_b(sigma_max) + sigma_max (b: `log_base`, the paper's alpha; e in its
code), and F(s) = s below. The editor keeps, per edited parameter, the restrained total the
model carries and sigma_max; `edit` expects the model to carry the deltas it returned so far,
and returns the increment to the new restrained total.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from editrisk.delta import Delta
from editrisk.editors._wrap import WrapEditor, WrapParams
from editrisk.editors.base import register, require
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


@dataclasses.dataclass
class PRUNEParams(WrapParams):
    """`log_base`: the base of the logarithm that rescales singular values above the original
    weight's largest (the paper's alpha; its code uses the natural logarithm)."""

    log_base: float = math.e

    def validate(self) -> None:
        super().validate()
        require(self.log_base > 1, "log_base must be > 1")


def restrain(update: torch.Tensor, sigma_max: float, log_base: float) -> torch.Tensor:
    """`update` with each singular value s > sigma_max replaced by
    log_b(s) - log_b(sigma_max) + sigma_max (its singular vectors kept)."""
    u, s, vh = torch.linalg.svd(update.double(), full_matrices=False)
    big = s > sigma_max
    if not bool(big.any()):
        return update.double()
    log_b = math.log(log_base)
    f = torch.where(big, (s.log() - math.log(sigma_max)) / log_b + sigma_max, s)
    return (u * f) @ vh


@register
class PRUNE(WrapEditor):
    name = "prune"
    hparams_cls = PRUNEParams
    hparams: PRUNEParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        self.reset()

    def reset(self) -> None:
        self.base.reset()
        self.total: dict[str, torch.Tensor] = {}  # restrained total the model carries
        self.sigma_max: dict[str, float] = {}  # of the original weight
        self.n_steps = 0

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h = model
        params = dict(h.model.named_parameters())
        step = self.base_delta_dense(h, requests)
        increments: dict[str, torch.Tensor] = {}
        totals: dict[str, torch.Tensor] = {}
        sigmas: dict[str, float] = {}
        for n, u in step.items():
            if n in self.sigma_max:
                sigmas[n] = self.sigma_max[n]
            else:  # first edit of this parameter: the model holds its original weight
                w0 = params[n].detach().double()
                sigmas[n] = float(torch.linalg.matrix_norm(w0, ord=2))
            before = self.total.get(n, torch.zeros_like(u)).to(u)
            totals[n] = restrain(before + u, sigmas[n], self.hparams.log_base)
            increments[n] = (totals[n] - before).float()
        self.total.update({n: t.cpu() for n, t in totals.items()})
        self.sigma_max.update(sigmas)
        self.n_steps += 1
        meta = dict(self.metadata(h), prune_steps=self.n_steps)
        return Delta(increments, meta)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_steps": torch.tensor(self.n_steps)}
        for n, t in self.total.items():
            state[f"total::{n}"] = t
            state[f"sigma_max::{n}"] = torch.tensor(self.sigma_max[n], dtype=torch.float64)
        for k, v in self.base.state_dict().items():
            state[f"base::{k}"] = v
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        base: dict[str, Any] = {}
        try:
            self.n_steps = int(state["n_steps"])
            for key, value in state.items():
                kind, sep, name = key.partition("::")
                if key == "n_steps":
                    continue
                if not sep or kind not in ("total", "sigma_max", "base"):
                    raise ValueError(f"unknown entry {key!r}")
                if kind == "total":
                    self.total[name] = value.to(torch.float64)
                elif kind == "sigma_max":
                    self.sigma_max[name] = float(value)
                else:
                    base[name] = value
        except (KeyError, ValueError, TypeError) as err:
            raise EditriskError(f"not a PRUNE state: {err}") from err
        if set(self.total) != set(self.sigma_max):
            raise EditriskError("not a PRUNE state: totals and sigma_max name other parameters")
        self.base.load_state_dict(base)
