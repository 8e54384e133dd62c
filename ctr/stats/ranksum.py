"""One-vs-rest Wilcoxon rank-sum z scores, every cluster from one global ranking per marker."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import rankdata


def tie_term(values: np.ndarray) -> float:
    """sum(t^3 - t) over the groups of tied values (the tie correction of the rank-sum variance)."""
    _, counts = np.unique(values, return_counts=True)
    counts = counts.astype(np.float64)
    return float(np.sum(counts**3 - counts))


def ranksum_z(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """z of each group's rank sum against the rest, with tie correction.

    ``values``: one marker's non-missing values; ``codes``: the group (cluster) code of each value.
    z = (R1 - n1 (N+1)/2) / sqrt(n1 n2 / 12 * ((N+1) - sum(t^3-t) / (N (N-1)))), 0 when the
    variance is 0 (a flat marker, a group holding every cell, or an empty group).
    """
    n = values.size
    z = np.zeros(n_groups, dtype=np.float64)
    if n < 2:
        return z
    ranks = rankdata(values, method="average")
    sums = (
        pl.DataFrame({"code": codes, "rank": ranks})
        .group_by("code")
        .agg(pl.col("rank").sum().alias("r1"), pl.len().alias("n1"))
    )
    idx = sums["code"].to_numpy()
    r1 = np.zeros(n_groups)
    n1 = np.zeros(n_groups)
    r1[idx] = sums["r1"].to_numpy()
    n1[idx] = sums["n1"].to_numpy()
    n2 = n - n1
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term(values) / (n * (n - 1)))
    ok = var > 1e-12
    z[ok] = (r1[ok] - n1[ok] * (n + 1) / 2.0) / np.sqrt(var[ok])
    return z
