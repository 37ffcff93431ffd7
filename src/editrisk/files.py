"""Reading and writing files safely: writes are atomic (never half-written) and stay under
their root; reads of text name the file and line of a byte that is not UTF-8."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from editrisk.errors import EditriskError, FileError, InputError

NEWLINE = b"\n"


def under(root: str | Path, *parts: str | Path) -> Path:
    """`root / parts...`, refused (EditriskError) when it resolves outside `root`: a name
    that came from a user or a file never leads a write out of its folder."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        shown = "/".join(str(p) for p in parts)
        raise EditriskError(f"refusing to write {shown!r}: it leads outside {root}")
    return path


def atomic_write_text(path: Path, text: str, root: str | Path | None = None) -> None:
    """Write `text` to `path` via a temporary file and rename (never half-written); with
    `root`, `path` must lie under it. A file-system failure is a `FileError` naming `path`."""
    path = under(root, path) if root is not None else Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise FileError.of(err, path) from None


def read_text(path: str | Path) -> str:
    """The UTF-8 text of `path`; a byte that is not UTF-8 is an `InputError` naming the file
    and the line, an unreadable file a `FileError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileError.of(err, path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise decode_error(err, str(path), data) from None


def decode_error(err: UnicodeDecodeError, file: str, data: bytes | None = None) -> InputError:
    """A `UnicodeDecodeError` as a one-line `InputError` naming the file (and line)."""
    line = "" if data is None else f"line {data.count(NEWLINE, 0, err.start) + 1}, "
    return InputError(f"not UTF-8 text ({line}byte {err.object[err.start]:#04x})", file=file)
