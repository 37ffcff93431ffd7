"""CounterFact (ROME's JSON) -> `EditRequest`.

Each record: `case_id`, `requested_rewrite` {prompt with `{}`, subject, target_new {str},
target_true {str}, relation_id}, `paraphrase_prompts`, `neighborhood_prompts` (other subjects
whose true answer is target_true), `attribute_prompts` (subjects whose true answer is
target_new; kept in `extra`), `generation_prompts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editrisk.data._records import Record, iter_records
from editrisk.requests import EditRequest, Neighbour, validate_requests


def _target(rec: Record, rewrite: dict[str, Any], key: str) -> str:
    value = rec.get(key, (dict, str), within=rewrite, name=f"requested_rewrite.{key}")
    if isinstance(value, dict):
        return rec.text("str", within=value, name=f"requested_rewrite.{key}.str")
    if not value.strip():
        rec.fail("empty string", f"requested_rewrite.{key}")
    return value


def counterfact_request(data: Any, *, file: str = "<memory>", record: int = 0) -> EditRequest:
    """One CounterFact record as an `EditRequest` (InputError on malformed input)."""
    rec = Record(data, file, record)
    rw = rec.get("requested_rewrite", dict)
    prompt = rec.text("prompt", within=rw, name="requested_rewrite.prompt")
    subject = rec.text("subject", within=rw, name="requested_rewrite.subject")
    if prompt.count("{}") != 1:
        rec.fail(f"prompt must contain '{{}}' exactly once: {prompt!r}", "requested_rewrite.prompt")
    target_new = _target(rec, rw, "target_new")
    target_true = _target(rec, rw, "target_true")
    neighbours = tuple(Neighbour(p, target_true) for p in rec.strings("neighborhood_prompts"))
    extra: dict[str, Any] = {}
    attribute = rec.strings("attribute_prompts")
    if attribute:
        extra["attribute_prompts"] = list(attribute)
    case_id = rec.get("case_id", (int, str), default=record)
    relation = rw.get("relation_id")
    return _build(
        rec,
        subject=subject,
        prompt=prompt,
        target_new=target_new,
        target_true=target_true,
        paraphrases=rec.strings("paraphrase_prompts"),
        neighbours=neighbours,
        generation_prompts=rec.strings("generation_prompts"),
        id=str(case_id),
        relation=str(relation) if relation is not None else None,
        extra=extra,
    )


def _build(rec: Record, **fields: Any) -> EditRequest:
    """Go through `EditRequest.from_dict` so every check names this file and record."""
    d = dict(fields)
    d["neighbours"] = [{"prompt": n.prompt, "target": n.target} for n in d["neighbours"]]
    d["paraphrases"] = list(d["paraphrases"])
    d["generation_prompts"] = list(d["generation_prompts"])
    return EditRequest.from_dict(d, file=rec.file, record=rec.record)


def iter_counterfact(path: str | Path) -> Iterator[EditRequest]:
    """Stream requests from a CounterFact file (JSON array or JSON lines)."""
    for i, data in iter_records(path):
        yield counterfact_request(data, file=str(path), record=i)


def load_counterfact(path: str | Path, limit: int | None = None) -> list[EditRequest]:
    """All (or the first `limit`) requests of a CounterFact file, validated together."""
    out = []
    for r in iter_counterfact(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(r)
    return validate_requests(out, file=str(path))
