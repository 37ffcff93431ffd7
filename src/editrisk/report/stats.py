"""Pearson and Spearman correlation with two-sided p-values (ties get average ranks), and
percentile bootstrap intervals of a mean."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than 3 points or a constant series."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"series differ in length: {len(a)} and {len(b)}")
    if len(a) < 3:
        return None
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else None


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tie = a == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the ranks."""
    return pearson(ranks(x), ranks(y))


def correlation_p(r: float | None, n: int) -> float | None:
    """Two-sided p-value of a correlation `r` over `n` points against no correlation (the
    t-test with n - 2 degrees of freedom that scipy's pearsonr and spearmanr use)."""
    from scipy import stats

    if r is None or n < 3:
        return None
    if abs(r) >= 1.0:
        return 0.0
    t = r * np.sqrt((n - 2) / (1.0 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (BOOTSTRAP_RESAMPLES resamples,
    seeded); None with fewer than 2 values, the value itself when all are equal."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return None
    if np.all(a == a[0]):
        return float(a[0]), float(a[0])
    res = stats.bootstrap(
        (a,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
