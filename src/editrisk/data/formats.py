"""Pick a request loader by file content: editrisk JSONL, CounterFact, zsRE, MQuAKE or
RippleEdits."""

from __future__ import annotations

from pathlib import Path

from editrisk.data._records import iter_records
from editrisk.data.counterfact import load_counterfact
from editrisk.data.jsonl import read_jsonl
from editrisk.data.mquake import load_mquake
from editrisk.data.rippleedits import load_rippleedits
from editrisk.data.zsre import load_zsre
from editrisk.errors import InputError
from editrisk.requests import EditRequest

FORMATS = ("editrisk", "counterfact", "zsre", "mquake", "rippleedits")


def detect_format(path: str | Path) -> str:
    """'mquake' (a list of requested_rewrite), 'counterfact' (one requested_rewrite),
    'rippleedits' (has edit), 'zsre' (has src and alt) or 'editrisk'."""
    for i, first in iter_records(path):
        if not isinstance(first, dict):
            raise InputError("expected a JSON object", file=str(path), record=i)
        if isinstance(first.get("requested_rewrite"), list):
            return "mquake"
        if "requested_rewrite" in first:
            return "counterfact"
        if "edit" in first:
            return "rippleedits"
        if "src" in first and "alt" in first:
            return "zsre"
        return "editrisk"
    raise InputError("no records", file=str(path))


def load_requests(
    path: str | Path, fmt: str = "auto", limit: int | None = None
) -> list[EditRequest]:
    """Requests from a file in any supported format (`fmt='auto'` detects it)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "counterfact":
        return load_counterfact(path, limit)
    if fmt == "zsre":
        return load_zsre(path, limit)
    if fmt == "mquake":
        return load_mquake(path, limit)
    if fmt == "rippleedits":
        return load_rippleedits(path, limit)
    if fmt == "editrisk":
        reqs = read_jsonl(path)
        return reqs[:limit] if limit is not None else reqs
    raise InputError(f"unknown format {fmt!r}; choose one of {FORMATS} or 'auto'", file=str(path))
