"""Shared reading helpers: records from a JSON array or JSON-lines file, typed field access."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editrisk.errors import InputError
from editrisk.files import read_text


def iter_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(record number, parsed JSON) from a JSON array file or a JSON-lines file.

    A file whose first non-blank character is `[` is one JSON array; anything else is read
    line by line, so large JSONL files stream.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", file=str(path))
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                data = json.loads(read_text(path))
            except json.JSONDecodeError as err:
                raise InputError(
                    f"not valid JSON (line {err.lineno}: {err.msg})", file=str(path)
                ) from err
            if not isinstance(data, list):
                raise InputError("expected a JSON array of records", file=str(path))
            yield from enumerate(data)
            return
        record = -1
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(
                    f"not UTF-8 text (line {lineno}, byte {raw[err.start]:#04x})", file=str(path)
                ) from None
            if not line.strip():
                continue
            record += 1
            try:
                yield record, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"not valid JSON ({err.msg})", file=str(path), record=record
                ) from err


class Record:
    """Typed access to one record's fields; every failure names file, record and field."""

    def __init__(self, data: Any, file: str, record: int) -> None:
        self.file, self.record = file, record
        if not isinstance(data, dict):
            self.fail(f"expected a JSON object, got {type(data).__name__}", None)
        self.data: dict[str, Any] = data

    def fail(self, msg: str, fld: str | None) -> None:
        raise InputError(msg, file=self.file, record=self.record, field=fld)

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        *,
        default: Any = ...,
        within: Any = None,
        name: str | None = None,
    ) -> Any:
        """`key` from `within` (default: the record), checked against `kind`."""
        src = self.data if within is None else within
        name = name or key
        if key not in src:
            if default is ...:
                self.fail("missing required field", name)
            return default
        value = src[key]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
            want = " or ".join(t.__name__ for t in _as_tuple(kind))
            self.fail(f"expected {want}, got {type(value).__name__}", name)
        return value

    def text(self, key: str, *, within: Any = None, name: str | None = None) -> str:
        value = self.get(key, str, within=within, name=name)
        if not value.strip():
            self.fail("empty string", name or key)
        return value

    def strings(self, key: str, *, within: Any = None, name: str | None = None) -> tuple[str, ...]:
        value = self.get(key, list, default=[], within=within, name=name)
        if not all(isinstance(x, str) for x in value):
            self.fail("expected a list of strings", name or key)
        return tuple(value)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
