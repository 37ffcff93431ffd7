"""Robustness metrics for edited classifiers.

Conventions (each metric's name says which):
- accuracy: top-1, in [0, 1].
- corruption error CE_c = sum_s err_edited(c, s) / sum_s err_unedited(c, s); mCE = mean_c CE_c
  (Hendrycks & Dietterich 2019, with the unedited model as the baseline instead of AlexNet).
- relative robustness = shifted accuracy of the edited model minus that of the unedited model.
- effective robustness = shifted accuracy minus the accuracy predicted from clean accuracy by a
  linear fit in logit space across the testbed (Taori et al. 2020).
- edit success = accuracy on the edit's test set; errors corrected = of the test images the
  unedited model got wrong, the fraction the edited model gets right.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from editrisk.errors import EditriskError
from editrisk.evaluation.robustness import LogitFit, fit_logit_linear
from editrisk.vision.corruptions import CORRUPTIONS, SEVERITIES, corrupt_suite

__all__ = ["LogitFit", "ShiftSuite", "fit_logit_linear"]

Key = tuple[str, int]  # (corruption, severity); ("clean", 0) is the clean set


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of predicted class indices (or logits) against labels."""
    if preds.ndim == 2:
        preds = preds.argmax(1)
    if preds.shape != labels.shape:
        raise EditriskError(f"predictions {tuple(preds.shape)} vs labels {tuple(labels.shape)}")
    return float((preds == labels).float().mean()) if labels.numel() else float("nan")


def errors_corrected(
    base_preds: torch.Tensor, edited_preds: torch.Tensor, labels: torch.Tensor
) -> float:
    """Of the examples the unedited model got wrong, the fraction the edited model gets right."""
    wrong = base_preds != labels
    if not wrong.any():
        return float("nan")
    return float((edited_preds[wrong] == labels[wrong]).float().mean())


def corruption_errors(edited: dict[Key, float], base: dict[Key, float]) -> dict[str, float]:
    """CE per corruption: summed error over severities relative to the unedited model."""
    out = {}
    for name in sorted({c for c, s in base if c != "clean"}):
        keys = [k for k in base if k[0] == name]
        denom = sum(1 - base[k] for k in keys)
        num = sum(1 - edited[k] for k in keys)
        out[name] = num / denom if denom > 0 else float("nan")
    return out


def mean_corruption_error(edited: dict[Key, float], base: dict[Key, float]) -> float:
    ces = [v for v in corruption_errors(edited, base).values() if not math.isnan(v)]
    return sum(ces) / len(ces) if ces else float("nan")


def shifted_accuracy(acc: dict[Key, float]) -> float:
    """Mean accuracy over every (corruption, severity) in `acc` (clean excluded)."""
    vals = [v for k, v in acc.items() if k[0] != "clean"]
    return sum(vals) / len(vals) if vals else float("nan")


class ShiftSuite:
    """A fixed evaluation set and its corrupted copies (uint8, built once, deterministic)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        names: Iterable[str] | None = None,
        severities: Iterable[int] = SEVERITIES,
        seed: int = 0,
    ) -> None:
        self.labels = labels
        self.names = list(names or CORRUPTIONS)
        self.severities = list(severities)
        self.sets: dict[Key, torch.Tensor] = {("clean", 0): (images * 255).round().byte()}
        for name, s, x in corrupt_suite(images, self.names, self.severities, seed):
            self.sets[(name, s)] = (x * 255).round().byte()

    def predictions(self, clf) -> dict[Key, torch.Tensor]:  # noqa: ANN001 - Classifier
        """Predicted classes of `clf` on every set (one batched pass per set)."""
        return {k: clf.predict(x) for k, x in self.sets.items()}

    def accuracies(self, preds: dict[Key, torch.Tensor]) -> dict[Key, float]:
        return {k: accuracy(p, self.labels) for k, p in preds.items()}
