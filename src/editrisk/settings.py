"""Process-wide settings that are not state: the cache directory, device and dtype choice, and
how worker processes share the cores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from editrisk.errors import EditriskError, InputError

CACHE_ENV = "EDITRISK_CACHE"

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


def cache_dir() -> Path:
    """The one directory for everything editrisk caches (override with $EDITRISK_CACHE)."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = path if root else path / "editrisk"
    path.mkdir(parents=True, exist_ok=True)
    return path


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """An equal share of the cores for each worker process (at least one thread)."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def fork_available() -> bool:
    """Whether worker processes can be forked (POSIX with the fork start method)."""
    import multiprocessing as mp

    return os.name == "posix" and "fork" in mp.get_all_start_methods()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks cuda when present, else cpu."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:  # torch's message lists every device type it knows
        raise EditriskError(
            f"unknown device {str(device)!r}; use cpu, cuda, cuda:N, mps or auto"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EditriskError(f"device '{device}' requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None = "float32") -> torch.dtype:
    """Accepts torch dtypes or their names (float32, bfloat16, float16, with short aliases)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise EditriskError(f"unknown dtype '{dtype}'; choose one of {sorted(set(_DTYPES))}")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping ({} when empty); errors name the file."""
    import yaml

    from editrisk.files import read_text

    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", file=str(path))
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({err})", file=str(path)) from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError("top level must be a mapping", file=str(path))
    return raw


def _busy_cores(window: float) -> float | None:
    """Cores busy over the next `window` seconds (from /proc/stat; None where it is absent)."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def free_cores(cores: int | None = None, window: float = 0.3) -> int:
    """Cores not busy with other processes right now (sampled over `window` seconds; the
    1-minute load average where /proc/stat is absent), at least one.

    torch's threads spin against each other when the cores are oversubscribed (a 2-thread
    edit beside another 2-thread job ran 10-30x slower than alone); one thread per free core
    keeps an edit near its share of the machine. Niced processes count as busy: beside one,
    a 2-thread vision study ran over 3x slower than with one thread."""
    cores = cores or os.cpu_count() or 1
    busy = _busy_cores(window)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            return cores
    return max(1, min(cores, round(cores - busy)))
