"""Constrained fine-tuning (FT-L, Zhu et al. 2020; as in ROME's baselines): gradient steps on
the new target, on chosen MLP output projections only, with every weight kept within an
L-infinity box of radius `norm_constraint` around its original value.

`loss="target"` trains on the target tokens only (the prompt is context); `loss="sequence"`
trains on the whole prompt + target text, as plain language-model fine-tuning does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from editrisk.delta import Delta
from editrisk.editors._kv import default_layers
from editrisk.editors.base import Editor, HParams, register, require
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest, validate_requests
from editrisk.tokens import pack, prompt_ids, target_ids


@dataclasses.dataclass
class FTParams(HParams):
    layers: tuple[int, ...] = ()  # empty: the model's ROME layer
    steps: int = 25
    lr: float = 5e-4
    norm_constraint: float = 5e-4  # L-inf radius around the original weights; 0 = none
    loss: str = "target"  # "target" or "sequence"
    batch_size: int = 16

    def validate(self) -> None:
        require(self.steps >= 1, "steps must be >= 1")
        require(self.lr > 0, "lr must be > 0")
        require(self.norm_constraint >= 0, "norm_constraint must be >= 0")
        require(self.loss in ("target", "sequence"), "loss must be 'target' or 'sequence'")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(all(x >= 0 for x in self.layers), "layers must be >= 0")


@register
class FT(Editor):
    name = "ft"
    hparams_cls = FTParams
    hparams: FTParams

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h, reqs = model, validate_requests(requests)
        if not reqs:
            raise EditriskError("no requests to edit")
        p = self.hparams
        layers = p.layers or default_layers(h, "rome")
        params = dict(h.model.named_parameters())
        names = [h.arch.weight_name("mlp_out", layer) for layer in layers]
        originals = {n: params[n].detach().clone() for n in names}
        seqs, labels = [], []
        for r in reqs:
            pr, tg = prompt_ids(h.tokenizer, r.rendered), target_ids(h.tokenizer, r.target_new)
            seqs.append(pr + tg)
            first = 1 if p.loss == "sequence" else len(pr)
            labels.append([-100] * first + (pr + tg)[first:])
        pad = h.tokenizer.pad_token_id or 0
        trainable = [params[n] for n in names]
        opt = torch.optim.Adam(trainable, lr=p.lr)
        try:
            for t in trainable:
                t.requires_grad_(True)
            for _ in range(p.steps):
                for start in range(0, len(seqs), p.batch_size):
                    ids, mask = pack(seqs[start : start + p.batch_size], pad, h.device)
                    lab, _ = pack(labels[start : start + p.batch_size], -100, h.device)
                    logits = h.model(input_ids=ids, attention_mask=mask).logits.float()
                    loss = torch.nn.functional.cross_entropy(
                        logits[:, :-1].reshape(-1, logits.shape[-1]),
                        lab[:, 1:].reshape(-1),
                        ignore_index=-100,
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if p.norm_constraint > 0:
                        with torch.no_grad():
                            for n in names:
                                lo = originals[n] - p.norm_constraint
                                params[n].copy_(
                                    torch.clamp(params[n], lo, originals[n] + p.norm_constraint)
                                )
            updates = {n: (params[n].detach().float() - originals[n].float()) for n in names}
        finally:
            with torch.no_grad():
                for n in names:
                    params[n].requires_grad_(False)
                    params[n].copy_(originals[n])
        meta = self.metadata(h)
        meta["layers"] = list(layers)
        return Delta(updates, meta)
