"""GRACE, "General Retrieval Adaptors for Continual Editing" (Hartvigsen et al. 2023, "Aging
with GRACE"): no weight changes; a codebook at one layer's MLP output projection maps keys
(the module's input at a position) to values (its replacement output there), each key with a
deferral radius. Inputs outside every radius run the unedited model, bitwise.

Per request, one entry per target token: the key is the module input at the position that
predicts the token (the prompt's last token, then each target token but the last), the
values are optimised together so the model says the target. A new key within reach of the
nearest entry (distance <= its radius + `radius`) either expands that entry's radius to
cover it (same label: the same token) or splits the two (other label: both radii become half
their distance, as in the paper's codebook maintenance); otherwise it is added with radius
`radius`. The editor keeps the codebook (and each entry's label) across calls; `edit`
expects the model to carry the deltas it returned so far and returns the new and changed
entries, which `Delta` addition merges by entry id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from editrisk.delta import Codebook, Delta
from editrisk.editors.base import Editor, HParams, register, require
from editrisk.errors import EditriskError
from editrisk.hooks import Trace
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest, validate_requests
from editrisk.tokens import prompt_ids, target_ids

_FIELDS = ("keys", "values", "radii", "ids", "labels")


@dataclasses.dataclass
class GRACEParams(HParams):
    """`layers`: the one layer whose MLP output projection gets the codebook (empty: 85% of
    the depth, as EasyEdit's Llama-2-7B setting, layer 27 of 32); `radius`: the initial
    deferral radius (the paper's epsilon_init, 1.0); `steps`, `lr`: the value optimisation
    (EasyEdit: 100 steps at lr 1.0), stopped once the target NLL is below `stop_loss`."""

    layers: tuple[int, ...] = ()
    radius: float = 1.0
    steps: int = 100
    lr: float = 1.0
    stop_loss: float = 0.05

    def validate(self) -> None:
        require(len(self.layers) <= 1, "GRACE adapts exactly one layer")
        require(all(int(x) >= 0 for x in self.layers), "layers must be >= 0")
        require(self.radius > 0, "radius must be > 0")
        require(self.steps >= 1, "steps must be >= 1")
        require(self.lr > 0, "lr must be > 0")


@register
class GRACE(Editor):
    name = "grace"
    hparams_cls = GRACEParams
    hparams: GRACEParams

    def __init__(self, hparams: Any = None, **overrides: Any) -> None:
        super().__init__(hparams, **overrides)
        self.reset()

    def reset(self) -> None:
        self.book: dict[str, torch.Tensor] = {}  # keys, values, radii, ids, labels
        self.module = ""
        self.layer: int | None = None  # the codebook's layer (kept in state_dict)
        self.next_id = 0

    def layer_for(self, h: ModelHandle) -> int:
        (layer,) = self.hparams.layers or (round(0.85 * (h.arch.n_layers - 1)),)
        h.arch.name("mlp_out", layer)  # range check
        return layer

    def edit(self, model: ModelHandle, requests: Sequence[EditRequest]) -> Delta:
        h, reqs = model, validate_requests(requests)
        if not reqs:
            raise EditriskError("no requests to edit")
        layer = self.layer_for(h)
        module = h.arch.name("mlp_out", layer)
        if self.book and layer != self.layer:
            raise EditriskError(
                f"this GRACE editor's codebook is at layer {self.layer}, not {layer}"
            )
        self.module, self.layer = module, layer
        changed: set[int] = set()
        for r in reqs:
            keys, values, labels = self._entries(h, r)
            for k, v, y in zip(keys, values, labels):
                changed |= self._insert(k, v, int(y))
        rows = [i for i, e in enumerate(self.book["ids"].tolist()) if e in changed]
        b = {f: t[rows] for f, t in self.book.items()}
        book = Codebook(b["keys"], b["values"], b["radii"], b["ids"])
        meta = dict(self.metadata(h), codebook_size=len(self.book["ids"]))
        return Delta({}, meta, {module: book})

    def _entries(
        self, h: ModelHandle, r: EditRequest
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys, optimised values and labels (target tokens) of one request's positions."""
        prompt, target = prompt_ids(h.tokenizer, r.rendered), target_ids(h.tokenizer, r.target_new)
        ids = torch.tensor([prompt + target[:-1]], device=h.device)
        pos = torch.arange(len(prompt) - 1, ids.shape[1], device=h.device)
        labels = torch.tensor(target, device=h.device)
        unembed = h.model.get_submodule(h.arch.name("unembed"))
        norm = h.arch.name("final_norm")
        values: torch.Tensor | None = None

        def replace(name: str, out: torch.Tensor) -> torch.Tensor:
            if name != self.module or values is None:
                return out
            return out.index_put((torch.zeros_like(pos), pos), values.to(out.dtype))

        for _ in range(self.hparams.steps + 1):
            with Trace(h.model, [self.module, norm], retain_input=True, edit_output=replace,
                       detach=False, stop_after=norm) as tr:  # fmt: skip
                h.model(input_ids=ids)
            logits = unembed(tr[norm].output[0, pos]).float()
            nll = torch.nn.functional.cross_entropy(logits, labels)
            if values is None:  # first pass: keys, and the values start at the outputs
                keys = tr[self.module].input[0, pos].detach().float()
                values = tr[self.module].output[0, pos].detach().float().requires_grad_(True)
                opt = torch.optim.Adam([values], lr=self.hparams.lr)
                continue
            if float(nll.detach()) < self.hparams.stop_loss:
                break
            opt.zero_grad()
            nll.backward()
            opt.step()
        return keys, values.detach(), labels

    def _insert(self, key: torch.Tensor, value: torch.Tensor, label: int) -> set[int]:
        """Add one entry, expanding or splitting the nearest; the ids of entries changed."""
        eps = self.hparams.radius
        if self.book:
            dist = (self.book["keys"] - key.to(self.book["keys"])).norm(dim=1)
            d, i = (float(x) for x in dist.min(0))
            i = int(i)
            if d <= float(self.book["radii"][i]) + eps:
                if int(self.book["labels"][i]) == label:  # expand to cover the new key
                    self.book["radii"][i] = max(float(self.book["radii"][i]), d)
                    return {int(self.book["ids"][i])}
                self.book["radii"][i] = eps = d / 2  # split: the two stop at the midpoint
                changed = {int(self.book["ids"][i])}
            else:
                changed = set()
        else:
            changed = set()
        new = {
            "keys": key[None].cpu(),
            "values": value[None].cpu(),
            "radii": torch.tensor([eps]),
            "ids": torch.tensor([self.next_id]),
            "labels": torch.tensor([label]),
        }
        self.book = {f: torch.cat([self.book[f], new[f]]) if self.book else new[f] for f in _FIELDS}
        self.next_id += 1
        return changed | {self.next_id - 1}

    def state_dict(self) -> dict[str, Any]:
        if not self.book:
            return {}
        state = {f"book.{f}": t for f, t in self.book.items()}
        return {**state, "next_id": torch.tensor(self.next_id), "layer": torch.tensor(self.layer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        if not state:
            return
        try:
            self.book = {f: state[f"book.{f}"] for f in _FIELDS}
            self.next_id = int(state["next_id"])
            self.layer = int(state["layer"])
        except (KeyError, ValueError) as err:
            raise EditriskError(f"not a GRACE state: missing or bad {err}") from None
