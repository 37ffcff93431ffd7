"""editrisk's own request format: one `EditRequest.to_dict()` JSON object per line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from editrisk.data._records import iter_records
from editrisk.requests import EditRequest, validate_requests


def iter_jsonl(path: str | Path) -> Iterator[EditRequest]:
    """Stream requests from a JSONL file; blank lines are skipped, records count from 0."""
    for i, d in iter_records(path):
        yield EditRequest.from_dict(d, file=str(path), record=i)


def read_jsonl(path: str | Path) -> list[EditRequest]:
    """All requests of a JSONL file, validated together (unique ids)."""
    return validate_requests(iter_jsonl(path), file=str(path))


def write_jsonl(requests: Iterable[EditRequest], path: str | Path) -> Path:
    """Write requests atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
