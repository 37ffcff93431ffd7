"""Activations at each row's edit position: keys (MLP output-projection inputs) and states."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from editrisk.editing.prompts import Row, edit_rows, key_groups
from editrisk.hooks import Trace
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest
from editrisk.tokens import pack


@torch.no_grad()
def gather_at_index(
    h: ModelHandle,
    rows: Sequence[Row],
    *,
    inputs_of: Sequence[str] = (),
    outputs_of: Sequence[str] = (),
    batch_size: int = 64,
    upto_index: bool = True,
) -> dict[str, torch.Tensor]:
    """Module inputs/outputs at each row's `index`, as float32 (n_rows, dim) per module.

    One forward per chunk of `batch_size` rows, stopped after the deepest module needed.
    Keys are returned under the module name; inputs under "<name>:in".

    In a causal model nothing at `index` depends on the tokens after it, so each row is run
    only up to its `index` (`upto_index`; False runs whole rows, for comparison): the layer
    loop of the key/value editors then skips the rest of every prompt ("... is a city in the
    country of"), about half its tokens.
    """
    modules = list(dict.fromkeys([*inputs_of, *outputs_of]))
    order = {n: i for i, (n, _) in enumerate(h.model.named_modules())}
    deepest = max(modules, key=order.__getitem__)
    # A module ends after its submodules: stop after the outermost one holding the deepest.
    deepest = min((m for m in modules if deepest == m or deepest.startswith(m + ".")), key=len)
    pad = h.tokenizer.pad_token_id or 0
    found: dict[str, list[torch.Tensor]] = {
        **{f"{m}:in": [] for m in inputs_of},
        **{m: [] for m in outputs_of},
    }
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs = [list(r.ids[: r.index + 1] if upto_index else r.ids) for r in chunk]
        ids, mask = pack(seqs, pad, h.device)
        where = torch.tensor([r.index for r in chunk], device=h.device)
        batch = torch.arange(len(chunk), device=h.device)
        with Trace(h.model, modules, retain_input=bool(inputs_of), stop_after=deepest) as tr:
            h.model(input_ids=ids, attention_mask=mask)
        for m in inputs_of:
            found[f"{m}:in"].append(tr[m].input[batch, where].float())
        for m in outputs_of:
            found[m].append(tr[m].output[batch, where].float())
    return {k: torch.cat(v) for k, v in found.items()}


def mean_by_request(values: torch.Tensor, rows: Sequence[Row], n_requests: int) -> torch.Tensor:
    """Average the rows of `values` that belong to each request."""
    index = torch.tensor([r.request for r in rows], device=values.device)
    total = torch.zeros(n_requests, values.shape[1], device=values.device, dtype=values.dtype)
    total.index_add_(0, index, values)
    counts = torch.bincount(index, minlength=n_requests).clamp_min(1).to(values.dtype)
    return total / counts[:, None]


def mean_by_group(values: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
    """Average the rows of `values` within each (request, variant) group, in `key_groups`
    order."""
    groups = {g: i for i, g in enumerate(key_groups(rows))}
    member = [groups[(r.request, r.variant)] for r in rows]
    return mean_by_request(values, [Row((), 0, g) for g in member], len(groups))


def key_owners(rows: Sequence[Row]) -> list[int]:
    """The request each key group belongs to."""
    return [request for request, _ in key_groups(rows)]


def compute_keys(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    layers: Sequence[int],
    prefixes: Sequence[str],
    *,
    token: str = "subject_last",
    batch_size: int = 64,
) -> dict[int, torch.Tensor]:
    """k for each key group and layer: the MLP output projection's input at the chosen token,
    averaged over the context prefixes of the group. Returns layer -> (n_groups, d_mlp)
    float32; one group per request, two for a prompt that starts with its subject (the
    edited prompt's tokens and running text's; `key_owners` maps groups to requests)."""
    rows = edit_rows(h.tokenizer, requests, prefixes, with_targets=False, token=token)
    names = {layer: h.arch.name("mlp_out", layer) for layer in layers}
    acts = gather_at_index(h, rows, inputs_of=list(names.values()), batch_size=batch_size)
    return {layer: mean_by_group(acts[f"{name}:in"], rows) for layer, name in names.items()}
