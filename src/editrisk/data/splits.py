"""Leave-one-relation-out: choose editing defaults on every relation but one, score them on
the one left out, so a reported score never comes from the relation its defaults were tuned
on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from editrisk.errors import EditriskError
from editrisk.requests import EditRequest

C = TypeVar("C", bound=Hashable)


@dataclass(frozen=True)
class Fold:
    """One split: `held_out` is scored, `tuning` chooses the defaults."""

    held_out: str
    tuning: tuple[str, ...]


def by_relation(requests: Sequence[EditRequest]) -> dict[str, list[EditRequest]]:
    """Requests grouped by relation, relations in sorted order (a request without one is an
    error: it could not be held out)."""
    groups: dict[str, list[EditRequest]] = defaultdict(list)
    for r in requests:
        if not r.relation:
            raise EditriskError(f"request {r.id!r} has no relation to hold out by")
        groups[r.relation].append(r)
    return dict(sorted(groups.items()))


def leave_one_relation_out(relations: Sequence[str]) -> list[Fold]:
    """One fold per relation: it held out, the others tuning."""
    names = sorted(set(relations))
    if len(names) < 2:
        raise EditriskError("leave-one-relation-out needs at least two relations")
    return [Fold(r, tuple(o for o in names if o != r)) for r in names]


def tune(candidates: Sequence[C], fold: Fold, score: Callable[[C, str], float]) -> C:
    """The candidate with the best mean `score(candidate, relation)` over the fold's tuning
    relations (the first on ties). `score` is never asked about the held-out relation."""
    if not candidates:
        raise EditriskError("no candidates to tune over")

    def mean(c: C) -> float:
        return sum(score(c, rel) for rel in fold.tuning) / len(fold.tuning)

    means = [mean(c) for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (means[i], -i))]
