"""Batched teacher-forced scoring of target continuations: the core of every edit metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editrisk.models import ModelHandle
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


@torch.no_grad()
def score_targets(
    h: ModelHandle, pairs: Sequence[tuple[str, str]], batch_size: int = 32
) -> list[TargetScore]:
    """Score each (prompt, target) pair with one batched forward per `batch_size` pairs."""
    out: list[TargetScore] = []
    tok = h.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        prompts = [prompt_ids(tok, p) for p, _ in chunk]
        targets = [target_ids(tok, t) for _, t in chunk]
        ids, mask = pack([p + t for p, t in zip(prompts, targets)], pad, h.device)
        logp = torch.log_softmax(h.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for i, (p, t) in enumerate(zip(prompts, targets)):
            pos = torch.arange(len(p) - 1, len(p) + len(t) - 1, device=logp.device)
            tgt = torch.tensor(t, device=logp.device)
            rows = logp[i, pos]
            out.append(
                TargetScore(
                    logprob=float(rows.gather(1, tgt[:, None]).sum()),
                    n_tokens=len(t),
                    token_correct=tuple(bool(b) for b in (rows.argmax(-1) == tgt).tolist()),
                )
            )
    return out
