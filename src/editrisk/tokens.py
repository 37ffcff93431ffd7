"""Tokenizing prompts and target continuations the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from editrisk.errors import InputError
from editrisk.requests import EditRequest


def target_ids(tokenizer: PreTrainedTokenizerBase, target: str) -> list[int]:
    """Token ids of `target` as a continuation after a prompt (with one leading space)."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"target {target!r} tokenizes to nothing")
    return ids


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def pack(
    sequences: list[list[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `sequences` into (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def check_fits(
    tokenizer: PreTrainedTokenizerBase,
    limit: int | None,
    requests: Sequence[EditRequest],
    *,
    reserve: int = 0,
    model: str = "the model",
    file: str | None = None,
) -> None:
    """Refuse, before any tensor is allocated, a request whose prompt (edited prompt,
    paraphrase, neighbour or generation prompt) with its target does not fit in `limit`
    tokens less `reserve` (context prefixes an editor adds, tokens generated after it).
    The `InputError` names the file, record and field."""
    if limit is None:
        return
    room = limit - reserve
    for i, r in enumerate(requests):
        tfield = "target_true" if len(r.target_true or "") > len(r.target_new) else "target_new"
        n_target = len(target_ids(tokenizer, getattr(r, tfield)))
        texts = [("prompt", r.rendered), *(("paraphrases", p) for p in r.paraphrases)]
        texts += [("neighbours", n.prompt + " " + n.target) for n in r.neighbours]
        texts += [("generation_prompts", p) for p in r.generation_prompts]
        texts += [("questions", q.prompt + " " + q.target) for q in r.questions]
        ids = tokenizer([t for _, t in texts], add_special_tokens=False)["input_ids"]
        for (fld, _), seq in zip(texts, ids):
            n = len(seq) + (n_target if fld in ("prompt", "paraphrases") else 0)
            if n <= room:
                continue
            if fld == "prompt":  # name the longest of its parts
                parts = {"subject": r.subject, "prompt": r.prompt}
                sizes = {k: len(prompt_ids(tokenizer, v)) for k, v in parts.items()}
                fld = max({**sizes, tfield: n_target}.items(), key=lambda kv: kv[1])[0]
            less = f" less {reserve} kept for context prefixes and generation" if reserve else ""
            raise InputError(
                f"{n} tokens with the target; {model} reads at most {limit}{less}",
                file=file, record=i, field=fld,
            )  # fmt: skip
