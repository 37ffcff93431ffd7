"""Writing files safely: atomically (never half-written) and only inside a chosen root."""

from __future__ import annotations

import os
from pathlib import Path

from editrisk.errors import EditriskError


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def inside(root: str | Path, *parts: str) -> Path:
    """`root / parts...`, refused when a part would leave `root` (absolute, `..`, links)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise EditriskError(f"{'/'.join(parts)!r} would be written outside {root}")
    return path
