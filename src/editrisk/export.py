"""Exports of an edit: the edited model as a standard Hugging Face folder, or the edit alone
as a PEFT LoRA adapter that `peft` loads onto the base model with the same outputs.

Both folders carry the edit record (`editrisk_edit.json`: requests, editor, hyperparameters,
fingerprints, the miss check) and a model card (`README.md`). A folder is written under a
temporary name and renamed, so a failure leaves nothing behind.

LoRA adds `scaling * B @ A` to a weight (`scaling = lora_alpha / r`; here 1). A `LowRank`
update `left @ right.T` maps onto it exactly; a dense update is factored by SVD at its
numerical rank, and refused when that rank is not low (the factors would be larger than the
matrix) unless a `rank` is given, which truncates and reports the relative error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from editrisk.delta import Delta, LowRank
from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest

RECORD = "editrisk_edit.json"
CARD = "README.md"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@contextlib.contextmanager
def new_folder(out: str | Path) -> Iterator[Path]:
    """A temporary folder beside `out` that becomes `out` when the block succeeds; refused
    when `out` is a file or a folder that is not empty."""
    out = Path(out)
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
        tmp.mkdir(parents=True)
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _refuse_codebooks(delta: Delta | None, what: str) -> None:
    if delta is not None and delta.codebooks:
        raise EditriskError(
            f"this edit is a codebook (GRACE) and changes no weight, so {what} cannot carry "
            "it; save the delta and apply it with editrisk instead"
        )


# -- the record and the card -----------------------------------------------------------------
def _requests(delta: Delta | None, requests: Sequence[EditRequest] | None) -> list[dict] | None:
    """The edited requests: those given, else those the delta's miss check recorded."""
    if requests:
        return [
            {"id": r.id or None, "subject": r.subject, "prompt": r.prompt,
             "target_new": r.target_new, "target_true": r.target_true}
            for r in requests
        ]  # fmt: skip
    check = (delta.metadata.get("check") or {}) if delta is not None else {}
    if not check.get("requests"):
        return None
    keys = ("request", "subject", "prompt", "target_new", "target_true")
    return [{k: o.get(k) for k in keys} for o in check["requests"]]


def edit_record(
    h: ModelHandle,
    delta: Delta | None,
    kind: str,
    base_model: str | None = None,
    requests: Sequence[EditRequest] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What an exported folder says about its edit (written as `editrisk_edit.json`)."""
    from editrisk import __version__

    meta = delta.metadata if delta is not None else {}
    return {
        "format": "editrisk.edit/1",
        "kind": kind,
        "editrisk_version": __version__,
        "base_model": base_model or h.name,
        "base_fingerprint": h.fingerprint(),
        "editor": meta.get("editor"),
        "hyperparameters": meta.get("hyperparameters"),
        "delta_model_fingerprint": meta.get("model_fingerprint"),
        "parameters": {
            n: {
                "layer": delta.layer(n),
                "shape": list(u.shape),
                "update": f"lowrank r={u.rank}" if isinstance(u, LowRank) else "dense",
            }
            for n, u in (delta.updates.items() if delta is not None else ())
        },  # fmt: skip
        "requests": _requests(delta, requests),
        "check": meta.get("check"),
        **extra,
    }


def _cell(text: Any) -> str:
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def model_card(record: dict[str, Any]) -> str:
    """A Hugging Face model card (README.md) for an exported edit."""
    peft = record["kind"] == "peft-lora"
    base, editor = record["base_model"], record.get("editor") or "an unrecorded editor"
    front = ["---", f"library_name: {'peft' if peft else 'transformers'}"]
    if "/" in base and not Path(base).exists():  # a hub id, not a local path
        front.append(f"base_model: {base}")
    tags = ["editrisk", "model-editing"] + ([_cell(editor)] if record.get("editor") else [])
    front += ["tags:", *(f"- {t}" for t in tags), "---", ""]
    what = "a PEFT LoRA adapter holding" if peft else "a copy of the model with"
    intro = (
        f"This folder is {what} a model edit made with editrisk {record['editrisk_version']}: "
        f"editor `{editor}` on `{base}` (fingerprint `{record['base_fingerprint']}`)."
        if record["parameters"]
        else f"This folder is `{base}` (fingerprint `{record['base_fingerprint']}`) written by "
        f"editrisk {record['editrisk_version']} with no edit applied."
    )
    lines = [
        f"# {editor} edit of {base}" if record["parameters"] else f"# {base}, unedited",
        "",
        intro,
        "",
        "## Edited facts",
        "",
    ]
    reqs = record.get("requests")
    outcomes = {o.get("prompt"): o for o in (record.get("check") or {}).get("requests", [])}
    if not reqs:
        lines.append("The requests were not recorded with this edit.")
    else:
        lines += ["| prompt | new target | true target | took | P(new) before -> after |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in reqs:
            rendered = (r.get("prompt") or "").replace("{}", r.get("subject") or "{}")
            o = outcomes.get(rendered) or outcomes.get(r.get("prompt"))
            took = "" if o is None else ("yes" if o.get("took") else "**no**")
            p = "" if o is None else f"{o['p_new_before']:.3g} -> {o['p_new_after']:.3g}"
            lines.append(f"| {_cell(rendered)} | {_cell(r.get('target_new'))} | "
                         f"{_cell(r.get('target_true'))} | {took} | {p} |")  # fmt: skip
    lines += [
        "",
        "## How it was made",
        "",
        "```json",
        json.dumps({"editor": record.get("editor"),
                    "hyperparameters": record.get("hyperparameters"),
                    "parameters": record.get("parameters")}, indent=2, sort_keys=True),
        "```",
        "",
        "## Use",
        "",
        "```python",
    ]  # fmt: skip
    if peft:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            'model = PeftModel.from_pretrained(base, "PATH/TO/THIS/FOLDER")',
        ]
        lora = record.get("lora") or {}
        if lora.get("truncated"):
            lines += ["```", "", "The adapter is a truncation of the edit (relative Frobenius "
                      f"error per weight: {lora['truncated']}).", "```python"]  # fmt: skip
    else:
        lines += [
            "from transformers import AutoModelForCausalLM",
            "",
            'model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")',
        ]
    lines += [
        "```",
        "",
        "## Caveats",
        "",
        "An edit changes more than its requests: paraphrases, neighbouring facts and general "
        "ability can move. Measure them with `editrisk eval` before shipping. The full record "
        f"is in `{RECORD}`.",
        "",
    ]
    return "\n".join(front + lines)


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """The record and the model card into `folder`."""
    (folder / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    (folder / CARD).write_text(model_card(record))


# -- a Hugging Face folder -------------------------------------------------------------------
def export_hf(
    h: ModelHandle,
    delta: Delta | None,
    out: str | Path,
    base_model: str | None = None,
    requests: Sequence[EditRequest] | None = None,
) -> Path:
    """Write the (edited) model as a standard Hugging Face folder that transformers loads."""
    out = Path(out)
    _refuse_codebooks(delta, "a Hugging Face folder")
    with new_folder(out) as tmp:
        record = edit_record(h, delta, "hf-model", base_model, requests)
        if delta is not None:
            delta.apply(h.model)
        try:
            h.model.save_pretrained(tmp)
            h.tokenizer.save_pretrained(tmp)
        finally:
            if delta is not None:
                delta.revert(h.model)
        write_record(tmp, record)
    return out


# -- a PEFT LoRA adapter ---------------------------------------------------------------------
@dataclass(frozen=True)
class LoraFactor:
    """One weight's update as LoRA factors: `B @ A` (B: out x r, A: r x in) in the layout of
    `nn.Linear` (out, in); a GPT-2 `Conv1D` weight (in, out) receives its transpose."""

    module: str
    A: torch.Tensor
    B: torch.Tensor
    conv1d: bool
    exact_rank: int  # numerical rank of the update
    error: float  # relative Frobenius error of the factors (0 when exact)

    @property
    def rank(self) -> int:
        return self.A.shape[0]


def _svd_factors(d: torch.Tensor, rank: int | None, name: str) -> tuple[Any, Any, int, float]:
    """(L, R) with L @ R.T the update `d` at its numerical rank (or truncated to `rank`)."""
    u, s, vh = torch.linalg.svd(d.to(torch.float64), full_matrices=False)
    tol = (s.max() if s.numel() else 0.0) * max(d.shape) * torch.finfo(torch.float32).eps
    exact = int((s > tol).sum())
    m, n = d.shape
    if rank is None and exact * (m + n) >= m * n:
        raise EditriskError(
            f"the update of '{name}' has rank {exact} of {min(m, n)}: LoRA factors would be "
            "larger than the weight itself; give --rank R to truncate it (the error is "
            "reported) or export the full model without --peft"
        )
    r = max(1, exact if rank is None else min(exact, rank))
    err = float(s[r:].square().sum().sqrt() / s.square().sum().sqrt()) if exact else 0.0
    return (u[:, :r] * s[:r]).float(), vh[:r].T.float(), exact, err


def lora_factors(
    h: ModelHandle, delta: Delta, rank: int | None = None, source: str | None = None
) -> list[LoraFactor]:
    """Every update of `delta` as LoRA factors of its module (see the module docstring);
    a refusal names `source` (the delta's file) when given."""
    try:
        return _lora_factors(h, delta, rank)
    except EditriskError as err:
        if source is None:
            raise
        raise EditriskError(f"{source}: {err}") from None


def _lora_factors(h: ModelHandle, delta: Delta, rank: int | None) -> list[LoraFactor]:
    from transformers.pytorch_utils import Conv1D

    if rank is not None and rank < 1:
        raise EditriskError(f"--rank must be >= 1, got {rank}")
    out = []
    for name, u in delta.updates.items():
        module_name, _, leaf = name.rpartition(".")
        module = h.model.get_submodule(module_name) if module_name else None
        conv1d = isinstance(module, Conv1D)
        if leaf != "weight" or not (conv1d or isinstance(module, torch.nn.Linear)):
            raise EditriskError(
                f"a LoRA adapter carries updates of Linear or Conv1D weights only; '{name}' "
                f"is the {leaf} of a {type(module).__name__}"
            )
        if isinstance(u, LowRank) and (rank is None or u.rank <= rank):
            left, right, exact, err = u.left.float(), u.right.float(), u.rank, 0.0
        else:
            left, right, exact, err = _svd_factors(u.dense() if isinstance(u, LowRank) else u,
                                                   rank, name)  # fmt: skip
        # the update is left @ right.T in the parameter's own layout
        b, a = (right, left.T) if conv1d else (left, right.T)
        out.append(LoraFactor(module_name, a.contiguous(), b.contiguous(), conv1d, exact, err))
    if len({f.conv1d for f in out}) > 1:
        raise EditriskError("the delta updates both Conv1D and Linear weights; a LoRA adapter "
                            "takes one layout (fan_in_fan_out) for all of them")  # fmt: skip
    return out


@dataclass(frozen=True)
class PeftExport:
    path: Path
    factors: list[LoraFactor]

    @property
    def rank(self) -> int:
        return max(f.rank for f in self.factors)

    @property
    def truncated(self) -> dict[str, float]:
        """Relative Frobenius error of each truncated update (empty when exact)."""
        return {f.module: f.error for f in self.factors if f.rank < f.exact_rank}


def export_peft(
    h: ModelHandle,
    delta: Delta,
    out: str | Path,
    rank: int | None = None,
    base_model: str | None = None,
    requests: Sequence[EditRequest] | None = None,
    source: str | None = None,
) -> PeftExport:
    """Write `delta` as a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
    for the base model of `h`, with the edit record and a model card. Every module gets the
    largest rank r (smaller factors are padded with zeros, which adds nothing) and
    lora_alpha = r, so the scaling is 1 and the adapter adds exactly the factors' product."""
    try:
        from peft import LoraConfig
    except ImportError as err:
        raise EditriskError("--peft needs peft: pip install 'editrisk[peft]'") from err
    _refuse_codebooks(delta, "a LoRA adapter")
    if not len(delta):
        raise EditriskError("the delta holds no update")
    factors = lora_factors(h, delta, rank, source)
    r = max(f.rank for f in factors)
    tensors = {}
    for f in factors:
        pad = r - f.rank
        a = torch.cat([f.A, f.A.new_zeros(pad, f.A.shape[1])]) if pad else f.A
        b = torch.cat([f.B, f.B.new_zeros(f.B.shape[0], pad)], 1) if pad else f.B
        tensors[f"base_model.model.{f.module}.lora_A.weight"] = a.cpu().contiguous()
        tensors[f"base_model.model.{f.module}.lora_B.weight"] = b.cpu().contiguous()
    base = base_model or h.name
    config = LoraConfig(
        r=r,
        lora_alpha=r,
        lora_dropout=0.0,
        bias="none",
        target_modules=sorted(f.module for f in factors),
        fan_in_fan_out=factors[0].conv1d,
        task_type="CAUSAL_LM",
        base_model_name_or_path=base,
    )
    result = PeftExport(Path(out), factors)
    with new_folder(out) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        lora = {"r": r, "lora_alpha": r, "modules": sorted(f.module for f in factors),
                "fan_in_fan_out": factors[0].conv1d, "truncated": result.truncated,
                "rank_requested": rank}  # fmt: skip
        write_record(tmp, edit_record(h, delta, "peft-lora", base, requests, lora=lora))
    return result
