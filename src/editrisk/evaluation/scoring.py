"""Batched teacher-forced scoring of target continuations: the core of every edit metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.models.kvcache import cache_kwargs, cache_of
from editrisk.tokens import pack, prompt_ids, target_ids


@dataclass(frozen=True)
class TargetScore:
    """How a model scores `target` after `prompt`."""

    logprob: float  # sum of token log-probabilities
    n_tokens: int
    token_correct: tuple[bool, ...]  # teacher-forced argmax == target token, per token

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n_tokens

    @property
    def prob(self) -> float:
        """exp(mean log-prob): the per-token probability ROME/MEMIT compare."""
        return float(torch.tensor(self.mean_logprob).exp())

    @property
    def token_accuracy(self) -> float:
        return sum(self.token_correct) / self.n_tokens


class _Scorer:
    """The model split into body and unembedding (when it has a separable head), so log-
    probabilities are computed only where a target token is predicted: over a 49k vocabulary
    the unembedding at every position costs about a quarter of a forward."""

    def __init__(self, h: ModelHandle) -> None:
        self.model = h.model
        self.head = h.model.get_output_embeddings()
        body = getattr(h.model, "base_model", None)
        self.body = None if self.head is None or body is None or body is h.model else body

    def __call__(self, cache: Any = None, **kw: Any) -> tuple[torch.Tensor, Any]:
        """(states, cache): hidden states (or logits, without a separable head)."""
        if cache is not None:
            kw.update(cache_kwargs(self.model if self.body is None else self.body, cache))
        if self.body is None:
            out = self.model(**kw)
            return out.logits, cache_of(out)
        out = self.body(**kw)
        return out.last_hidden_state, cache_of(out)

    def logprobs(self, states: torch.Tensor) -> torch.Tensor:
        logits = states if self.body is None else self.head(states)
        return torch.log_softmax(logits.float(), -1)


@torch.no_grad()
def score_targets(
    h: ModelHandle, pairs: Sequence[tuple[str, str]], batch_size: int = 32
) -> list[TargetScore]:
    """Score each (prompt, target) pair, teacher-forced.

    Each distinct prompt runs once (`batch_size` prompts per forward); the targets that
    follow it (a new and a true answer, or a fact's alternatives) continue from its cached
    keys and values. Exact: in a causal model a prompt's states do not depend on what
    follows, and a single-token target needs nothing beyond the prompt's last position.
    """
    tok = h.tokenizer
    pad = tok.pad_token_id or 0
    dev = h.device
    run = _Scorer(h)
    groups: dict[str, list[int]] = {}
    for i, (p, _) in enumerate(pairs):
        groups.setdefault(p, []).append(i)
    targets = [target_ids(tok, t) for _, t in pairs]
    tokens = {p: prompt_ids(tok, p) for p in groups}
    limit = h.context_length
    if limit is not None:  # a guard for texts made after the inputs were checked (shifts)
        for (p, t), ids in zip(pairs, targets):
            if len(tokens[p]) + len(ids) > limit:
                raise EditriskError(
                    f"prompt {p[:40]!r}... with target {t[:20]!r} exceeds the {limit} tokens "
                    f"{h.name} reads; shorten the request"
                )
    out: list[TargetScore | None] = [None] * len(pairs)
    texts = list(groups)
    for at in range(0, len(texts), batch_size):
        chunk = texts[at : at + batch_size]
        prompts = [tokens[p] for p in chunk]
        for p, ids in zip(chunk, prompts):
            if not ids:
                raise ValueError(f"prompt {p!r} tokenizes to nothing; a target needs context")
        ids, mask = pack(prompts, pad, dev)
        lengths = torch.tensor([len(x) for x in prompts], device=dev)
        states, cache = run(input_ids=ids, attention_mask=mask, use_cache=True)
        first = run.logprobs(states[torch.arange(len(chunk), device=dev), lengths - 1])
        members = [(row, k) for row, p in enumerate(chunk) for k in groups[p]]
        rest = [(row, k) for row, k in members if len(targets[k]) > 1]
        later: dict[int, torch.Tensor] = {}  # pair -> log-probs of its tokens after the first
        saved = [(layer.keys, layer.values) for layer in cache.layers]
        for start in range(0, len(rest), batch_size):
            sub = rest[start : start + batch_size]
            rows = torch.tensor([row for row, _ in sub], device=dev)
            for layer, (k, v) in zip(cache.layers, saved):
                layer.keys, layer.values = k[rows], v[rows]
            suf_ids, suf_mask = pack([targets[k][:-1] for _, k in sub], pad, dev)
            positions = lengths[rows][:, None] + torch.arange(suf_ids.shape[1], device=dev)
            if h.context_length:  # padding past a short target must not index past the table
                positions = positions.clamp(max=h.context_length - 1)
            suf_states, _ = run(
                input_ids=suf_ids,
                attention_mask=torch.cat([mask[rows], suf_mask], 1),
                position_ids=positions,
                cache=cache,
                use_cache=True,
            )
            r_idx = [j for j, (_, k) in enumerate(sub) for _ in targets[k][:-1]]
            p_idx = [t for _, k in sub for t in range(len(targets[k]) - 1)]
            logp = run.logprobs(suf_states[r_idx, p_idx])
            at_tok = 0
            for _, k in sub:
                n = len(targets[k]) - 1
                later[k] = logp[at_tok : at_tok + n]
                at_tok += n
        for row, k in members:
            t = torch.tensor(targets[k], device=dev)
            logp = first[row : row + 1]
            if k in later:
                logp = torch.cat([logp, later[k]], 0)
            picked = logp.gather(1, t[:, None])[:, 0]
            out[k] = TargetScore(
                logprob=float(picked.sum()),
                n_tokens=len(t),
                token_correct=tuple(bool(b) for b in (logp.argmax(-1) == t).tolist()),
            )
    return [s for s in out if s is not None]
