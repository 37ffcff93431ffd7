"""Protocols (how edits are grouped and whether they accumulate) and evaluation schedules
(when, and on what, the edited model is measured). Every result row carries both."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from editrisk.errors import EditriskError
from editrisk.requests import EditRequest

PROTOCOLS = ("single", "batch", "sequential")


@dataclass(frozen=True)
class Step:
    """One editor call: `requests` edited together as step `index` (1-based) of `n_steps`."""

    index: int
    n_steps: int
    requests: tuple[EditRequest, ...]
    edits_before: int  # edits already accumulated in the model before this step

    @property
    def edits_after(self) -> int:
        return self.edits_before + len(self.requests)


@dataclass(frozen=True)
class Protocol:
    """`single`: each request on the pristine model, reverted after; `batch`: all requests in
    one call; `sequential`: steps of `batch_size` requests in order, accumulating."""

    name: str = "sequential"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise EditriskError(f"unknown protocol {self.name!r}; choose from {PROTOCOLS}")
        if self.batch_size < 1:
            raise EditriskError(f"protocol batch_size must be >= 1, got {self.batch_size}")

    @property
    def accumulates(self) -> bool:
        return self.name != "single"

    @property
    def label(self) -> str:
        return self.name if self.name == "batch" else f"{self.name}(b={self.batch_size})"

    def steps(self, requests: Sequence[EditRequest]) -> list[Step]:
        """The editor calls this protocol makes over `requests`, in order."""
        reqs = tuple(requests)
        if not reqs:
            raise EditriskError("a protocol needs at least one request")
        size = len(reqs) if self.name == "batch" else self.batch_size
        chunks = [reqs[i : i + size] for i in range(0, len(reqs), size)]
        out, done = [], 0
        for i, chunk in enumerate(chunks, 1):
            out.append(Step(i, len(chunks), chunk, done if self.accumulates else 0))
            done += len(chunk) if self.accumulates else 0
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """When to measure, each recorded under its own label:

    - `immediate`: the step's own requests, right after the step;
    - `final`: every request, after the last step;
    - `retention@k`: every request edited so far, every k steps (and after the last);
    - `general@k`: held-out facts, perplexity and shifted prompts every k steps, after the
      last, and once before any edit (step 0, label `general@k` too);
    - `retention@edits` / `general@edits`: the same after the step at which the number of
      edits so far reaches each count of `retention_at` / `general_at` (a log scale: 100,
      200, 500, ...; a count past the edit set is never reached).

    Retention schedules measure a fixed seeded sample of `retention_sample` of the edits so
    far when it is set (`retention_sample`, below); `final` always measures every edit.
    `collapse_perplexity`: the job stops, recorded as collapsed, once a general evaluation's
    perplexity exceeds it.
    """

    immediate: bool = True
    final: bool = True
    retention_every: int = 0  # 0: never
    general_every: int = 0  # 0: never
    retention_at: tuple[int, ...] = ()
    general_at: tuple[int, ...] = ()
    retention_sample: int = 0  # 0: every edit so far
    collapse_perplexity: float | None = None  # None: never stop

    def __post_init__(self) -> None:
        for name in ("retention_every", "general_every", "retention_sample"):
            if getattr(self, name) < 0:
                raise EditriskError(f"schedule {name} must be >= 0 (0 = never)")
        for name in ("retention_at", "general_at"):
            counts = tuple(sorted(getattr(self, name)))
            if any(k < 1 for k in counts):
                raise EditriskError(f"schedule {name} counts must be >= 1, got {counts}")
            object.__setattr__(self, name, counts)
        if self.collapse_perplexity is not None and not self.measures_general:
            raise EditriskError("schedule collapse_perplexity needs general_every or general_at")

    @property
    def retention_label(self) -> str:
        return f"retention@{self.retention_every}"

    @property
    def general_label(self) -> str:
        return f"general@{self.general_every}" if self.general_every else "general@edits"

    @property
    def measures_general(self) -> bool:
        return bool(self.general_every or self.general_at)

    def due(self, step: int, n_steps: int, before: int = 0, after: int = 0) -> list[str]:
        """Labels of the evaluations due after step `step` of `n_steps` (0: before editing),
        which took the edits so far from `before` to `after`."""
        last = step == n_steps
        out = []
        if step == 0:
            return [self.general_label] if self.measures_general else []

        def reached(counts: tuple[int, ...]) -> bool:
            return any(before < k <= after for k in counts)

        if self.immediate:
            out.append("immediate")
        if self.retention_every and (step % self.retention_every == 0 or last):
            out.append(self.retention_label)
        if reached(self.retention_at):
            out.append("retention@edits")
        if self.general_every and (step % self.general_every == 0 or last):
            out.append(self.general_label)
        elif reached(self.general_at):
            out.append("general@edits")
        if self.final and last:
            out.append("final")
        return out

    def check(self, protocol: Protocol) -> None:
        """Refuse schedules that mean nothing under `protocol`."""
        if not protocol.accumulates and (self.retention_every or self.retention_at or self.final):
            raise EditriskError(
                "protocol 'single' reverts every edit: only 'immediate' and 'general' "
                "schedules apply (set final: false, retention_every: 0, no retention_at)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_sample(n_total: int, done: int, size: int, seed: int) -> list[int]:
    """Indices (ascending) of a fixed seeded sample of `size` of the first `done` edits of an
    edit set of `n_total`: the first `size` of one seeded permutation of the whole set that
    lie below `done`, so each sample is uniform over the edits so far and the same on every
    run. `size` 0 or >= `done`: every edit so far, in order (the full retention)."""
    if size <= 0 or size >= done:
        return list(range(done))
    order = list(range(n_total))
    random.Random(f"retention-sample:{seed}").shuffle(order)
    picked = [i for i in order if i < done][:size]
    return sorted(picked)


@dataclass(frozen=True)
class Job:
    """One cell of the grid without its alpha: an editor at a layer, on one edit set with one
    seed, driven through the protocol. Every alpha of the grid is an evaluation of its edit."""

    method: str  # label
    editor: str
    hparams: tuple[tuple[str, Any], ...]
    layer: int | str
    seed: int
    edit_set: str

    @property
    def id(self) -> str:
        return f"{self.method}/L{self.layer}/s{self.seed}/{self.edit_set}"

    @property
    def folder(self) -> str:
        """A safe folder name (labels and edit-set names are validated as safe)."""
        return self.id.replace("/", "__")

    def identity(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "editor": self.editor,
            "layer": self.layer,
            "seed": self.seed,
            "edit_set": self.edit_set,
        }


def plan_jobs(cfg: Any) -> list[Job]:
    """Editor x layer x seed x edit set, in config order (alphas are evaluations of a job)."""
    g = cfg.grid
    return [
        Job(m.label, m.name, tuple(sorted(m.hparams.items())), layer, seed, es)
        for m in cfg.methods
        for layer in g.layer
        for seed in g.seed
        for es in g.edit_set
    ]
