"""MQuAKE (multi-hop questions over edited facts, Zhong et al. 2023) -> `EditRequest`.

Each record (a *case*): `case_id`, `requested_rewrite` (a list of CounterFact-style edits:
prompt with `{}`, subject, target_new {str}, target_true {str}, relation_id), `questions`
(multi-hop questions whose answer follows from the edits), `answer` / `answer_alias` (before)
and `new_answer` / `new_answer_alias` (after).

A case becomes one request per rewrite (`<case_id>/<i>`). Its multi-hop questions are
`portability` questions (wanted new_answer, unwanted answer, both with their aliases) on the
case's last rewrite: their answer follows only once all of the case's edits are applied, so
measure them with the batch or sequential protocol over whole cases (`extra['case']` names it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editrisk.data._records import Record, iter_records
from editrisk.requests import EditRequest, validate_requests


def _label(rec: Record, within: dict[str, Any], key: str, name: str) -> str:
    value = rec.get(key, (dict, str), within=within, name=name)
    if isinstance(value, dict):
        return rec.text("str", within=value, name=f"{name}.str")
    if not value.strip():
        rec.fail("empty string", name)
    return value


def mquake_requests(data: Any, *, file: str = "<memory>", record: int = 0) -> list[EditRequest]:
    """One MQuAKE case as its requests, in rewrite order (InputError on malformed input)."""
    rec = Record(data, file, record)
    case = rec.get("case_id", (int, str), default=record)
    rewrites = rec.get("requested_rewrite", list)
    if not rewrites:
        rec.fail("lists no rewrite", "requested_rewrite")
    questions = rec.strings("questions")
    old, new = rec.text("answer"), rec.text("new_answer")
    aliases = {new: rec.strings("new_answer_alias"), old: rec.strings("answer_alias")}
    out = []
    for i, rw in enumerate(rewrites):
        where = f"requested_rewrite[{i}]"
        if not isinstance(rw, dict):
            rec.fail(f"expected a JSON object, got {type(rw).__name__}", where)
        prompt = rec.text("prompt", within=rw, name=f"{where}.prompt")
        if prompt.count("{}") != 1:
            rec.fail(f"prompt must contain '{{}}' exactly once: {prompt!r}", f"{where}.prompt")
        last = i == len(rewrites) - 1
        target_new = _label(rec, rw, "target_new", f"{where}.target_new")
        target_true = _label(rec, rw, "target_true", f"{where}.target_true")
        relation = rw.get("relation_id")
        own = {a: list(v) for a, v in aliases.items() if last and v}
        d = {
            "subject": rec.text("subject", within=rw, name=f"{where}.subject"),
            "prompt": prompt,
            "target_new": target_new,
            "target_true": target_true,
            "id": f"{case}/{i}",
            "relation": str(relation) if relation is not None else None,
            "questions": [
                {"kind": "portability", "prompt": q, "target": new}
                | ({"unwanted": old} if old != new else {})
                for q in (questions if last else ())
            ],
            "aliases": own,
            "extra": {"case": str(case), "case_edits": len(rewrites)},
        }
        out.append(EditRequest.from_dict(d, file=file, record=record))
    return out


def iter_mquake(path: str | Path) -> Iterator[EditRequest]:
    """Stream requests from an MQuAKE file (JSON array or JSON lines), case by case."""
    for i, data in iter_records(path):
        yield from mquake_requests(data, file=str(path), record=i)


def load_mquake(path: str | Path, limit: int | None = None) -> list[EditRequest]:
    """All (or the first `limit`) requests of an MQuAKE file, validated together; `limit`
    counts requests, so the last case may be cut short."""
    out = []
    for r in iter_mquake(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(r)
    return validate_requests(out, file=str(path))
