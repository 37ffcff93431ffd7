"""The one results store: a run directory holds the resolved config, environment and model
record, append-only `rows.jsonl` (the source of truth) and its CSV/parquet exports.

Rows are JSON lines appended with a single `write` each and fsynced, so a killed process never
leaves a torn row that a reader would take for data: an incomplete last line (no newline) is
ignored by readers and cut off before the next append.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text, read_text

TRACKED_PACKAGES = ("editrisk", "torch", "transformers", "safetensors", "numpy", "gguf")


def environment() -> dict[str, Any]:
    """Python, platform and package versions, for the record."""
    versions = {}
    for pkg in TRACKED_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextlib.contextmanager
def _locked(path: Path, flags: int = 0) -> Iterator[int]:
    """`path` opened (created if missing) and exclusively locked for the block; its fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


class ResultStore:
    """Append-only JSON-lines rows; safe against a process killed mid-write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, rows: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Append rows with one `write`, under an exclusive lock: several processes (the
        workers of a parallel run) may append to one store."""
        rows = [rows] if isinstance(rows, dict) else list(rows)
        if not rows:
            return
        payload = "".join(
            json.dumps(_finite(r), sort_keys=True, default=_jsonable, allow_nan=False) + "\n"
            for r in rows
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, os.O_APPEND) as fd:
            _cut_torn_tail(fd)
            os.write(fd, payload.encode("utf-8"))
            os.fsync(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:  # bytes: json.loads reads UTF-8 and names a bad one
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    return  # torn last line from a killed writer
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise EditriskError(
                        f"{self.path}: record {lineno} is not JSON ({err})"
                    ) from err
                if not isinstance(row, dict):
                    raise EditriskError(f"{self.path}: record {lineno} is not a JSON object")
                yield row

    def rows(self) -> list[dict[str, Any]]:
        return list(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_csv(self, path: str | Path) -> Path:
        rows = self.rows()
        columns = sorted({k for r in rows for k in r})
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in rows:
                w.writerow({k: _cell(r.get(k)) for k in columns})
        tmp.replace(path)
        return path

    def to_parquet(self, path: str | Path) -> Path:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as err:
            raise EditriskError(
                "Parquet export needs pyarrow: pip install 'editrisk[parquet]'"
            ) from err
        rows = [{k: _cell(v) for k, v in r.items()} for r in self.rows()]
        for col in {k for r in rows for k in r}:  # mixed types (e.g. layer 3 / "default")
            kinds = {type(r[col]) for r in rows if r.get(col) is not None}
            if len(kinds - {int, float}) and len(kinds) > 1:
                for r in rows:
                    if r.get(col) is not None:
                        r[col] = str(r[col])
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        tmp.replace(path)
        return path


def _cut_torn_tail(fd: int) -> None:
    """Cut an incomplete trailing line (left by a killed writer) off the open file `fd`."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    os.ftruncate(fd, data.rfind(b"\n") + 1)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every NaN or infinite number (nested ones too) written as null and its
    column named in `nonfinite`: valid JSON, and a reader sees the value is missing and why."""
    bad = sorted(k for k, v in row.items() if _nulled(v) is not v)
    if not bad:
        return row
    return {**{k: _nulled(v) for k, v in row.items()}, "nonfinite": bad}


def _nulled(v: Any) -> Any:
    """`v` itself when every number in it is finite, else a copy with those numbers as None."""
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:
        x = v.item()
        return v if not isinstance(x, float) or math.isfinite(x) else None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (dict, list, tuple)):
        items = v.items() if isinstance(v, dict) else enumerate(v)
        new = {k: _nulled(x) for k, x in items}
        if all(new[k] is x for k, x in (v.items() if isinstance(v, dict) else enumerate(v))):
            return v
        return new if isinstance(v, dict) else list(new.values())
    return v


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in a result row")


def _cell(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _with_new_methods(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """`stored` plus the methods of `new` it lacks, when the two differ in nothing else
    (a method under the same label must be the same); None when they conflict."""
    if stored == new:
        return stored

    def rest(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k != "methods"}

    old_m, new_m = stored.get("methods"), new.get("methods")
    labelled = all(
        isinstance(ms, list) and all(isinstance(m, dict) and "label" in m for m in ms)
        for ms in (old_m, new_m)
    )
    if not labelled or rest(stored) != rest(new):
        return None
    have = {m["label"]: m for m in old_m}
    if any(have.get(m["label"], m) != m for m in new_m):
        return None
    return {**stored, "methods": old_m + [m for m in new_m if m["label"] not in have]}


class RunDir:
    """A run directory: config.yaml, environment.json, model.json, rows.jsonl, checkpoints/."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.results = ResultStore(self.path / "rows.jsonl")

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def start(self, config: dict[str, Any], model_info: dict[str, Any] | None = None) -> None:
        """Record the resolved config, environment and model at the start of a run.

        A resumed run must carry the same config, except that a config of labelled `methods`
        may bring methods the directory does not hold yet (`editrisk run --only` in several
        invocations): they join config.yaml. Anything else different is refused.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(yaml.safe_dump(config, sort_keys=True))  # as stored
        with _locked(self.path / ".config.lock"):  # two `--only` runs starting at once
            if self.config_path.exists() and self.holds_results():
                stored = self.config()
                merged = _with_new_methods(stored, config)
                if merged is None:
                    why = _differs(stored, config)
                    raise EditriskError(
                        f"{self.path} holds a run with a different config ({why}); "
                        "use a new run directory"
                    )
            else:
                stored, merged = None, config
            if merged != stored:
                self.write_text("config.yaml", yaml.safe_dump(merged, sort_keys=True))
        self.write_text("environment.json", json.dumps(environment(), indent=2))
        if model_info is not None:
            self.write_text("model.json", json.dumps(model_info, indent=2, sort_keys=True))

    def holds_results(self) -> bool:
        """Whether a run wrote anything here beyond its config (a start that failed before its
        first row leaves none, and a corrected config may then take its place)."""
        return self.results.path.exists() or (self.path / "checkpoints").exists()

    def write_text(self, name: str, text: str) -> Path:
        """Write file `name` of this run directory atomically; a name leading outside is
        refused."""
        path = self.path / name
        atomic_write_text(path, text, root=self.path)
        return path

    def config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise EditriskError(f"{self.path} is not a run directory (no config.yaml)")
        try:
            cfg = yaml.safe_load(read_text(self.config_path))
        except yaml.YAMLError as err:
            raise EditriskError(f"{self.config_path}: not valid YAML ({err})") from err
        if not isinstance(cfg, dict):
            raise EditriskError(f"{self.config_path}: not a run config (not a mapping)")
        return cfg

    def model_info(self) -> dict[str, Any]:
        path = self.path / "model.json"
        if not path.exists():
            return {}
        try:
            info = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise EditriskError(f"{path}: not valid JSON ({err.msg})") from None
        if not isinstance(info, dict):
            raise EditriskError(f"{path}: not a model record (not an object)")
        return info

    @contextlib.contextmanager
    def writer(self) -> Iterator[RunDir]:
        """Hold the run directory's writer lock for the block: one process writes a run
        directory at a time (its forked workers append under the rows lock)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise EditriskError(f"cannot write run directory {self.path}: {err.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise EditriskError(
                    f"{self.path} is being written by another editrisk process (pid {holder}); "
                    "wait for it or choose another run directory"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
        finally:
            os.close(fd)

    def export(self) -> list[Path]:
        """Write rows.csv (and rows.parquet when pyarrow is present)."""
        out = [self.results.to_csv(self.path / "rows.csv")]
        with contextlib.suppress(EditriskError):  # pyarrow missing
            out.append(self.results.to_parquet(self.path / "rows.parquet"))
        return out


def _differs(stored: dict[str, Any], new: dict[str, Any], where: str = "") -> str:
    """The first key where two configs differ, with both values."""
    for k in sorted(set(stored) | set(new), key=str):
        a, b = stored.get(k), new.get(k)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _differs(a, b, f"{where}{k}.")
            return f"{where}{k}: {a!r} there, {b!r} here"
    return "no difference"


class Run:
    """A finished or running study read back: its config, model record and rows."""

    def __init__(self, path: str | Path) -> None:
        self.dir = RunDir(path)
        self.config = self.dir.config()
        self.model = self.dir.model_info()
        self.rows = self.dir.results.rows()

    @property
    def path(self) -> Path:
        return self.dir.path

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """Rows whose columns equal every `where` value."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def to_pandas(self) -> Any:
        """All rows as a pandas DataFrame (identity columns first)."""
        import pandas as pd

        df = pd.DataFrame(self.rows)
        first = [c for c in IDENTITY if c in df.columns]
        return df[first + sorted(c for c in df.columns if c not in first)]


def load_run(path: str | Path) -> Run:
    """The run directory at `path` (any study: protocol run, grid, vision study, demo)."""
    return Run(path)


# The identity columns of every row (README: "The row schema"); metrics are `<metric>.<convention>`.
IDENTITY = (
    "run", "family", "model", "fingerprint", "method", "editor", "layer", "path", "alpha",
    "seed", "edit_set", "protocol", "batch_size", "step", "n_steps", "edits", "schedule",
    "kind", "request", "key",
)  # fmt: skip
