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
    at `predict_positions` predict each target token in turn. `variant` says how the subject
    is tokenized: 0 as in the edited prompt itself, 1 as in running text where that differs,
    2 when the subject is the text's first token and the edit is at the next one (see
    `edit_rows`).
    """

    ids: tuple[int, ...]
    index: int
    request: int
    targets: tuple[int, ...] = ()
    variant: int = 0

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


def subject_span(
    tokenizer: PreTrainedTokenizerBase, text: str, subject: str
) -> tuple[list[int], int, int]:
    """Token ids of `text` and the indices of the first and last token of the subject's last
    occurrence (the template's occurrence, after any context prefix)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    start = text.rfind(subject)
    if start < 0:
        raise EditriskError(f"subject {subject!r} does not occur in {text!r}")
    offsets = enc["offset_mapping"]
    first = _token_at(offsets, start, last=False)
    return enc["input_ids"], first, _token_at(offsets, start + len(subject) - 1, last=True)


def locate(
    tokenizer: PreTrainedTokenizerBase, text: str, subject: str, token: str = "subject_last"
) -> tuple[list[int], int]:
    """Token ids of `text` and the index of the chosen token relative to `subject`."""
    if token not in TOKEN_CHOICES:
        raise EditriskError(f"unknown token choice '{token}'; choose from {TOKEN_CHOICES}")
    if token == "prompt_last":
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, len(ids) - 1
    ids, first, last = subject_span(tokenizer, text, subject)
    if token == "subject_first":
        return ids, first
    if token == "after_subject":
        return ids, min(last + 1, len(ids) - 1)
    return ids, last


def _subject_tokens(tokenizer: PreTrainedTokenizerBase, text: str, subject: str) -> tuple:
    if subject not in text:
        return ()
    ids, first, last = subject_span(tokenizer, text, subject)
    return tuple(ids[first : last + 1])


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

    Prefix and prompt are joined as text, as ROME's contexts are, so after a prefix the
    subject has the tokens running text gives it; the empty prefix is the prompt exactly as
    it is edited and scored. A prompt that starts with its subject tokenizes it differently
    there ("Copenhagen" at the start of a text is "C" + "openhagen", after text it is
    " Copenhagen"): those rows get `variant` 1, and keys and targets are kept per variant, so
    that neither the edited prompt's key nor running text's is an average of the other.

    A row whose edit position would be the text's first token is edited at the next token
    instead (`variant` 2): the first token is the attention sink, whose key no longer depends
    on the token from the second layer on (mean cosine 0.92-1.00 between the keys of five
    different opening words, smollm2 layers 1-9), so mapping it moved every text's first token
    (by 4.8 times its output's norm after "Windows was developed by" -> Apple); the next token
    has read the subject by then.

    `template` overrides the request's prompt (e.g. "{} is a" for the KL term).
    """
    rows = []
    for r_i, req in enumerate(requests):
        prompt = (template or req.prompt).replace("{}", req.subject)
        tgt = tuple(target_ids(tokenizer, req.target_new)) if with_targets else ()
        own = _subject_tokens(tokenizer, prompt, req.subject)
        for prefix in prefixes:
            text = prefix + prompt
            ids, index = locate(tokenizer, text, req.subject, token)
            variant = int(bool(prefix) and _subject_tokens(tokenizer, text, req.subject) != own)
            if index == 0 and len(ids) > 1:
                index, variant = 1, 2
            rows.append(Row(tuple(ids) + tgt[:-1], index, r_i, tgt, variant))
    return rows


def key_groups(rows: Sequence[Row]) -> list[tuple[int, int]]:
    """The (request, variant) pairs of `rows` in order: one key and one target each."""
    return sorted({(r.request, r.variant) for r in rows})
