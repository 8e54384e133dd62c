"""Statistics read off sorted values equal numpy's on the same values; threads change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from polars.testing import assert_frame_equal

from ctr.rules.params import ScoringParams
from ctr.stats import cluster_stats, compute_statistics
from ctr.stats.ordered import ascending, median_abs_deviation, sorted_histogram, sorted_median
from ctr.stats.positivity import find_split


def samples():
    rng = np.random.default_rng(7)
    yield np.array([3.0])
    yield np.array([2.0, -1.0])
    yield rng.normal(size=1001)
    yield rng.normal(size=1000)
    yield np.round(rng.exponential(2.0, 5000))  # many ties
    yield np.where(rng.random(4000) < 0.6, 0.0, rng.lognormal(0.0, 1.0, 4000))  # a mass at zero
    yield np.full(50, 1.5)


@pytest.mark.parametrize("values", list(samples()), ids=lambda v: f"n{v.size}")
def test_medians_equal_numpy(values):
    s = ascending(values)
    assert np.array_equal(s, np.sort(values))
    assert sorted_median(s) == np.median(values)
    for centre in (float(np.median(values)), float(values.mean()) + 0.3, float(s[0]) - 1.0):
        assert median_abs_deviation(s, centre) == np.median(np.abs(values - centre))


@pytest.mark.parametrize("values", list(samples()), ids=lambda v: f"n{v.size}")
@pytest.mark.parametrize("bins", [1, 7, 512])
def test_histograms_equal_numpy(values, bins):
    s = np.sort(values)
    lo, hi = np.quantile(values, [0.05, 0.9])
    counts, edges = sorted_histogram(s, lo, hi, bins)
    expected, expected_edges = np.histogram(values, bins=bins, range=(lo, hi))
    assert np.array_equal(counts, expected) and np.array_equal(edges, expected_edges)
    clipped, _ = sorted_histogram(s, lo, hi, bins, clip=True)
    assert np.array_equal(clipped, np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))[0])


@pytest.mark.parametrize("seed", range(6))
def test_find_split_does_not_depend_on_order(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(4, 0.7, 300 * (seed + 1)), np.zeros(200 * seed)])
    values[rng.random(values.size) < 0.01] = np.nan
    assert find_split(rng.permutation(values)) == find_split(np.sort(values))


def test_threads_give_the_tables_of_one_thread(monkeypatch):
    rng = np.random.default_rng(3)
    n = 30_000
    labels = rng.integers(0, 25, n)
    matrix = np.where(rng.random((n, 6)) < 0.4, 0.0, rng.gamma(2.0, 1.0 + labels[:, None] % 4, (n, 6))).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.02] = np.nan
    markers = [f"M{j}" for j in range(6)]
    monkeypatch.setattr(cluster_stats, "_THREADS_FROM_CELLS", 10**12)
    serial = compute_statistics(matrix, labels, markers, ScoringParams())
    monkeypatch.setattr(cluster_stats, "_THREADS_FROM_CELLS", 0)
    monkeypatch.setattr(cluster_stats.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    threaded = compute_statistics(matrix, labels, markers, ScoringParams())
    for a, b in [(serial.global_, threaded.global_), (serial.cluster, threaded.cluster), (serial.histograms, threaded.histograms)]:
        assert_frame_equal(a, b, check_exact=True)
