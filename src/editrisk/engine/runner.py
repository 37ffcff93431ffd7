"""Drive one job (an editor at a layer, on an edit set, with a seed) through the protocol,
evaluate on the schedule at every alpha of the grid, record rows and checkpoint.

Weights change only through Deltas: the model holds W0 + the cumulative Delta, applied with a
backup of W0, so every state is W0 plus a float32 sum, bitwise the same after a resume (W0
from a fresh load, the cumulative Delta from the checkpoint). A step whose edit is not finite
is refused by the Delta guard: it is recorded as failed and the model and editor stay as they
were before the step. Every step reseeds the RNGs from (seed, method, step); each row has a `key`,
and rows already stored are not written again when a step is redone after a kill.

Long studies: retention schedules may measure a fixed seeded sample of the edits so far
(`schedule.retention_sample`; the summary row records the sample and 95% intervals), and a job
whose perplexity passes `schedule.collapse_perplexity` writes a `collapsed` row, checkpoints
that step as collapsed and stops; a resumed run finds the mark and does nothing more for it.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from editrisk.delta import Delta
from editrisk.diagnostics import step_diagnostics
from editrisk.editors import get_editor
from editrisk.editors.base import Editor
from editrisk.engine.checkpoint import latest_checkpoint, save_checkpoint
from editrisk.engine.config import StudyConfig
from editrisk.engine.plan import Job, Protocol, Schedule, Step, retention_sample
from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.families.base import Family, Row
from editrisk.files import under
from editrisk.interpolation import path_label, points

Progress = Callable[[str, int, int], None]


def step_seed(seed: int, label: str, step: int) -> int:
    """The seed of one step: a resumed run draws the same numbers, and the jobs of one method
    (its layers, edit sets) share their draws."""
    return zlib.crc32(f"{seed}:{label}:{step}".encode())


def _seed_all(s: int) -> None:
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def _key(*parts: Any) -> str:
    return "|".join(str(p) for p in parts)


class ModelState:
    """The model as W0 + one Delta at a time; `show` swaps which Delta (bitwise exact)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.current = Delta()

    def show(self, delta: Delta) -> None:
        """Make the model W0 + `delta`; a non-finite delta is refused and W0 + the previous
        one kept."""
        if delta is self.current:
            return
        self.current.revert(self.module)
        try:
            delta.apply(self.module)
        except EditriskError:
            self.current.apply(self.module)
            raise
        self.current = delta

    def reset(self) -> None:
        self.show(Delta())


class JobRunner:
    """One job of a study on one family context, writing into a run directory."""

    def __init__(self, fam: Family, job: Job, cfg: StudyConfig, rd: RunDir) -> None:
        self.fam, self.job, self.cfg, self.rd = fam, job, cfg, rd
        params = {**dict(job.hparams), **fam.check_layer(job.layer)}
        self.editor: Editor = get_editor(job.editor, params)
        self.protocol = Protocol(**cfg.protocol.model_dump())
        self.schedule = Schedule(**cfg.schedule.model_dump())
        self.requests = fam.edit_set(job.edit_set)
        self.steps = self.protocol.steps(self.requests)
        self.folder = under(rd.path, "checkpoints", job.folder)  # deletes old steps there
        self.state = ModelState(fam.module)
        info = fam.model_info()
        self.common = {
            "run": cfg.name,
            "family": cfg.family,
            "model": info["model"],
            "fingerprint": info["fingerprint"],
            **job.identity(),
            "protocol": self.protocol.name,
            "batch_size": self.protocol.batch_size,
            "n_steps": len(self.steps),
        }
        self.written = {r.get("key") for r in rd.results if r.get("method") == job.method}

    def record(self, rows: list[Row]) -> None:
        fresh = [r for r in rows if r["key"] not in self.written]
        self.rd.results.append(fresh)
        self.written.update(r["key"] for r in fresh)

    def run(self, progress: Progress | None = None) -> None:
        """Run the job, resuming from its latest checkpoint."""
        fam, n = self.fam, len(self.requests)
        fam.warm(self.editor)
        start, cum = 0, Delta()
        ck = latest_checkpoint(self.folder)
        if ck is not None and ck.meta.get("collapsed"):
            if progress is not None:  # stopped for good at that step: nothing left to do
                progress(self.job.id, n, n)
            return
        if ck is not None:
            start, cum = ck.step, ck.cumulative
            self.editor.load_state_dict(ck.editor_state)
            self.state.show(cum)
        if progress is not None:
            progress(self.job.id, sum(len(s.requests) for s in self.steps[:start]), n)
        try:
            if start == 0:
                self.record(self.unedited_rows())
            for step in self.steps[start:]:
                cum, collapsed = self._step(step, cum)
                if (
                    collapsed
                    or step.index % self.cfg.checkpoint_every == 0
                    or step.index == len(self.steps)
                ):
                    meta = {"job": self.job.id, "seed": self.job.seed}
                    meta |= {"collapsed": True} if collapsed else {}
                    save_checkpoint(self.folder, step.index, cum, self.editor.state_dict(), meta)
                if collapsed:
                    if progress is not None:
                        progress(self.job.id, n, n)
                    break
                if progress is not None:
                    progress(self.job.id, sum(len(s.requests) for s in self.steps[: step.index]), n)
        finally:
            self.state.reset()

    def unedited_rows(self) -> list[Row]:
        """Step 0, on the unedited model: every request of the edit set, general ability
        when the schedule measures it, and the family's reference rows (a testbed)."""
        _seed_all(step_seed(self.job.seed, self.job.method, 0))
        base = {**self.common, "step": 0, "edits": 0, "schedule": "unedited"}
        base |= {"path": "unedited", "alpha": 0.0}
        rows = []
        for what, reqs in self.unedited_measurements():
            rows += self._rows(base, self.fam.evaluate_unedited(what, reqs), what)
        rows += self._rows(base, self.fam.reference_rows(), "reference")
        return rows

    def unedited_measurements(self) -> list[tuple[str, list[Any]]]:
        """What step 0 measures: the edit set (with sampled retention and no `final`, only
        the edits some retention sample will hold: their unedited baseline, not 10,000
        requests), and general ability when scheduled."""
        whats: list[tuple[str, list[Any]]] = [("edits", self.sampled_edits())]
        if self.schedule.measures_general:
            whats.append(("general", []))
        return whats

    def sampled_edits(self) -> list[Any]:
        """Every request, or with `retention_sample` and no `final` the union (in edit order)
        of the samples the retention schedules will measure."""
        s = self.schedule
        if not s.retention_sample or s.final or not self.protocol.accumulates:
            return list(self.requests)
        n, picked = len(self.requests), set()
        for step in self.steps:
            due = s.due(step.index, len(self.steps), step.edits_before, step.edits_after)
            if any(d.startswith("retention@") for d in due):
                picked |= set(
                    retention_sample(n, step.edits_after, s.retention_sample, self.job.seed)
                )
        return [self.requests[i] for i in sorted(picked)]

    def _rows(self, base: Row, rows: list[Row], what: str) -> list[Row]:
        k0 = _key(self.job.id, base["step"], base["schedule"], base["path"], base["alpha"])
        out = []
        for r in rows:
            sub = [r.get(c) for c in ("request", "shift", "set", "corruption", "severity",
                                      "testbed_model") if c in r]  # fmt: skip
            out.append({**base, **r, "key": _key(k0, what, r["kind"], *sub)})
        return out

    def _step(self, step: Step, cum: Delta) -> tuple[Delta, bool]:
        """One editor call, its diagnostics and the evaluations due; returns the new
        cumulative Delta (the old one when the step failed) and whether the job collapsed."""
        job, dg = self.job, self.cfg.diagnostics
        _seed_all(step_seed(job.seed, job.method, step.index))
        base = {**self.common, "step": step.index, "edits": step.edits_after}
        saved = {k: v.clone() for k, v in self.editor.state_dict().items()}
        t0 = time.perf_counter()
        delta = self.fam.edit(self.editor, step.requests)
        seconds = time.perf_counter() - t0
        dense = {n: delta.dense(n).detach().float() for n in delta.names}
        delta = Delta(dense, delta.metadata, delta.codebooks)
        new = accumulate(cum, delta) if self.protocol.accumulates else delta
        rows: list[Row] = []
        meta = {**base, "schedule": "immediate", "path": None, "alpha": None}
        try:
            self.state.show(new)
        except EditriskError as err:  # a diverged edit: refused, recorded, the model kept
            self.editor.load_state_dict(saved)
            new = cum
            rows.append({**meta, "kind": "failed", "reason": str(err),
                         "key": _key(job.id, step.index, "failed")})  # fmt: skip
        else:
            for d in step_diagnostics(self.fam.module, new, delta, dg.spectral_iters, dg.condition):
                rows.append(
                    {**meta, "kind": "diagnostics", **d,
                     "key": _key(job.id, step.index, "diag", d["param"])}
                )  # fmt: skip
        rows.append({**meta, "kind": "timing", "time.edit_s": seconds,
                     "edits_in_step": len(step.requests),
                     "key": _key(job.id, step.index, "timing")})  # fmt: skip
        rows += self.evaluations(step, base, new)
        collapse = self.collapse_row(rows, base, new)
        rows += [collapse] if collapse else []
        self.record(rows)
        if not self.protocol.accumulates:
            self.state.reset()
            self.editor.reset()
            return Delta(), collapse is not None
        return new, collapse is not None

    def collapse_row(self, rows: list[Row], base: Row, cum: Delta) -> Row | None:
        """The `collapsed` row when a general evaluation of the whole edit (largest alpha)
        measured a perplexity past `schedule.collapse_perplexity` (a non-finite one too)."""
        limit = self.schedule.collapse_perplexity
        if limit is None:
            return None
        whole, alpha = path_label(cum), max(self.cfg.grid.alpha)
        for r in rows:
            if r.get("kind") != "general" or r.get("path") != whole or r.get("alpha") != alpha:
                continue
            ppl = r.get("perplexity")
            if isinstance(ppl, (int, float)) and not (math.isfinite(ppl) and ppl <= limit):
                return {**base, "schedule": r["schedule"], "path": whole, "alpha": alpha,
                        "kind": "collapsed", "perplexity": ppl, "threshold": limit,
                        "key": _key(self.job.id, base["step"], "collapsed")}  # fmt: skip
        return None

    def evaluations(self, step: Step, base: Row, cum: Delta) -> list[Row]:
        """Every schedule due after `step`, at every alpha of the grid along every 1-LI path
        (schedules due together on the same requests are measured once)."""
        due = self.schedule.due(step.index, len(self.steps), step.edits_before, step.edits_after)
        if not due:
            return []
        so_far = self.requests[: step.edits_after] if self.protocol.accumulates else step.requests
        picked = retention_sample(
            len(self.requests), len(so_far), self.schedule.retention_sample, self.job.seed
        )
        sample = [so_far[i] for i in picked]
        rows: list[Row] = []
        each = self.cfg.grid.paths == "each"
        for path, alpha, scaled in points(cum, self.cfg.grid.alpha, each):
            self.state.show(scaled)
            memo: dict[Any, list[Row]] = {}
            for sched in due:
                if sched.startswith("general@"):
                    what, reqs = "general", []
                else:
                    what = "edits"
                    reqs = {"immediate": step.requests, "final": so_far}.get(sched, sample)
                ids = (what, tuple(self.fam.request_id(r) for r in reqs))
                if ids not in memo:
                    memo[ids] = self.fam.evaluate(what, reqs)
                got = memo[ids]
                if sched.startswith("retention@") and self.schedule.retention_sample:
                    got = with_intervals(got, len(reqs), len(so_far))
                b = {**base, "schedule": sched, "path": path, "alpha": alpha}
                rows += self._rows(b, got, what)
        self.state.show(cum)
        return rows


def with_intervals(rows: list[Row], n: int, population: int) -> list[Row]:
    """`rows` of a retention evaluation of `n` sampled edits out of `population`, the summary
    row recording the sample (`sample`, `sample_of`) and, for every metric the request rows
    carry, the half-width of its 95% interval (`<metric>.ci95`: normal approximation with the
    finite-population correction, so 0 when the sample is every edit; absent without request
    rows)."""
    requests = [r for r in rows if r.get("kind") == "request"]
    out = []
    for r in rows:
        if r.get("kind") == "summary":
            r = {**r, "sample": n, "sample_of": population}
            fpc = (population - n) / (population - 1) if population > 1 else 0.0
            for k, v in list(r.items()):
                if k in ("n", "sample", "sample_of") or not _number(v):
                    continue
                vals = [q[k] for q in requests if _number(q.get(k))]
                if len(vals) < 2:
                    continue
                mean = sum(vals) / len(vals)
                var = sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)
                r[f"{k}.ci95"] = 1.96 * math.sqrt(var / len(vals) * max(fpc, 0.0))
        out.append(r)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def accumulate(cum: Delta, step: Delta) -> Delta:
    """The cumulative edit after `step`: dense float32 sums, codebooks merged (`Delta` +),
    the layer labels of both."""
    total = dict(cum.updates)
    for n in step.names:
        total[n] = cum.dense(n) + step.dense(n) if n in total else step.dense(n)
    books = (Delta(codebooks=cum.codebooks) + Delta(codebooks=step.codebooks)).codebooks
    layers = {**(cum.metadata.get("layers") or {}), **(step.metadata.get("layers") or {})}
    return Delta(total, {"kind": "cumulative", "layers": layers}, books)


def run_job(
    fam: Family, job: Job, cfg: StudyConfig, rd: RunDir, progress: Progress | None = None
) -> None:
    """Run (or resume) one job of `cfg` on the family context `fam` into `rd`."""
    JobRunner(fam, job, cfg, rd).run(progress)


class Contexts:
    """The family contexts of a study, one per seed, built on first use (per process)."""

    def __init__(self, cfg: StudyConfig) -> None:
        from editrisk.families import get_family

        self.cfg = cfg
        self.family = get_family(cfg.family)
        self._by_seed: dict[int, Family] = {}

    def get(self, seed: int) -> Family:
        if seed not in self._by_seed:
            torch.manual_seed(seed)
            self._by_seed[seed] = self.family(self.cfg, seed)
        return self._by_seed[seed]

    def prepare(self, jobs: Sequence[Job], rd: RunDir) -> None:
        """Build every context, fill every editor's disk caches and measure the unedited
        models (before workers fork, so they only read the caches and the measurements)."""
        for job in jobs:
            runner = JobRunner(self.get(job.seed), job, self.cfg, rd)
            runner.fam.warm(runner.editor)
            if latest_checkpoint(runner.folder) is None:
                for what, reqs in runner.unedited_measurements():
                    runner.fam.evaluate_unedited(what, reqs)
