"""`editrisk edit` and `editrisk export`: apply an editor to a model from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from editrisk.cli._common import (
    DeviceOpt,
    DtypeOpt,
    cli_errors,
    console,
    load_delta,
    next_steps,
    q,
    table,
)
from editrisk.errors import EditriskError, InputError
from editrisk.files import read_text


def _requests(
    request: str | None,
    subject: str | None,
    prompt: str | None,
    target_new: str | None,
    target_true: str | None,
) -> list[Any]:
    from editrisk.requests import EditRequest, validate_requests

    if request is None:
        if not (subject and prompt and target_new):
            raise EditriskError(
                "give --request FILE_OR_JSON, or --subject, --prompt and --target-new"
            )
        return [EditRequest(subject, prompt, target_new, target_true)]
    if _is_file(request):
        from editrisk.data.formats import load_requests

        return load_requests(request)
    try:
        data = json.loads(request)
    except json.JSONDecodeError as err:
        raise InputError(f"neither a file nor JSON ({err.msg})", file=request) from err
    items = data if isinstance(data, list) else [data]
    return validate_requests(
        [EditRequest.from_dict(d, file="<--request>", record=i) for i, d in enumerate(items)]
    )


def _is_file(text: str) -> bool:
    """Whether `text` names a file (False for JSON too long to be a file name)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


def _source(request: str | None) -> str:
    """How errors name the requests: the file, or the option they came in."""
    if request is None:
        return "<--subject/--prompt/--target-new>"
    return request if _is_file(request) else "<--request>"


def _hparams(hparams: str | None, sets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if hparams:
        path = Path(hparams)
        if not path.is_file():
            raise EditriskError(f"hyperparameter file not found: {path}")
        loaded = _yaml(read_text(path), str(path))
        if not isinstance(loaded, dict):
            raise InputError("expected a mapping of hyperparameters", file=str(path))
        out.update(loaded)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise EditriskError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = _yaml(value, f"--set {key.strip()}")
    return out


def _yaml(text: str, where: str) -> Any:
    """Parse YAML (a hyperparameter file or a `--set` value); a syntax error names `where`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise InputError(f"not valid YAML ({problem}{at})", file=where) from err


@cli_errors
def edit(
    model: str,
    editor: str = typer.Option("rome", help="registered editor name"),
    request: str = typer.Option(None, help="requests file (any supported format) or JSON"),
    subject: str = typer.Option(None, help="inline request: the subject"),
    prompt: str = typer.Option(None, help="inline request: template with {} for subject"),
    target_new: str = typer.Option(None, help="inline request: the new target"),
    target_true: str = typer.Option(None, help="inline request: the current answer"),
    hparams: str = typer.Option(None, help="YAML/JSON file of editor hyperparameters"),
    set_: list[str] = typer.Option([], "--set", help="hyperparameter key=value (repeat)"),
    save_delta: Path = typer.Option(None, help="write the Delta here (safetensors)"),
    max_new_tokens: int = typer.Option(8, min=1),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Edit MODEL and print completions and probabilities before and after."""
    from editrisk.editors import get_editor, list_editors
    from editrisk.evaluation.scoring import score_targets
    from editrisk.models import load_model
    from editrisk.tokens import check_fits

    reqs = _requests(request, subject, prompt, target_new, target_true)
    ed = get_editor(editor, _hparams(hparams, set_))  # refused before the model loads
    if save_delta is not None and save_delta.is_dir():
        raise EditriskError(f"--save-delta {save_delta} is a folder; give a file name")
    if ed.kind != "language":
        raise EditriskError(
            f"editor '{editor}' edits {ed.kind} models; `editrisk edit` takes a language "
            f"editor: {', '.join(list_editors('language'))}"
        )
    h = load_model(model, device=device, dtype=dtype)
    reserve = max(ed.tokens_before_prompt(), max_new_tokens)
    check_fits(h.tokenizer, h.context_length, reqs, reserve=reserve, model=h.name,
               file=_source(request))  # fmt: skip
    pairs = [(r.rendered, r.target_new) for r in reqs]
    trues = [(r.rendered, r.target_true) for r in reqs if r.target_true]
    from editrisk.progress import report_progress, track

    with report_progress(console, enabled=len(reqs) > 4) as progress:  # a few: no noise
        before = [h.generate(r.rendered, max_new_tokens)
                  for r in track(reqs, "generating before", progress)]  # fmt: skip
        p_before = score_targets(h, pairs + trues)
        delta = ed.edit(h, reqs)
        with delta.applied(h.model):
            after = [h.generate(r.rendered, max_new_tokens)
                     for r in track(reqs, "generating after", progress)]  # fmt: skip
            p_after = score_targets(h, pairs + trues)
    tab = table(
        "prompt", "before", "after", "P(new)", "P(true)",
        wrap=("prompt", "before", "after"),
        title=f"{editor} on {h.name}",
        caption="probabilities before -> after",
    )  # fmt: skip
    true_at = {id(r): i for i, r in enumerate(r for r in reqs if r.target_true)}
    for i, r in enumerate(reqs):
        pt = "-"
        if id(r) in true_at:
            j = len(reqs) + true_at[id(r)]
            pt = f"{p_before[j].prob:.3f} -> {p_after[j].prob:.3f}"
        tab.add_row(
            r.rendered,
            before[i].strip(),
            after[i].strip(),
            f"{p_before[i].prob:.3f} -> {p_after[i].prob:.3f}",
            pt,
        )
    console.print(tab)
    _warn_missed(editor, reqs, delta, p_before, p_after)
    if save_delta is not None:
        delta.save(save_delta)
        console.print(f"delta saved to {save_delta}")
        reqs_arg = q(request) if request is not None and _is_file(request) else "REQUESTS.jsonl"
        next_steps(
            save_delta,
            f"editrisk eval {q(model)} --requests {reqs_arg} --delta {q(save_delta)}",
            f"editrisk export {q(model)} --delta {q(save_delta)} --out edited-model",
        )
    else:
        next_steps(
            None,
            "add --save-delta edit.safetensors to keep the edit (then `editrisk eval --delta` "
            "measures it, `editrisk export` writes the edited model)",
        )


def _warn_missed(editor: str, reqs: list[Any], delta: Any, before: Any, after: Any) -> None:
    """Record in `delta` whether each request's edit took (from the scores the table
    shows) and warn about those that missed (editrisk.api.MISS_RULE)."""
    from editrisk.api import edit_outcomes, record_outcomes

    missed = record_outcomes(delta, edit_outcomes(reqs, before, after))
    if not missed:
        return
    console.print(
        f"warning: the edit did not take for {len(missed)} of {len(reqs)} request(s) "
        "(P(new) must rise and end above P(true); without a true target, target_new must "
        "become the greedy continuation):",
        style="yellow", markup=False, highlight=False,
    )  # fmt: skip
    for o in missed:
        console.print(f"  {o.describe()}", style="yellow", markup=False, highlight=False)
    console.print(
        f"  {editor}: try more steps, a larger learning rate or another layer "
        "(--set key=value)",
        style="yellow", markup=False, highlight=False,
    )  # fmt: skip


@cli_errors
def export(
    model: str,
    delta: Path = typer.Option(..., help="Delta file (safetensors) to apply"),
    out: Path = typer.Option(..., help="new folder for the edited model"),
    peft: bool = typer.Option(
        False, "--peft", help="write the edit alone as a PEFT LoRA adapter for MODEL"
    ),
    rank: int = typer.Option(
        None, min=1, help="--peft: truncate updates above this rank (the error is reported)"
    ),
    request: str = typer.Option(
        None, help="the edit's requests (file or JSON) for the record and model card"
    ),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Write MODEL with DELTA applied as a standard Hugging Face folder, or with --peft the
    edit as a LoRA adapter; both carry the edit record and a model card (README.md)."""
    from editrisk.export import export_hf, export_peft
    from editrisk.models import load_model

    if rank is not None and not peft:
        raise EditriskError("--rank truncates a --peft adapter; add --peft")
    reqs = _requests(request, None, None, None, None) if request else None
    d = load_delta(delta)
    h = load_model(model, device=device, dtype=dtype)
    d.check_applies(h.model, h.fingerprint(), str(delta))
    if not peft:
        folder = export_hf(h, d, out, model, reqs)
        console.print(f"edited model written to {folder}")
        next_steps(folder, f"editrisk generate {q(folder)} 'PROMPT'")
        return
    res = export_peft(h, d, out, rank, model, reqs, source=str(delta))
    for module, err in res.truncated.items():
        console.print(f"warning: {module} truncated to rank {rank}: relative error {err:.3g}",
                      style="yellow", markup=False, highlight=False)  # fmt: skip
    console.print(f"LoRA adapter (rank {res.rank}) written to {res.path}; load it with "
                  f"peft.PeftModel.from_pretrained(base_model, '{res.path}')",
                  markup=False, highlight=False)  # fmt: skip


@cli_errors
def interpolate(
    model: str = typer.Argument(..., help="a model, or a run directory"),
    delta: Path = typer.Option(None, help="Delta file (safetensors) to interpolate"),
    request: str = typer.Option(None, help="the edit's requests (file or JSON)"),
    alphas: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="alpha grid"),
    heldout: int = typer.Option(40, min=0, help="known WorldFacts held out for general ability"),
    threshold: float = typer.Option(
        0.9, min=0, max=1, help="edit-success threshold for alpha selection"
    ),
    out: Path = typer.Option(None, help="run directory for the rows"),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
) -> None:
    """1-LI: each edited layer alone (and all together) scaled by every alpha; edit
    success and held-out knowledge per point, monotonicity check, chosen alphas.

    MODEL with --delta and --request interpolates one saved edit; a run directory instead
    interpolates the final edit of each of its jobs (rows in RUN_DIR/interpolate)."""
    try:
        grid = [float(a) for a in alphas.split(",")]
    except ValueError as err:
        raise EditriskError(f"--alphas must be comma-separated numbers: {err}") from err
    if not all(0.0 <= a <= 1.0 for a in grid):
        raise EditriskError(f"--alphas must lie in [0, 1], got {grid}")
    if _is_file(str(Path(model) / "config.yaml")):
        from editrisk.engine import interpolate_run
        from editrisk.report import write_report

        run = interpolate_run(model, grid, out)
        console.print(f"rows written to {run.path}; report: {write_report(run.path)}")
        return
    if delta is None or request is None:
        raise EditriskError("interpolating a saved edit needs --delta and --request")
    from editrisk.data.worldfacts import build_worldfacts, round_robin
    from editrisk.engine.store import RunDir
    from editrisk.evaluation.general import heldout_accuracy
    from editrisk.evaluation.metrics import edit_metrics, summarize
    from editrisk.interpolation import (
        monotonicity_violations,
        paths,
        select_knee,
        select_threshold,
        trade_off,
    )
    from editrisk.models import load_model
    from editrisk.tokens import check_fits

    reqs = _requests(request, None, None, None, None)
    d = load_delta(delta)
    h = load_model(model, device=device, dtype=dtype)
    d.check_applies(h.model, h.fingerprint(), str(delta))
    check_fits(h.tokenizer, h.context_length, reqs, model=h.name, file=_source(request))
    edited_ids = {r.id for r in reqs}
    held = [
        r for r in round_robin(build_worldfacts(h), heldout + len(reqs)) if r.id not in edited_ids
    ][:heldout]

    def evaluate(_: Any) -> dict[str, float | None]:
        s = summarize(edit_metrics(h, reqs))
        return {
            "edit_success": s["efficacy.prob_compare"],
            "generalization": s["generalization.prob_compare"],
            "specificity": s["specificity.prob_compare"],
            "heldout": heldout_accuracy(h, held)["heldout.prob_compare"] if held else None,
        }

    rows = trade_off(h.model, d, evaluate, grid)
    table = Table(
        "path",
        "alpha",
        "edit_success",
        "generalization",
        "heldout",
        title=f"1-LI of {delta.name}",
    )
    for r in rows:
        table.add_row(
            r["path"],
            f"{r['alpha']:.2f}",
            *(
                "-" if r[k] is None else f"{r[k]:.3f}"
                for k in ("edit_success", "generalization", "heldout")
            ),
        )
    console.print(table)
    robust = "heldout" if held else "specificity"  # tiny or unknown models: neighbours
    choices = []
    measured = all(r[robust] is not None for r in rows)
    if not measured:
        console.print(f"no {robust} measurements: no alpha selection")
    for p in paths(d) if measured else []:
        for c in (
            select_threshold(rows, p, "edit_success", robust, threshold),
            select_knee(rows, p, "edit_success", robust),
        ):
            choices.append(c.to_dict())
            console.print(f"{c.path}: alpha {c.alpha} ({c.policy}: {c.reason})")
    bad = monotonicity_violations(rows, "edit_success")
    for b in bad:
        console.print(
            f"  {b['path']}: edit_success falls by {-b['change']:.3f} from alpha "
            f"{b['from_alpha']} to {b['to_alpha']}"
        )
    console.print(f"monotonicity violations (edit_success): {len(bad)}")
    if out is not None:
        run = RunDir(out)
        run.start({"model": model, "delta": str(delta), "alphas": grid, "heldout": heldout})
        run.results.append([{"kind": "1-LI", **r} for r in rows])
        run.results.append([{"kind": "choice", **c} for c in choices])
        run.results.append([{"kind": "monotonicity_violation", **b} for b in bad])
        run.export()
        console.print(f"rows written to {run.path}")
