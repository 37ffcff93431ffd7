"""Evaluation: scoring, edit metrics, general ability, robustness."""

from editrisk.evaluation.scoring import TargetScore, score_targets

__all__ = ["TargetScore", "score_targets"]
