"""Executors hand sweep tasks to workers and yield each task's rows as it finishes.

`LocalExecutor` runs a process pool on this machine and gives every worker an equal share of
the cores as torch threads, so workers never oversubscribe the CPU. `RayExecutor` connects to
a running Ray cluster (or starts a local one) and submits one Ray task per sweep task with the
CPU/GPU resources the config declares. Both have the same interface.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from editrisk.errors import EditriskError
from editrisk.settings import fork_available, threads_per_worker
from editrisk.sweep.grid import Task
from editrisk.sweep.worker import Row, Worker


class Executor(Protocol):
    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, list[Row]]]: ...


# One Worker per pool process, set up by the pool's initializer: a process-local cache of the
# loaded model and data. A forked process starts from a copy of the parent's Worker (its
# model and data already built, pages shared copy-on-write); a spawned one builds its own.
_worker: Worker | None = None


def _init(cfg: dict[str, Any], run_dir: str, threads: int, prebuilt: Worker | None) -> None:
    global _worker
    torch.set_num_threads(threads)
    _worker = prebuilt or Worker(cfg, run_dir)


def _run(task: Task) -> list[Row]:
    assert _worker is not None, "pool process was not initialised"
    return _worker.run(task)


class LocalExecutor:
    """A pool of `workers` processes; one worker runs in this process."""

    def __init__(self, cfg: dict[str, Any], run_dir: str | Path, workers: int = 1) -> None:
        self.cfg, self.run_dir, self.workers = cfg, str(run_dir), workers
        self.threads = threads_per_worker(workers)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, list[Row]]]:
        if not tasks:
            return
        if self.workers == 1:  # in this process: no start-up cost, easy to debug
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                worker = Worker(self.cfg, self.run_dir)
                for t in tasks:
                    yield t, worker.run(t)
            finally:
                torch.set_num_threads(before)
            return
        # fork where the platform has it (Linux): workers start at once with the parent's
        # imports; torch resets its thread pool in a forked child. spawn elsewhere.
        fork = fork_available()
        prebuilt = None
        if fork:  # build model and data once, here; every worker inherits them
            prebuilt = Worker(self.cfg, self.run_dir)
            for seed in sorted({t.seed for t in tasks}):
                prebuilt.context(seed)
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=mp.get_context("fork" if fork else "spawn"),
            initializer=_init,
            initargs=(self.cfg, self.run_dir, self.threads, prebuilt),
        ) as pool:
            pending: dict[Future, Task] = {pool.submit(_run, t): t for t in tasks}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield pending.pop(fut), fut.result()


class RayExecutor:
    """One Ray task per sweep task; `address` None starts a local Ray instance."""

    def __init__(
        self,
        cfg: dict[str, Any],
        run_dir: str | Path,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        local_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise EditriskError("the ray executor needs ray: pip install 'editrisk[ray]'") from err
        self.ray = ray
        self.cfg, self.run_dir = cfg, str(Path(run_dir).resolve())
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=local_cpus or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                )

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, list[Row]]]:
        if not tasks:
            return
        ray = self.ray
        threads = max(1, int(self.num_cpus))

        @ray.remote
        class _RayWorker:
            def __init__(self, cfg: dict[str, Any], run_dir: str) -> None:
                torch.set_num_threads(threads)
                self.worker = Worker(cfg, run_dir)

            def run(self, task: Task) -> list[Row]:
                return self.worker.run(task)

        total = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, min(len(tasks), int(total // max(self.num_cpus, 1e-9))))
        opts = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        actors = [
            _RayWorker.options(**opts).remote(self.cfg, self.run_dir) for _ in range(n_actors)
        ]
        queue = list(tasks)
        pending: dict[Any, tuple[Task, Any]] = {}
        idle = list(actors)
        try:
            while queue or pending:
                while queue and idle:
                    actor, task = idle.pop(), queue.pop(0)
                    pending[actor.run.remote(task)] = (task, actor)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task, actor = pending.pop(ref)
                    idle.append(actor)
                    yield task, ray.get(ref)
        finally:
            for a in actors:
                ray.kill(a)


def make_executor(cfg: dict[str, Any], run_dir: str | Path, workers: int | None = None) -> Executor:
    ex = cfg["executor"]
    if ex["kind"] == "ray":
        return RayExecutor(
            cfg, run_dir, ex.get("address"), ex.get("num_cpus", 1), ex.get("num_gpus", 0)
        )
    return LocalExecutor(cfg, run_dir, workers or ex["workers"])
