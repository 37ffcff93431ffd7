"""Executors run a study's jobs, with one interface for every study.

`LocalExecutor` runs jobs in this process, or in forked worker processes that each get an
equal share of the cores as torch threads (never oversubscribed) and die with their parent.
`RayExecutor` runs one Ray actor per declared CPU/GPU share on a cluster (by address) or on a
local Ray instance. Workers append their rows to the run's store under its file lock, so the
run directory must be on a filesystem every worker sees (a local instance always does).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from editrisk.engine.config import ExecutorSpec, StudyConfig
from editrisk.engine.plan import Job
from editrisk.engine.runner import Contexts, Progress, run_job
from editrisk.engine.store import RunDir
from editrisk.errors import EditriskError
from editrisk.settings import fork_available, threads_per_worker


class Executor(Protocol):
    def run(
        self, cfg: StudyConfig, jobs: Sequence[Job], rd: RunDir, contexts: Contexts,
        progress: Progress | None,
    ) -> None: ...  # fmt: skip


# A forked pool process's own state, set by its initializer from what it inherited.
_local: dict[str, Any] = {}


def _init(contexts: Contexts, cfg: StudyConfig, rd: RunDir, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):  # die with the parent: a killed run leaves no writer
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _local.update(contexts=contexts, cfg=cfg, rd=rd, queue=queue)


def _run(job: Job) -> None:
    s = _local
    run_job(s["contexts"].get(job.seed), job, s["cfg"], s["rd"], lambda *a: s["queue"].put(a))


class LocalExecutor:
    """`workers` jobs at once in forked processes (CPU); in this process when 1."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def run(
        self, cfg: StudyConfig, jobs: Sequence[Job], rd: RunDir, contexts: Contexts,
        progress: Progress | None = None,
    ) -> None:  # fmt: skip
        n = min(self.workers, len(jobs))
        if n <= 1 or cfg.device.startswith("cuda") or not fork_available():
            for job in jobs:
                run_job(contexts.get(job.seed), job, cfg, rd, progress)
            return
        import multiprocessing as mp
        import queue as queue_mod
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        contexts.prepare(jobs, rd)  # models, data, caches, unedited measurements: inherited
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        args = (contexts, cfg, rd, threads_per_worker(n), q)
        with ProcessPoolExecutor(n, ctx, initializer=_init, initargs=args) as pool:
            pending = {pool.submit(_run, job) for job in jobs}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        msg = q.get_nowait()
                    except queue_mod.Empty:
                        break
                    if progress is not None:
                        progress(*msg)
                for fut in finished:
                    fut.result()  # a worker's error stops the run here


class RayExecutor:
    """One actor per `num_cpus`/`num_gpus` share; `address` None starts a local instance."""

    def __init__(self, spec: ExecutorSpec, local_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise EditriskError("the ray executor needs ray: pip install 'editrisk[ray]'") from err
        self.ray, self.spec = ray, spec
        if not ray.is_initialized():
            if spec.address:
                ray.init(address=spec.address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=local_cpus or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                )

    def run(
        self, cfg: StudyConfig, jobs: Sequence[Job], rd: RunDir, contexts: Contexts,
        progress: Progress | None = None,
    ) -> None:  # fmt: skip
        ray, spec = self.ray, self.spec
        threads = max(1, int(spec.num_cpus))
        path = str(Path(rd.path).resolve())

        @ray.remote
        class _Actor:
            def __init__(self, cfg: StudyConfig) -> None:
                torch.set_num_threads(threads)
                self.cfg, self.contexts = cfg, Contexts(cfg)

            def run(self, job: Job) -> str:
                run_job(self.contexts.get(job.seed), job, self.cfg, RunDir(path))
                return job.id

        total = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(len(jobs), int(total // spec.num_cpus)))
        opts = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus}
        actors = [_Actor.options(**opts).remote(cfg) for _ in range(n)]
        todo, idle, pending = list(jobs), list(actors), {}
        try:
            while todo or pending:
                while todo and idle:
                    actor, job = idle.pop(), todo.pop(0)
                    pending[actor.run.remote(job)] = (job, actor)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job, actor = pending.pop(ref)
                    idle.append(actor)
                    ray.get(ref)  # a job's error stops the run here
                    if progress is not None:
                        progress(job.id, 1, 1)
        finally:
            for a in actors:
                ray.kill(a)


def make_executor(spec: ExecutorSpec, workers: int | None = None) -> Executor:
    """The executor a config's `executor` section asks for (`workers` overrides local's)."""
    if spec.kind == "ray":
        return RayExecutor(spec)
    return LocalExecutor(workers or spec.workers)
