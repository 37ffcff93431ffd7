"""Analysis of protocol runs: curves against the number of edits, L1-norm vs accuracy
correlations, collapse detection, PNG plots and a summary table."""

from editrisk.analysis.curves import collapse_step, curve, l1_curve
from editrisk.analysis.report import Report, analyze_run
from editrisk.analysis.stats import pearson, spearman

__all__ = ["Report", "analyze_run", "collapse_step", "curve", "l1_curve", "pearson", "spearman"]
