"""Three-line Python API: load, edit, export.

h = editrisk.load_model("smollm2-135m")
delta = editrisk.edit(h, "rome", EditRequest("France", "The capital of {} is", "Rome"))
editrisk.export_model(h, delta, "france-rome/")
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest

MISS_RULE = (
    "an edit took when, on the rewrite prompt, P(new) rose and ends above P(true) (ROME/MEMIT's "
    "efficacy); for a request without a true target, when P(new) rose and every token of "
    "target_new is the model's teacher-forced argmax. P is the per-token probability "
    "exp(mean log-prob). Otherwise it missed."
)


class EditMissWarning(UserWarning):
    """Raised (as a warning) by `edit` when the edit of some request did not take."""


@dataclass(frozen=True)
class EditOutcome:
    """Whether the edit of one request took (see `MISS_RULE`), with the probabilities on its
    rewrite prompt before and after the edit."""

    request: str  # the request's id, else its rendered prompt
    subject: str
    prompt: str
    target_new: str
    target_true: str | None
    p_new_before: float
    p_new_after: float
    p_true_before: float | None
    p_true_after: float | None
    new_is_argmax: bool  # every token of target_new is the teacher-forced argmax after
    took: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the prompt, and why the edit missed or took."""
        true = (
            f", P(true) {self.p_true_before:.3g} -> {self.p_true_after:.3g}"
            if self.p_true_after is not None
            else ""
        )
        return (
            f"{self.prompt!r} -> {self.target_new!r}: P(new) {self.p_new_before:.3g} -> "
            f"{self.p_new_after:.3g}{true}"
        )


def edit_outcomes(
    requests: Sequence[EditRequest], before: Sequence[Any], after: Sequence[Any]
) -> list[EditOutcome]:
    """The outcome of each request from `score_targets` of its (rewrite prompt, target_new)
    pairs followed by the (rewrite prompt, target_true) pairs of the requests that name one,
    before and after the edit (the order `outcome_pairs` gives)."""
    n, out = len(requests), []
    j = n
    for i, r in enumerate(requests):
        nb, na = before[i], after[i]
        tb = ta = None
        if r.target_true:
            tb, ta = before[j], after[j]
            j += 1
        rose = na.prob > nb.prob
        argmax = all(na.token_correct)
        took = rose and (na.prob > ta.prob if ta is not None else argmax)
        out.append(
            EditOutcome(
                request=r.id or r.rendered,
                subject=r.subject,
                prompt=r.rendered,
                target_new=r.target_new,
                target_true=r.target_true,
                p_new_before=nb.prob,
                p_new_after=na.prob,
                p_true_before=tb.prob if tb is not None else None,
                p_true_after=ta.prob if ta is not None else None,
                new_is_argmax=argmax,
                took=took,
            )
        )
    return out


def outcome_pairs(requests: Sequence[EditRequest]) -> list[tuple[str, str]]:
    """What `edit_outcomes` needs scored: every (prompt, target_new), then every
    (prompt, target_true) of the requests that name one."""
    return [(r.rendered, r.target_new) for r in requests] + [
        (r.rendered, r.target_true) for r in requests if r.target_true
    ]


def check_edit(
    model: ModelHandle,
    delta: Delta,
    requests: Sequence[EditRequest],
    before: Sequence[Any] | None = None,
    batch_size: int = 32,
) -> list[EditOutcome]:
    """Whether `delta` took for each request: one batched scoring of the rewrite prompts
    before (unless `before` gives those scores) and one with the delta applied."""
    from editrisk.evaluation.scoring import score_targets

    pairs = outcome_pairs(requests)
    if before is None:
        before = score_targets(model, pairs, batch_size)
    with delta.applied(model.model):
        after = score_targets(model, pairs, batch_size)
    return edit_outcomes(requests, before, after)


def record_outcomes(delta: Delta, outcomes: Sequence[EditOutcome]) -> list[EditOutcome]:
    """Store the outcomes in `delta.metadata['check']` (saved with the delta, read by
    `Delta.missed` and by exports); return those that missed."""
    delta.metadata["check"] = {"rule": MISS_RULE, "requests": [o.to_dict() for o in outcomes]}
    return [o for o in outcomes if not o.took]


def edit(
    model: ModelHandle,
    editor: str,
    requests: EditRequest | Sequence[EditRequest],
    hparams: dict[str, Any] | None = None,
    *,
    check: bool = True,
    **overrides: Any,
) -> Delta:
    """Compute the edit of `requests` with a registered editor; the model is left unchanged.

    With `check` (the default) the edit is checked on the requests' rewrite prompts (two
    batched scorings): the outcomes are recorded in the delta (`delta.missed` lists the
    requests whose edit did not take, see `MISS_RULE`) and an `EditMissWarning` names them.
    Codebook (GRACE) deltas are checked too: they act through hooks while applied.
    """
    reqs = [requests] if isinstance(requests, EditRequest) else list(requests)
    ed = get_editor(editor, hparams, **overrides)
    if not check:
        return ed.edit(model, reqs)
    delta = ed.edit(model, reqs)
    missed = record_outcomes(delta, check_edit(model, delta, reqs))
    if missed:
        lines = "; ".join(o.describe() for o in missed[:5])
        more = f" (and {len(missed) - 5} more)" if len(missed) > 5 else ""
        warnings.warn(
            EditMissWarning(
                f"{editor}: the edit did not take for {len(missed)} of {len(reqs)} "
                f"request(s): {lines}{more}. Try more steps, a larger learning rate or "
                "another layer; see editrisk.api.MISS_RULE"
            ),
            stacklevel=2,
        )
    return delta


def export_model(
    model: ModelHandle,
    delta: Delta | None,
    out: str | Path,
    *,
    peft: bool = False,
    rank: int | None = None,
    base_model: str | None = None,
    requests: Sequence[EditRequest] | None = None,
) -> Path:
    """Write the (edited) model as a standard Hugging Face folder that transformers loads,
    or with `peft` the edit alone as a PEFT LoRA adapter for the base model (exact for a
    low-rank edit; `rank` truncates a dense one). Either folder carries the edit record
    (editrisk_edit.json) and a model card (README.md); `base_model` names the model there
    (default: the handle's name), `requests` the edited requests (default: those the
    delta's miss check recorded).

    Written to a temporary folder first and renamed, so a failure leaves nothing behind.
    """
    from editrisk.export import export_hf, export_peft

    if peft:
        if delta is None:
            raise EditriskError("a PEFT adapter needs a delta")
        return export_peft(model, delta, out, rank, base_model, requests).path
    return export_hf(model, delta, out, base_model, requests)
