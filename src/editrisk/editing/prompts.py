"""Tokenized edit prompts with the positions the editors need (subject tokens, targets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from editrisk.errors import EditriskError
from editrisk.requests import EditRequest
from editrisk.tokens import target_ids

TOKEN_CHOICES = ("subject_last", "subject_first", "after_subject", "prompt_last")


@dataclass(frozen=True)
class Row:
    """One tokenized sequence: `ids`, the edit position `index`, and target positions.

    `targets` are the target token ids: the sequence is prompt + targets[:-1], and the logits
    at `predict_positions` predict each target token in turn.
    """

    ids: tuple[int, ...]
    index: int
    request: int
    targets: tuple[int, ...] = ()

    @property
    def predict_positions(self) -> range:
        """Positions whose logits predict the target tokens."""
        n = len(self.ids)
        return range(n - len(self.targets), n)


def _token_at(offsets: Sequence[tuple[int, int]], char: int, *, last: bool) -> int:
    """Index of the token covering character `char` (the subject's last or first char)."""
    for i, (start, end) in enumerate(offsets):
        if start <= char < end:
            return i
    raise EditriskError(f"no token covers character {char} (last={last})")


def locate(
    tokenizer: PreTrainedTokenizerBase, text: str, subject: str, token: str = "subject_last"
) -> tuple[list[int], int]:
    """Token ids of `text` and the index of the chosen token relative to `subject`.

    The subject is located by its last occurrence in `text` (the template's occurrence, after
    any context prefix).
    """
    if token not in TOKEN_CHOICES:
        raise EditriskError(f"unknown token choice '{token}'; choose from {TOKEN_CHOICES}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if token == "prompt_last":
        return ids, len(ids) - 1
    start = text.rfind(subject)
    if start < 0:
        raise EditriskError(f"subject {subject!r} does not occur in {text!r}")
    first = _token_at(offsets, start, last=False)
    last = _token_at(offsets, start + len(subject) - 1, last=True)
    if token == "subject_first":
        return ids, first
    if token == "after_subject":
        return ids, min(last + 1, len(ids) - 1)
    return ids, last


def edit_rows(
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[EditRequest],
    prefixes: Sequence[str],
    *,
    with_targets: bool,
    token: str = "subject_last",
    template: str | None = None,
) -> list[Row]:
    """Rows for every (request, prefix): prefix + rendered prompt (+ target tokens but the last).

    Prefix and prompt are tokenized apart and joined as ids, so the subject has the same
    tokens after every prefix as in the prompt alone. Joined as text, a prompt that starts with
    its subject would be tokenized differently after a prefix ("Copenhagen" at the start is
    "C" + "openhagen", after text it is " Copenhagen"): the averaged key would then belong to
    another token than the edited prompt's, and the edit would miss it.

    `template` overrides the request's prompt (e.g. "{} is a" for the KL term).
    """
    prefix_ids = {
        p: tokenizer(p, add_special_tokens=False)["input_ids"] if p else [] for p in prefixes
    }
    rows = []
    for r_i, req in enumerate(requests):
        prompt = (template or req.prompt).replace("{}", req.subject)
        tgt = tuple(target_ids(tokenizer, req.target_new)) if with_targets else ()
        ids, index = locate(tokenizer, prompt, req.subject, token)
        for prefix in prefixes:
            pre = prefix_ids[prefix]
            rows.append(Row(tuple(pre) + tuple(ids) + tgt[:-1], len(pre) + index, r_i, tgt))
    return rows
