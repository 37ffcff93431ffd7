"""One analysis and one report over the one row schema, for every kind of run."""

from editrisk.report.analysis import Analysis, analyze_run, analyze_runs
from editrisk.report.curves import collapse_step, curve, l1_curve, trade_off_points
from editrisk.report.html import write_report
from editrisk.report.stats import pearson, spearman

__all__ = [
    "Analysis", "analyze_run", "analyze_runs", "collapse_step", "curve", "l1_curve", "pearson",
    "spearman", "trade_off_points", "write_report",
]  # fmt: skip
