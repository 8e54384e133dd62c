"""Statistics read off values already in ascending order, equal to numpy's on the same values.

Each marker column is sorted once (``ctr.stats.cluster_stats``); a median is then two lookups and
a histogram one binary search per bin edge, instead of a partition or a pass over every cell.
Every function here returns exactly what its numpy counterpart returns for the same values in
any order (tests/test_ordered.py compares them).
"""

from __future__ import annotations

import numpy as np


def ascending(values: np.ndarray) -> np.ndarray:
    """``values`` in ascending order: returned as they are when already sorted, else sorted."""
    if values.size > 1 and not bool(np.all(values[1:] >= values[:-1])):
        return np.sort(values)
    return values


def sorted_median(values: np.ndarray) -> float:
    """``np.median`` of sorted, non-missing ``values``: the mean of the middle one or two."""
    n = values.size
    if n == 0:
        return float("nan")
    return float(np.mean(values[(n - 1) // 2 : n // 2 + 1]))  # np.median takes the same mean


def sorted_histogram(values: np.ndarray, lo: float, hi: float, bins: int, *, clip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(values, bins, range=(lo, hi))`` of sorted ``values`` (counts, edges), by a
    binary search per edge. A bin holds ``edges[i] <= x < edges[i + 1]``, the last one its upper
    edge too, values outside ``[lo, hi]`` none; ``clip``: as for ``np.clip(values, lo, hi)``, the
    values below ``lo`` count in the first bin and those above ``hi`` in the last."""
    if lo == hi:  # numpy widens an empty range by half a unit each way
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    starts = np.searchsorted(values, edges, side="left")
    counts = np.diff(starts)
    end = np.searchsorted(values, edges[-1], side="right")
    counts[-1] += end - starts[-1]
    if clip:
        counts[0] += starts[0]
        counts[-1] += values.size - end
    return counts.astype(np.int64), edges


def median_abs_deviation(values: np.ndarray, centre: float) -> float:
    """``np.median(np.abs(values - centre))`` of sorted ``values`` without sorting the deviations:
    those below and above ``centre`` are two ascending runs, and the middle order statistics of
    their union are found by bisection."""
    split = int(np.searchsorted(values, centre, side="left"))
    below = centre - values[:split][::-1]  # = |x - centre|, ascending; IEEE subtraction is symmetric
    above = values[split:] - centre
    n = values.size
    if n == 0:
        return float("nan")
    middle = [_kth_of_two(below, above, k) for k in range((n - 1) // 2, n // 2 + 1)]
    return float(np.mean(np.array(middle, dtype=np.float64)))


def _kth_of_two(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The ``k``-th smallest (0-based) of the union of two ascending arrays."""
    lo, hi = max(0, k + 1 - b.size), min(k + 1, a.size)  # how many of the k + 1 smallest come from a
    while lo < hi:
        i = (lo + hi) // 2
        j = k + 1 - i
        if a[i] < b[j - 1]:
            lo = i + 1
        else:
            hi = i
    i, j = lo, k + 1 - lo
    last_a = a[i - 1] if i > 0 else -np.inf
    last_b = b[j - 1] if j > 0 else -np.inf
    return float(max(last_a, last_b))
