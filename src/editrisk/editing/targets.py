"""Target optimisation: the vector (ROME's v*, MEMIT's z*) that makes the model say the new
target, batched over requests (each request its own vector, optimised independently).

The loss per request is ROME's: mean NLL of the new target over the context prefixes, plus
`kl_factor` * KL(original || edited) of the next-token distribution after the subject in
"{subject} is a", plus a weight decay: `weight_decay` * ||delta||^2 / ||init||^2 ("squared")
or, as ROME's and MEMIT's code have it, `weight_decay` * ||delta|| / ||init||^2 ("paper");
delta's norm is clamped to `clamp_norm_factor` * ||init||. ||init|| is the norm of the output
averaged over the request's rows. A request stops once its mean target NLL ("nll"), its
whole loss ("loss", the papers' rule) or its worst row's NLL ("rows") is below `stop_loss`,
or ("argmax", ENCORE's most-probable early stopping) once every target token is the most
probable token on every row.

Exact speed-up: in a causal model nothing before the edit position depends on delta, so the
prefix of every row (up to, not including, the subject's last token) is run once into a KV
cache and each step runs only the suffix. `cache_prefix=False` gives the plain computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from editrisk.editing.keys import key_owners, mean_by_group, mean_by_request
from editrisk.editing.prompts import Row, edit_rows
from editrisk.errors import EditriskError
from editrisk.hooks import Trace
from editrisk.models import ModelHandle
from editrisk.models.kvcache import cache_kwargs, cache_of
from editrisk.requests import EditRequest
from editrisk.tokens import pack

DECAYS = ("squared", "paper")
STOP_RULES = ("nll", "loss", "rows", "argmax")


@dataclass(frozen=True)
class TargetSettings:
    """Hyperparameters of the target optimisation (ROME's v_* settings)."""

    steps: int = 20
    lr: float = 0.5
    weight_decay: float = 0.5
    kl_factor: float = 0.0625
    clamp_norm_factor: float = 4.0
    stop_loss: float = 0.05
    kl_template: str = "{} is a"
    decay: str = "squared"  # "squared": ||delta||^2/||init||^2; "paper": ||delta||/||init||^2
    stop_on: str = "nll"  # "nll": mean target NLL; "loss": the whole loss; "rows": every row;
    # "argmax": every target token the most probable on every row (`stop_loss` unused)

    def __post_init__(self) -> None:
        if self.decay not in DECAYS:
            raise EditriskError(f"decay must be one of {DECAYS}, not {self.decay!r}")
        if self.stop_on not in STOP_RULES:
            raise EditriskError(f"stop_on must be one of {STOP_RULES}, not {self.stop_on!r}")


@dataclass
class Targets:
    """The optimised `delta` per request and, per key group (`owner`: its request; see
    `keys.compute_keys`), `init`: the module's output at the edit position before the edit,
    averaged over the group's rows. `target` = init + the owner's delta, per group."""

    init: torch.Tensor
    delta: torch.Tensor
    owner: list[int]
    steps_run: list[int]
    final_nll: list[float]
    history: list[float] = field(default_factory=list)

    @property
    def target(self) -> torch.Tensor:
        return self.init + self.delta[self.owner]


class _Batch:
    """The rows of one optimisation, laid out for the plain or the prefix-cached forward."""

    def __init__(self, h: ModelHandle, rows: Sequence[Row], cache_prefix: bool) -> None:
        self.h, self.rows = h, list(rows)
        pad = h.tokenizer.pad_token_id or 0
        dev = h.device
        self.request = torch.tensor([r.request for r in rows], device=dev)
        self.cached = cache_prefix and max(r.index for r in rows) > 0
        if self.cached:
            starts = [r.index for r in rows]
            pre_ids, pre_mask = pack([list(r.ids[: r.index]) or [pad] for r in rows], pad, dev)
            for i, r in enumerate(rows):
                if r.index == 0:
                    pre_mask[i, 0] = 0
            self.prefix_len = pre_ids.shape[1]
            self.ids, suf_mask = pack([list(r.ids[r.index :]) for r in rows], pad, dev)
            self.mask = torch.cat([pre_mask, suf_mask], 1)
            start = torch.tensor(starts, device=dev)[:, None]
            self.positions = start + torch.arange(self.ids.shape[1], device=dev)[None]
            with torch.no_grad():
                pos = torch.arange(self.prefix_len, device=dev)[None].expand(len(rows), -1)
                out = h.model(
                    input_ids=pre_ids, attention_mask=pre_mask, position_ids=pos, use_cache=True
                )
            self.past = cache_of(out)
            self.saved = [(layer.keys, layer.values) for layer in self.past.layers]
            # Sliding-window layers (Gemma-2) also count the tokens they have seen.
            self.counts = [getattr(layer, "cumulative_length", None) for layer in self.past.layers]
            self.local_index = torch.zeros(len(rows), dtype=torch.long, device=dev)
        else:
            starts = [0] * len(rows)
            self.ids, self.mask = pack([list(r.ids) for r in rows], pad, dev)
            self.positions = None
            self.past = None
            self.local_index = torch.tensor([r.index for r in rows], device=dev)
        self.starts = starts
        self.frozen: dict[str, Any] = {}
        self.frozen_for: str | None = None

    def forward(
        self,
        module: str,
        delta: torch.Tensor,
        seen: dict[str, torch.Tensor],
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states with delta[request] added to `module`'s output at each
        row's edit position (the unembedding is applied by the caller, only where needed).

        `keep` (bool per row) runs only those rows: requests that have converged drop out of
        the batch. The module's unedited output at the edit positions goes to `seen["init"]`.
        """
        sel = keep if keep is not None else slice(None)
        ids, mask, local_index, request = (
            self.ids[sel], self.mask[sel], self.local_index[sel], self.request[sel]
        )  # fmt: skip
        rows_idx = torch.arange(ids.shape[0], device=ids.device)
        norm = self.h.arch.name("final_norm")

        def add(name: str, out: torch.Tensor) -> torch.Tensor:
            if name != module:
                return out
            seen["init"] = out[rows_idx, local_index].detach().float()
            shift = torch.zeros_like(out)
            shift[rows_idx, local_index] = delta[request].to(out.dtype)
            return out + shift

        with (
            self._frozen_below(module, keep),
            Trace(
                self.h.model, [module, norm], edit_output=add, detach=False, stop_after=norm
            ) as tr,
        ):
            if self.cached:
                for layer, (k, v), count in zip(self.past.layers, self.saved, self.counts):
                    layer.keys, layer.values = k[sel], v[sel]
                    if count is not None:
                        layer.cumulative_length = count
                self.h.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=self.positions[sel],
                    **cache_kwargs(self.h.model, self.past),
                    use_cache=True,
                )
            else:
                self.h.model(input_ids=ids, attention_mask=mask)
        if self.cached:
            for layer, (k, v) in zip(self.past.layers, self.saved):
                layer.keys, layer.values = k, v  # back to the constant prefix
        return tr[norm].output

    @contextmanager
    def _frozen_below(self, module: str, keep: torch.Tensor | None) -> Iterator[None]:
        """Layers below the edited one see neither the vector nor anything after it: their
        outputs are recorded on the first step and returned as constants on later steps
        (cached mode only; exact, the plain mode recomputes them for comparison)."""
        prefix = self.h.arch.spec.layers + "."
        if not (self.cached and module.startswith(prefix)):
            yield
            return
        below = [
            self.h.arch.layer_module(i) for i in range(int(module[len(prefix) :].split(".")[0]))
        ]
        mods = [self.h.model.get_submodule(n) for n in below]
        if self.frozen_for != module:
            self.frozen, self.frozen_for = {}, module

            def keep(name: str) -> Callable[..., None]:
                return lambda _m, _a, out: self.frozen.__setitem__(name, _detached(out))

            handles = [m.register_forward_hook(keep(n)) for n, m in zip(below, mods)]
            try:
                yield
            finally:
                for hd in handles:
                    hd.remove()
            return
        for n, m in zip(below, mods):
            out = self.frozen[n] if keep is None else _rows(self.frozen[n], keep)
            m.forward = lambda *_a, _out=out, **_k: _out
        try:
            yield
        finally:
            for m in mods:
                del m.forward  # back to the class's forward

    def local(self, i: int, positions: Sequence[int]) -> list[int]:
        return [p - self.starts[i] for p in positions]


def optimise_targets(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    module: str,
    prefixes: Sequence[str],
    settings: TargetSettings | None = None,
    *,
    token: str = "subject_last",
    cache_prefix: bool = True,
) -> Targets:
    """Optimise one vector per request, added to `module`'s output at the edit token."""
    s = settings or TargetSettings()
    n = len(requests)
    edit = edit_rows(h.tokenizer, requests, prefixes, with_targets=True, token=token)
    kl = edit_rows(
        h.tokenizer, requests, [""], with_targets=False, token=token, template=s.kl_template
    )
    rows = edit + kl
    batch = _Batch(h, rows, cache_prefix)
    n_edit = len(edit)
    rows_per_req = torch.bincount(batch.request[:n_edit], minlength=n).float()

    # Flat gather indices for the target tokens of every edit row.
    b_idx, p_idx, t_ids, owner = [], [], [], []
    for i, r in enumerate(edit):
        local = batch.local(i, r.predict_positions)
        b_idx += [i] * len(local)
        p_idx += local
        t_ids += list(r.targets)
        owner += [i] * len(local)
    dev = h.device
    b_idx_t, p_idx_t = torch.tensor(b_idx, device=dev), torch.tensor(p_idx, device=dev)
    t_ids_t, owner_t = torch.tensor(t_ids, device=dev), torch.tensor(owner, device=dev)
    tokens_per_row = torch.bincount(owner_t, minlength=n_edit).float()
    kl_rows = torch.arange(n_edit, len(rows), device=dev)
    kl_pos = batch.local_index[kl_rows]

    delta = torch.zeros(
        n,
        h.arch.hidden_size if module_dim(h, module) is None else module_dim(h, module),
        device=dev,
        requires_grad=True,
    )
    opt = torch.optim.Adam([delta], lr=s.lr)
    unembed = h.model.get_submodule(h.arch.name("unembed"))
    active = torch.ones(n, dtype=torch.bool, device=dev)
    steps_run = [0] * n
    init = kl_init = ref_sq = None
    nll_req = torch.zeros(n, device=dev)
    history = []
    for step in range(s.steps):
        seen: dict[str, torch.Tensor] = {}
        keep = active[batch.request]  # rows of requests still optimising
        hidden = batch.forward(module, delta, seen, None if bool(keep.all()) else keep)
        if init is None:  # first step: every row is in the batch
            init = mean_by_group(seen["init"][:n_edit], edit)
            # The norm the decay and the clamp are relative to: of the output averaged over
            # all the request's rows, not of one row's (a subject at the very start of a text
            # sits on the attention sink, where the output's norm is far from typical).
            ref_sq = mean_by_request(seen["init"][:n_edit], edit, n).pow(2).sum(1)
        where = torch.cumsum(keep.long(), 0) - 1  # row -> its place among the kept rows
        tk = keep[b_idx_t]
        logp_t = torch.log_softmax(unembed(hidden[where[b_idx_t[tk]], p_idx_t[tk]]).float(), -1)
        tok_nll = -logp_t.gather(1, t_ids_t[tk][:, None]).squeeze(1)
        row_nll = torch.zeros(n_edit, device=dev).index_add(0, owner_t[tk], tok_nll)
        row_nll = row_nll / tokens_per_row
        now = torch.zeros(n, device=dev).index_add(0, batch.request[:n_edit], row_nll)
        nll_req = torch.where(active, now / rows_per_req, nll_req.detach())
        kl_logp = torch.log_softmax(unembed(hidden[where[kl_rows], kl_pos]).float(), -1)
        if kl_init is None:  # first step: every request active, one KL row each, in order
            kl_init = kl_logp.detach()
        ref = kl_init[active]
        kl_req = torch.zeros(n, device=dev).index_put(
            (torch.nonzero(active).flatten(),), (ref.exp() * (ref - kl_logp[active])).sum(-1)
        )
        if s.decay == "squared":
            wd_req = s.weight_decay * delta.pow(2).sum(1) / ref_sq
        else:  # ROME's and MEMIT's code: linear in ||delta||
            wd_req = s.weight_decay * delta.norm(dim=1) / ref_sq
        loss_req = nll_req + s.kl_factor * kl_req + wd_req
        history.append(float(loss_req.detach().sum()))
        if s.stop_on == "nll":
            reached = nll_req.detach()
        elif s.stop_on == "loss":
            reached = loss_req.detach()
        elif s.stop_on == "rows":  # the worst row of each request
            worst = torch.zeros(n, device=dev).scatter_reduce(
                0, batch.request[:n_edit], row_nll.detach(), "amax", include_self=False
            )
            reached = torch.where(active, worst, nll_req.detach())
        else:  # target tokens that are not the most probable, per request
            missed = (logp_t.detach().argmax(-1) != t_ids_t[tk]).float()
            per_row = torch.zeros(n_edit, device=dev).index_add(0, owner_t[tk], missed)
            reached = torch.zeros(n, device=dev).index_add(0, batch.request[:n_edit], per_row)
        done = ((reached == 0) if s.stop_on == "argmax" else (reached < s.stop_loss)) & active
        active = active & ~done
        if not bool(active.any()) or step == s.steps - 1:
            break
        for q in torch.nonzero(active).flatten().tolist():
            steps_run[q] = step + 1
        frozen = delta.detach()[~active].clone()
        opt.zero_grad()
        loss_req[active].sum().backward()
        opt.step()
        with torch.no_grad():
            delta[~active] = frozen
            limit = s.clamp_norm_factor * ref_sq.sqrt()
            norms = delta.norm(dim=1)
            scale = torch.where(norms > limit, limit / norms.clamp_min(1e-12), 1.0)
            delta.mul_(scale[:, None])
    return Targets(
        init=init,
        delta=delta.detach(),
        owner=key_owners(edit),
        steps_run=steps_run,
        final_nll=nll_req.detach().tolist(),
        history=history,
    )


def _detached(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, tuple):
        return tuple(_detached(o) for o in out)
    return out


def _rows(out: Any, keep: torch.Tensor) -> Any:
    """The kept rows of a recorded layer output (tensors batched on dim 0)."""
    if isinstance(out, torch.Tensor) and out.ndim and out.shape[0] == keep.shape[0]:
        return out[keep]
    if isinstance(out, tuple):
        return tuple(_rows(o, keep) for o in out)
    return out


def module_dim(h: ModelHandle, module: str) -> int | None:
    """Output width of `module` when it is a linear-like layer, else None (hidden size)."""
    m = h.model.get_submodule(module)
    w = getattr(m, "weight", None)
    if w is None or w.ndim != 2:
        return None
    return w.shape[1] if type(m).__name__ == "Conv1D" else w.shape[0]
