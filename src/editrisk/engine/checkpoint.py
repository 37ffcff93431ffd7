"""Checkpoints of a job: after step s, the cumulative Delta (safetensors), the
editor's memory (safetensors) and the step position. Each checkpoint is written into a
temporary folder and renamed into place, so a killed process leaves the previous one intact."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from editrisk.delta import Delta
from editrisk.errors import EditriskError
from editrisk.files import read_text

_PREFIX = "step-"


@dataclass
class Checkpoint:
    step: int
    cumulative: Delta
    editor_state: dict[str, Any]
    meta: dict[str, Any]


def save_checkpoint(
    folder: Path,
    step: int,
    cumulative: Delta,
    editor_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write checkpoint `step` under `folder` atomically; keep the newest `keep`."""
    bad = [k for k, v in editor_state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EditriskError(f"editor state entries {bad} are not tensors; cannot checkpoint")
    final = folder / f"{_PREFIX}{step:06d}"
    tmp = folder / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cumulative.save(tmp / "cumulative.safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in editor_state.items()}
    save_file(state, str(tmp / "editor.safetensors"))
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(folder.glob(f"{_PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    """The newest complete checkpoint under `folder`, or None."""
    found = sorted(p for p in folder.glob(f"{_PREFIX}*") if (p / "meta.json").is_file())
    if not found:
        return None
    path = found[-1]
    try:
        meta = json.loads(read_text(path / "meta.json"))
        step = int(meta["step"])
        state = load_file(str(path / "editor.safetensors"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as err:
        raise EditriskError(
            f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); remove the folder "
            "to redo its step"
        ) from None
    return Checkpoint(step, Delta.load(path / "cumulative.safetensors"), state, meta)
