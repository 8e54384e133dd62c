"""Polars statistics: per-marker global statistics and per (cluster, marker) evidence."""

from ctr.stats.cluster_stats import Statistics, compute_statistics, natural_key, natural_order
from ctr.stats.global_stats import QUANTILE_METHOD, absolute_thresholds
from ctr.stats.relabel import statistics_for_labels

__all__ = ["QUANTILE_METHOD", "absolute_thresholds", "Statistics", "compute_statistics", "natural_key", "natural_order",
           "statistics_for_labels"]
