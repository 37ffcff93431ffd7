"""zsRE (MEND's JSON) -> `EditRequest`.

Each record: `src` (question containing the subject), `subject`, `alt` (new answer),
`answers` (true answers; the first is used), `rephrase` (paraphrased question), `loc`
(an unrelated question, often prefixed "nq question: ") and `loc_ans` (its answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editrisk.data._records import Record, iter_records
from editrisk.requests import EditRequest, validate_requests


def zsre_request(data: Any, *, file: str = "<memory>", record: int = 0) -> EditRequest:
    """One zsRE record as an `EditRequest` (InputError on malformed input)."""
    rec = Record(data, file, record)
    src = rec.text("src")
    subject = rec.text("subject")
    if subject not in src:
        rec.fail(f"subject {subject!r} does not occur in src {src!r}", "subject")
    if "{}" in src:
        rec.fail("src must not contain '{}'", "src")
    alt = rec.text("alt")
    answers = rec.get("answers", (list, str), default=[])
    if isinstance(answers, str):
        answers = [answers]
    if not all(isinstance(a, str) for a in answers):
        rec.fail("expected a list of strings", "answers")
    answers = [a for a in answers if a.strip()]
    target_true = answers[0] if answers else None
    if target_true is not None and target_true.strip() == alt.strip():
        target_true = None  # zsRE has records whose alt repeats the answer: nothing to compare
    rephrase = rec.get("rephrase", str, default="")
    neighbours = []
    if "loc" in rec.data or "loc_ans" in rec.data:
        neighbours.append({"prompt": rec.text("loc"), "target": rec.text("loc_ans")})
    d = {
        "subject": subject,
        "prompt": src.replace(subject, "{}", 1),
        "target_new": alt,
        "target_true": target_true,
        "paraphrases": [rephrase] if rephrase.strip() else [],
        "neighbours": neighbours,
        "id": str(rec.get("case_id", (int, str), default=record)),
        "relation": "zsre",
    }
    return EditRequest.from_dict(d, file=file, record=record)


def iter_zsre(path: str | Path) -> Iterator[EditRequest]:
    """Stream requests from a zsRE file (JSON array or JSON lines)."""
    for i, data in iter_records(path):
        yield zsre_request(data, file=str(path), record=i)


def load_zsre(path: str | Path, limit: int | None = None) -> list[EditRequest]:
    """All (or the first `limit`) requests of a zsRE file, validated together."""
    out = []
    for r in iter_zsre(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(r)
    return validate_requests(out, file=str(path))
