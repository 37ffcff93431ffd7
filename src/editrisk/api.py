"""Three-line Python API: load, edit, export.

h = editrisk.load_model("smollm2-135m")
delta = editrisk.edit(h, "rome", EditRequest("France", "The capital of {} is", "Rome"))
editrisk.export_model(h, delta, "france-rome/")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


def edit(
    model: ModelHandle,
    editor: str,
    requests: EditRequest | Sequence[EditRequest],
    hparams: dict[str, Any] | None = None,
    **overrides: Any,
) -> Delta:
    """Compute the edit of `requests` with a registered editor; the model is left unchanged."""
    reqs = [requests] if isinstance(requests, EditRequest) else list(requests)
    return get_editor(editor, hparams, **overrides).edit(model, reqs)


def export_model(model: ModelHandle, delta: Delta | None, out: str | Path) -> Path:
    """Write the (edited) model as a standard Hugging Face folder that transformers loads.

    Written to a temporary folder first and renamed, so a failure leaves nothing behind.
    """
    out = Path(out)
    if delta is not None and delta.codebooks:
        raise EditriskError(
            "this edit is a codebook (GRACE) and changes no weight, so a Hugging Face folder "
            "cannot carry it; save the delta and apply it with editrisk instead"
        )
    if out.exists() and not out.is_dir():
        raise EditriskError(f"{out} is a file; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise EditriskError(f"{out} exists and is not empty; choose a new folder")
    above = next(p for p in out.absolute().parents if p.exists())
    if not above.is_dir():
        raise EditriskError(f"{above} is a file, not a folder; cannot create {out} under it")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if delta is not None:
            delta.apply(model.model)
        try:
            model.model.save_pretrained(tmp)
            model.tokenizer.save_pretrained(tmp)
        finally:
            if delta is not None:
                delta.revert(model.model)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
