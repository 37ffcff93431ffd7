"""Shared by the real-model benchmarks: a stratified sample of WorldFacts smollm2 knows, and
single-edit evaluation (each edit on the unedited model, then reverted)."""

from __future__ import annotations

import time

from editrisk.data.worldfacts import build_worldfacts, round_robin
from editrisk.editors import get_editor
from editrisk.evaluation.metrics import TEACHER_FORCED, edit_metrics, summarize
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


def sample_known(h: ModelHandle, n: int, seed: int = 0) -> list[EditRequest]:
    """`n` known facts, round-robin over relations, deterministic."""
    return round_robin(build_worldfacts(h, seed=seed), n, seed)


KEYS = (
    "efficacy.prob_compare",
    "generalization.prob_compare",
    "specificity.prob_compare",
    "efficacy.token_acc",
    "generalization.token_acc",
)


def single_edit_scores(
    h: ModelHandle,
    editor: str,
    requests: list[EditRequest],
    hparams: dict | None = None,
    conventions: tuple[str, ...] = TEACHER_FORCED,
    questions: tuple[str, ...] = (),
) -> dict[str, float]:
    """Mean metrics over single edits (`KEYS`, or every metric of `conventions` and question
    kinds when they go beyond the teacher-forced three), the unedited baseline's scores
    (`base.<metric>`; its neighbourhood score also as `specificity.base`), and the mean
    seconds per edit (editing only)."""
    ed = get_editor(editor, hparams or {})
    ed.edit(h, requests[:1])  # warm caches (prefixes, covariance) outside the timing
    rows, seconds = [], 0.0
    # Each edit on the unedited model: a stateful editor forgets the last one, but for one whose
    # memory is statistics of the edit features (UltraEdit's lifelong normalisation): those
    # run on across the stream, seeded with the sample's.
    carry = getattr(ed, "statistics_only_memory", False)
    if carry:
        ed.reset()
        ed.observe(h, requests)
    for r in requests:
        if not carry:
            ed.reset()
        t = time.perf_counter()
        delta = ed.edit(h, [r])
        seconds += time.perf_counter() - t
        with delta.applied(h.model):
            rows.extend(edit_metrics(h, [r], conventions=conventions, questions=questions))
    mean = summarize(rows)
    out = mean if conventions != TEACHER_FORCED or questions else {k: mean[k] for k in KEYS}
    base = summarize(edit_metrics(h, requests, conventions=conventions, questions=questions))
    out.update({f"base.{k}": v for k, v in base.items()})
    out["specificity.base"] = base.get("specificity.prob_compare")
    out["s/edit"] = seconds / len(requests)
    return out
