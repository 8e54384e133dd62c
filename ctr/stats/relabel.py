"""Statistics for new cluster labels of the same cells (refinement's merges and splits)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ctr.rules.params import ScoringParams
from ctr.stats.cluster_stats import Statistics, compute_statistics


def statistics_for_labels(stats: Statistics, matrix, scoring: ScoringParams) -> Callable[[np.ndarray], Statistics]:
    """A function from new labels of the cells of ``matrix`` (cells x ``stats.markers``, the data
    ``stats`` came from) to their cluster statistics, against the original global statistics (they
    do not depend on the labels, so each marker keeps its positivity split)."""

    def for_labels(labels: np.ndarray) -> Statistics:
        fresh = compute_statistics(matrix, labels, stats.markers, scoring, global_=stats.global_)
        return Statistics(global_=stats.global_, cluster=fresh.cluster, clusters=fresh.clusters, markers=stats.markers)

    return for_labels
