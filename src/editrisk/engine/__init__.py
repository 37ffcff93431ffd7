"""The one engine for every study of either family.

config (YAML) -> plan (protocol x schedule x grid of editor x layer x alpha x seed x edit set)
-> executor (local processes or Ray) -> jobs on a family adapter -> rows in one store.
Protocol runs, 1-LI grids, the vision study and the demo are configs of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editrisk.engine.config import StudyConfig, load_config, resolve
from editrisk.engine.plan import Job, Protocol, Schedule, Step, plan_jobs
from editrisk.engine.store import IDENTITY, Run, RunDir, load_run
from editrisk.errors import EditriskError, InputError

__all__ = [
    "IDENTITY", "Job", "Protocol", "Run", "RunDir", "Schedule", "Step", "StudyConfig",
    "load_config", "load_run", "plan_jobs", "resolve", "run_study", "select_methods",
]  # fmt: skip


def select_methods(cfg: StudyConfig, labels: Sequence[str], source: str = "config") -> StudyConfig:
    """`cfg` with only the methods labelled `labels`. A method's rows do not depend on the
    other methods (every step is seeded by seed, job and step), so a subset gives the rows the
    whole config gives for it."""
    want = [x.strip() for x in labels if x.strip()]
    known = cfg.labels()
    unknown = [x for x in want if x not in known]
    if unknown or not want:
        raise InputError(f"no method labelled {unknown or want}; labels: {known}", file=source)
    return cfg.model_copy(update={"methods": [m for m in cfg.methods if m.label in want]})


def run_study(
    cfg: StudyConfig,
    run_dir: str | Path,
    *,
    workers: int | None = None,
    on_progress: Any = None,
) -> RunDir:
    """Run (or resume: same config, same directory) every job of `cfg` into `run_dir`.

    The model and edit sets are built and every job's layer checked before the directory is
    created; one process writes a run directory at a time. `on_progress(job, done, total)`,
    if given, hears every job's progress (`editrisk.progress.report_progress` makes one)."""
    from editrisk.editors import get_editor
    from editrisk.engine.executors import make_executor
    from editrisk.engine.runner import Contexts

    contexts = Contexts(cfg)
    fam = contexts.get(cfg.grid.seed[0])
    jobs = plan_jobs(cfg)
    for layer in cfg.grid.layer:
        try:
            fam.check_layer(layer)
        except EditriskError as err:
            raise EditriskError(f"grid.layer: {err}") from None
    for i, m in enumerate(cfg.methods):
        try:
            fam.check_inputs(get_editor(m.name, m.hparams))
        except EditriskError as err:
            raise EditriskError(f"methods[{i}] ({m.label}): {err}") from None
    executor = make_executor(cfg.executor, workers)
    rd = RunDir(run_dir)
    with rd.writer():
        stored = {k: v for k, v in cfg.to_dict().items() if k != "executor"}  # resumable anywhere
        rd.start(stored, fam.model_info())
        executor.run(cfg, jobs, rd, contexts, on_progress)
        rd.export()
    return rd


def interpolate_run(
    run_dir: str | Path, alphas: Sequence[float], out: str | Path | None = None
) -> RunDir:
    """1-LI of every finished job of a run: its final cumulative edit along every path (the
    whole edit and each layer alone) at every alpha, evaluated on the run's own schedule for
    the last step. Rows go to `out` (default RUN_DIR/interpolate), a run of its own."""
    from editrisk.engine.checkpoint import latest_checkpoint
    from editrisk.engine.runner import Contexts, JobRunner

    src = RunDir(run_dir)
    raw = src.config()
    if "methods" not in raw:
        raise InputError("not a study run directory (its config names no methods)",
                         file=str(src.config_path))  # fmt: skip
    raw["grid"] = {**raw.get("grid", {}), "alpha": list(alphas), "paths": "each"}
    cfg = resolve(raw, str(src.config_path))
    if cfg.protocol.name == "single":
        raise InputError("protocol 'single' keeps no edit at the end; nothing to interpolate",
                         file=str(src.config_path))  # fmt: skip
    contexts = Contexts(cfg)
    rd = RunDir(out or src.path / "interpolate")
    finished = []
    for job in plan_jobs(cfg):
        runner = JobRunner(contexts.get(job.seed), job, cfg, src)
        ck = latest_checkpoint(runner.folder)
        if ck is not None and ck.step == len(runner.steps):
            finished.append((job, ck))
    if not finished:
        raise InputError("no finished job to interpolate (no final checkpoint)", file=str(src.path))
    with rd.writer():
        rd.start({**cfg.to_dict(), "source": str(src.path.resolve())}, src.model_info())
        for job, ck in finished:
            runner = JobRunner(contexts.get(job.seed), job, cfg, rd)
            step = runner.steps[-1]
            base = {**runner.common, "step": step.index, "edits": step.edits_after}
            if 0.0 in cfg.grid.alpha:
                runner.record(runner.unedited_rows())
            runner.state.show(ck.cumulative)
            try:
                runner.record(runner.evaluations(step, base, ck.cumulative))
            finally:
                runner.state.reset()
        rd.export()
    return rd
