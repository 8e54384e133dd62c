"""One-vs-rest Wilcoxon rank-sum z scores, every cluster from one global ranking per marker.

The ranking (average ranks over a marker's non-missing values) is computed once; each cluster's
rank sum R1 is a weighted bincount over it, so the cost grows with cells, not cells x clusters.
"""

from __future__ import annotations

import numpy as np


def tie_term_of_sizes(sizes: np.ndarray) -> float:
    """sum(t^3 - t) from the sizes ``t`` of the tie groups."""
    t = np.asarray(sizes, dtype=np.float64)
    return float(np.sum(t**3 - t))


def ranksum_z(r1: np.ndarray, n1: np.ndarray, n: int, ties: float) -> np.ndarray:
    """z of each group's rank sum ``r1`` (``n1`` values) against the other ``n - n1`` values:
    (R1 - n1 (N+1)/2) / sqrt(n1 n2 / 12 * ((N+1) - sum(t^3-t) / (N (N-1)))), with ``ties`` =
    sum(t^3-t); 0 where the variance is 0 (a flat marker, a group holding every value, an empty group)."""
    r1, n1 = np.asarray(r1, np.float64), np.asarray(n1, np.float64)
    z = np.zeros(r1.shape)
    if n < 2:
        return z
    n2 = n - n1
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    ok = var > 1e-12
    z[ok] = (r1[ok] - n1[ok] * (n + 1) / 2.0) / np.sqrt(var[ok])
    return z
