"""Drive any registered editor through a protocol, evaluate on the schedule, record rows, and
checkpoint so that a killed run, started again, ends with exactly the rows of an uninterrupted
one.

Exactness: the model always holds W0 + cumulative (the float32 sum of the step deltas),
recomputed from the kept originals W0 after every step, so a resumed run (W0 from a fresh
load, cumulative from the checkpoint) holds bitwise the same weights; every step reseeds the
RNGs from (seed, method, step); each row has a `key` and rows already on disk are not written
again when a step is redone after a kill.
"""

from __future__ import annotations

import random
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from editrisk.editors import get_editor
from editrisk.editors.base import Editor
from editrisk.models import ModelHandle
from editrisk.protocols.checkpoint import latest_checkpoint, save_checkpoint
from editrisk.protocols.diagnostics import step_diagnostics
from editrisk.protocols.plan import Protocol, Schedule, Step
from editrisk.requests import EditRequest
from editrisk.runs import RunDir
from editrisk.settings import fork_available, threads_per_worker


class Accumulator:
    """Keeps the touched weights' originals and the cumulative delta; the model holds their
    sum. Memory: two copies of each edited matrix, whatever the number of edits."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = dict(model.named_parameters())
        self.base: dict[str, torch.Tensor] = {}
        self.cum: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, update: dict[str, torch.Tensor]) -> None:
        for name, u in update.items():
            p = self.params[name]
            if name not in self.base:
                self.base[name] = p.detach().clone()
                self.cum[name] = torch.zeros(p.shape, dtype=torch.float32, device=p.device)
            self.cum[name] += u.to(device=p.device, dtype=torch.float32)
            p.copy_((self.base[name].float() + self.cum[name]).to(p.dtype))

    @torch.no_grad()
    def reset(self) -> None:
        """Back to the original weights."""
        for name, w in self.base.items():
            self.params[name].copy_(w)
        self.base, self.cum = {}, {}


def step_seed(seed: int, label: str, step: int) -> int:
    """The seed of one step (so a resumed run draws the same numbers)."""
    return zlib.crc32(f"{seed}:{label}:{step}".encode())


def _seed_all(s: int) -> None:
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.2f} edits/s" if task.speed else "-- edits/s")


@contextmanager
def _progress(enabled: bool, console: Console | None) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=console) as p:
        yield p


def _key(*parts: Any) -> str:
    return "|".join(str(p) for p in parts)


def _general(
    h: ModelHandle, heldout: Sequence[EditRequest], ev: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """General ability: held-out facts and perplexity, and the shifted-prompt table."""
    from editrisk.evaluation.general import default_text_sample, heldout_accuracy, perplexity
    from editrisk.evaluation.shifts import shift_table

    general: dict[str, Any] = {}
    if heldout:
        general.update(heldout_accuracy(h, heldout, ev["batch_size"]))
    if ev["perplexity_sentences"]:
        texts = default_text_sample(ev["perplexity_sentences"])
        general.update(perplexity(h, texts, batch_size=ev["batch_size"]))
    table = []
    if ev["shifts"] and heldout:
        table = shift_table(
            h, heldout, ev["shifts"], ev["shift_severities"], batch_size=ev["batch_size"]
        )
    return general, table


def _evaluate(
    h: ModelHandle,
    label: str,
    reqs: Sequence[EditRequest],
    heldout: Sequence[EditRequest],
    ev: dict[str, Any],
    base: dict[str, Any],
    memo: dict[Any, Any],
) -> list[dict[str, Any]]:
    """Rows of one scheduled evaluation (`base` holds its protocol/schedule/step fields).

    `memo` holds measurements already taken of the model in its current state: schedules due
    at the same step on the same requests (e.g. `final` and `retention@k` after the last
    step) are measured once and recorded under each label."""
    from editrisk.evaluation.metrics import edit_metrics, summarize

    rows: list[dict[str, Any]] = []
    k0 = _key(base["method"], base["step"], label)
    if label.startswith("general@"):
        if "general" not in memo:
            memo["general"] = _general(h, heldout, ev)
        general, table = memo["general"]
        rows.append({**base, "kind": "general", **general, "key": _key(k0, "general")})
        rows += [
            {**base, "kind": "shift", **r, "key": _key(k0, r["shift"], r["severity"])}
            for r in table
        ]
        return rows
    ids = tuple(r.id for r in reqs)
    if ids not in memo:
        memo[ids] = edit_metrics(h, reqs, ev["batch_size"])
    per_request = memo[ids]
    summary = dict(summarize(per_request))
    rows.append({**base, "kind": "summary", "n": len(reqs), **summary, "key": _key(k0, "summary")})
    if ev["request_rows"]:
        for r, m in zip(reqs, per_request):
            rows.append({**base, "kind": "request", **m, "key": _key(k0, "request", r.id)})
    return rows


def _fill_caches(h: ModelHandle, editor: Editor) -> None:
    """The editor's statistics of the unedited model (covariances, context prefixes), cached
    on disk, so a resumed run never takes them from an edited model."""
    if hasattr(editor, "covariances"):
        editor.covariances(h, editor.layers_for(h))
        editor.prefixes(h)


def run_method(
    h: ModelHandle,
    method: dict[str, Any],
    edits: Sequence[EditRequest],
    heldout: Sequence[EditRequest],
    cfg: dict[str, Any],
    rd: RunDir,
    progress: Callable[[str, int, int], None] | None = None,
    pristine: dict[Any, Any] | None = None,
) -> None:
    """Run one method (`{'name', 'label', 'hparams'}`) of a resolved config, resuming from
    its latest checkpoint in `rd`; `progress(label, edits done, edits in all)` after each step.
    `pristine` memoises measurements of the unedited model across methods."""
    label = method["label"]
    editor: Editor = get_editor(method["name"], method["hparams"])
    protocol, schedule = Protocol(**cfg["protocol"]), Schedule(**cfg["schedule"])
    steps = protocol.steps(edits)
    n_steps = len(steps)
    folder = rd.path / "checkpoints" / label
    written = {r.get("key") for r in rd.results if r.get("method") == label}
    acc = Accumulator(h.model)
    start = 0
    _fill_caches(h, editor)
    ck = latest_checkpoint(folder)
    if ck is not None:
        start = ck.step
        acc.add(ck.cumulative)
        editor.load_state_dict(ck.editor_state)
    if progress is not None:
        progress(label, sum(len(s.requests) for s in steps[:start]), len(edits))
    common = {
        "run": cfg["name"],
        "method": label,
        "editor": method["name"],
        "protocol": protocol.name,
        "batch_size": protocol.batch_size,
        "n_steps": n_steps,
        "seed": cfg["seed"],
    }
    ev = cfg["evaluation"]

    def record(rows: list[dict[str, Any]]) -> None:
        fresh = [r for r in rows if r["key"] not in written]
        rd.results.append(fresh)
        written.update(r["key"] for r in fresh)

    if start == 0:
        _seed_all(step_seed(cfg["seed"], label, 0))
        base = {**common, "step": 0, "edits": 0}
        rows = []
        memo = pristine if pristine is not None else {}
        for sched in schedule.due(0, n_steps):
            rows += _evaluate(h, sched, [], heldout, ev, {**base, "schedule": sched}, memo)
        record(rows)
    try:
        for step in steps[start:]:
            _run_step(
                h, editor, step, steps, edits, heldout, acc, protocol, schedule, cfg, common, record
            )
            if step.index % cfg["checkpoint_every"] == 0 or step.index == n_steps:
                save_checkpoint(
                    folder,
                    step.index,
                    acc.cum,
                    editor.state_dict(),
                    {
                        "method": label,
                        "seed": cfg["seed"],
                        "rng_seed": step_seed(cfg["seed"], label, step.index),
                    },
                )
            if progress is not None:
                progress(label, sum(len(s.requests) for s in steps[: step.index]), len(edits))
    finally:
        acc.reset()


def _run_step(
    h: ModelHandle,
    editor: Editor,
    step: Step,
    steps: Sequence[Step],
    edits: Sequence[EditRequest],
    heldout: Sequence[EditRequest],
    acc: Accumulator,
    protocol: Protocol,
    schedule: Schedule,
    cfg: dict[str, Any],
    common: dict[str, Any],
    record: Any,
) -> None:
    dg, ev = cfg["diagnostics"], cfg["evaluation"]
    _seed_all(step_seed(cfg["seed"], common["method"], step.index))
    t0 = time.perf_counter()
    delta = editor.edit(h, list(step.requests))
    seconds = time.perf_counter() - t0
    update = {n: delta.dense(n).detach().float() for n in delta.names}
    acc.add(update)
    base = {**common, "step": step.index, "edits": step.edits_after}
    rows: list[dict[str, Any]] = []
    diag = step_diagnostics(h.model, acc.cum, update, dg["spectral_iters"], dg["condition"])
    for d in diag:
        rows.append(
            {
                **base,
                "schedule": "immediate",
                "kind": "diagnostics",
                **d,
                "key": _key(common["method"], step.index, "immediate", "diag", d["param"]),
            }
        )
    rows.append(
        {
            **base,
            "schedule": "immediate",
            "kind": "timing",
            "time.edit_s": seconds,
            "edits_in_step": len(step.requests),
            "key": _key(common["method"], step.index, "immediate", "timing"),
        }
    )
    so_far = edits[: step.edits_after] if protocol.accumulates else step.requests
    memo: dict[Any, Any] = {}
    for sched in schedule.due(step.index, len(steps)):
        reqs = step.requests if sched == "immediate" else so_far
        rows += _evaluate(h, sched, reqs, heldout, ev, {**base, "schedule": sched}, memo)
    record(rows)
    if not protocol.accumulates:
        acc.reset()
        editor.reset()


def run_config(
    cfg: dict[str, Any],
    run_dir: str | Path,
    *,
    show_progress: bool = False,
    console: Console | None = None,
    workers: int = 1,
) -> RunDir:
    """Run (or resume) every method of a resolved config into `run_dir`.

    `workers` > 1 runs that many methods at once in forked processes, each with an equal
    share of the cores as torch threads (small matrices use two single-threaded processes
    better than one with two threads). Rows are the same as in a run with one worker."""
    from editrisk.models import load_model
    from editrisk.protocols.config import build_requests

    h = load_model(cfg["model"], device=cfg["device"], dtype=cfg["dtype"])
    rd = RunDir(run_dir)
    rd.start(cfg, {"model": cfg["model"], "fingerprint": h.fingerprint(), "n_params": h.n_params})
    edits, heldout = build_requests(cfg, h)
    pristine: dict[Any, Any] = {}
    with _progress(show_progress, console) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if bar is None:
                return
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)

        methods = cfg["methods"]
        if workers > 1 and len(methods) > 1 and h.device.type == "cpu" and fork_available():
            _run_parallel(h, methods, edits, heldout, cfg, rd, workers, progress, pristine)
        else:
            for method in methods:
                run_method(h, method, edits, heldout, cfg, rd, progress, pristine)
    rd.export()
    return rd


# What a forked worker of `_run_parallel` inherits from its parent (set just before the fork).
_shared: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):  # die with the parent: a killed run leaves no writer
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_run(index: int) -> None:
    s = _shared

    def progress(label: str, done: int, total: int) -> None:
        s["queue"].put((label, done, total))

    run_method(
        s["h"], s["methods"][index], s["edits"], s["heldout"], s["cfg"], s["rd"], progress,
        s["pristine"],
    )  # fmt: skip


def _run_parallel(
    h: ModelHandle,
    methods: Sequence[dict[str, Any]],
    edits: Sequence[EditRequest],
    heldout: Sequence[EditRequest],
    cfg: dict[str, Any],
    rd: RunDir,
    workers: int,
    progress: Callable[[str, int, int], None],
    pristine: dict[Any, Any],
) -> None:
    """Methods in forked processes; the model, requests and pristine-model measurements are
    made once here and inherited. Every statistic an editor caches on disk is filled here
    first, so workers only read the cache."""
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    for m in methods:
        _fill_caches(h, get_editor(m["name"], m["hparams"]))
    if Schedule(**cfg["schedule"]).general_every:  # the unedited model's, measured once
        pristine["general"] = _general(h, heldout, cfg["evaluation"])
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    _shared.update(
        h=h, methods=list(methods), edits=edits, heldout=heldout, cfg=cfg, rd=rd,
        pristine=pristine, queue=q,
    )  # fmt: skip
    n = min(workers, len(methods))
    threads = threads_per_worker(n)
    try:
        with ProcessPoolExecutor(n, ctx, initializer=_worker_init, initargs=(threads,)) as pool:
            pending = {pool.submit(_worker_run, i) for i in range(len(methods))}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        progress(*q.get_nowait())
                    except queue_mod.Empty:
                        break
                for fut in finished:
                    fut.result()  # a worker's error stops the run here
    finally:
        _shared.clear()
