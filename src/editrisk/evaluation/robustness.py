"""Effective robustness (Taori et al. 2020), one implementation for both families: shifted
accuracy minus the accuracy a logit-linear fit across a testbed of models predicts from clean
accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from editrisk.errors import EditriskError


def logit(p: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@dataclass(frozen=True)
class LogitFit:
    """logit(shifted) = slope * logit(clean) + intercept, fitted across a testbed."""

    slope: float
    intercept: float
    n_models: int

    def predict(self, clean_acc: float) -> float:
        return sigmoid(self.slope * logit(clean_acc) + self.intercept)

    def effective_robustness(self, clean_acc: float, shifted_acc: float) -> float:
        return shifted_acc - self.predict(clean_acc)


def fit_logit_linear(clean: Iterable[float], shifted: Iterable[float]) -> LogitFit:
    """Least-squares line through (logit clean, logit shifted) of the testbed models."""
    xs = [logit(c) for c in clean]
    ys = [logit(s) for s in shifted]
    if len(xs) != len(ys) or len(xs) < 2:
        raise EditriskError(f"a logit-linear fit needs >= 2 models; got {len(xs)}")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise EditriskError("testbed models all have the same clean accuracy; cannot fit a line")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return LogitFit(slope, my - slope * mx, len(xs))
