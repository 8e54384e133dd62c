"""Global and per-cluster statistics on hand-computable data (semantics §3-4)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from scipy.stats import mannwhitneyu, norm

from ctr.errors import InputError
from ctr.rules.params import ScoringParams
from ctr.stats import compute_statistics, natural_order

NAN = np.nan
# 12 cells, 3 clusters x 4 cells, 4 markers
LABELS = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
M1 = [5, 6, 7, 8, 0, 0, 1, 2, 0, 0, 0, 3]  # a clear "a" marker
FLAT = [2.0] * 12
M3 = [1, NAN, 3, 4, 0, 0, 0, 0, 2, 2, NAN, NAN]  # missing values
TIES = [1, 1, 2, 2, 1, 2, 2, 3, 0, 0, 1, 3]  # many ties
MARKERS = ["M1", "FLAT", "M3", "TIES"]
# the hand-computed figures below follow the quantile rule and enrichment from the global median
QUANTILE = ScoringParams(positivity="quantile", enrichment_reference="median")
X = np.column_stack([M1, FLAT, M3, TIES]).astype(float)


@pytest.fixture(scope="module")
def stats():
    return compute_statistics(X, LABELS, MARKERS, QUANTILE)


def cell(stats, cluster, marker, column):
    return stats.cluster.filter((pl.col("cluster") == cluster) & (pl.col("marker") == marker))[column].item()


def glob(stats, marker, column):
    return stats.global_.filter(pl.col("marker") == marker)[column].item()


def test_quantile_threshold_of_nonzero_values(stats):
    # non-zero values of M1: 1 2 3 5 6 7 8; linear quantile 0.75 sits at position 4.5 -> (6 + 7) / 2
    assert glob(stats, "M1", "threshold") == pytest.approx(6.5)
    assert glob(stats, "M1", "threshold_source") == "quantile"
    assert glob(stats, "M1", "n_nonzero") == 7


def test_global_median_mean_and_population_std(stats):
    # sorted M1: 0 0 0 0 0 1 2 3 5 6 7 8 -> median (1 + 2) / 2
    assert glob(stats, "M1", "global_median") == pytest.approx(1.5)
    assert glob(stats, "M1", "global_mean") == pytest.approx(32 / 12)
    mean = 32 / 12
    pop_std = math.sqrt(sum((v - mean) ** 2 for v in M1) / 12)
    assert glob(stats, "M1", "global_std") == pytest.approx(pop_std)


def test_pos_frac_counts_cells_at_or_above_threshold(stats):
    # threshold 6.5: cluster a has 7 and 8 positive
    assert cell(stats, "a", "M1", "pos_frac") == pytest.approx(0.5)
    assert cell(stats, "b", "M1", "pos_frac") == 0.0
    assert cell(stats, "c", "M1", "pos_frac") == 0.0


def test_enrichment_with_median_centre(stats):
    std = glob(stats, "M1", "global_std")
    assert cell(stats, "a", "M1", "median") == pytest.approx(6.5)
    assert cell(stats, "a", "M1", "enrichment") == pytest.approx((6.5 - 1.5) / std)
    assert cell(stats, "b", "M1", "enrichment") == pytest.approx((0.5 - 1.5) / std)


def test_enrichment_with_mean_centre():
    stats = compute_statistics(X, LABELS, MARKERS, QUANTILE.model_copy(update={"enrichment_center": "mean"}))
    std = glob(stats, "M1", "global_std")
    # cluster c mean of M1 = 3 / 4; the reference is still the global median
    assert cell(stats, "c", "M1", "enrichment") == pytest.approx((0.75 - 1.5) / std)


def test_flat_marker_contributes_nothing(stats):
    assert glob(stats, "FLAT", "flat") is True
    assert stats.flat_markers == ["FLAT"]
    for cluster in "abc":
        assert cell(stats, cluster, "FLAT", "enrichment") == 0.0
        assert cell(stats, cluster, "FLAT", "pos_frac") == 0.0
        assert cell(stats, cluster, "FLAT", "de_z") == 0.0


def test_nan_values_are_missing_not_positive(stats):
    assert glob(stats, "M3", "n_nan") == 3
    # valid M3 values: 1 3 4 0 0 0 0 2 2 -> median 1; non-zero 1 2 2 3 4 -> q75 = 3
    assert glob(stats, "M3", "global_median") == pytest.approx(1.0)
    assert glob(stats, "M3", "threshold") == pytest.approx(3.0)
    # cluster a: 1, NaN, 3, 4 -> 2 of 3 valid cells positive; median of valid = 3
    assert cell(stats, "a", "M3", "pos_frac") == pytest.approx(2 / 3)
    assert cell(stats, "a", "M3", "median") == pytest.approx(3.0)
    assert cell(stats, "a", "M3", "n_nan") == 1
    assert cell(stats, "c", "M3", "n_cells") == 4  # the cluster's size, NaN cells included


def test_all_missing_in_a_cluster_gives_null_pos_frac():
    x = np.array([[NAN], [NAN], [1.0], [2.0]])
    stats = compute_statistics(x, ["a", "a", "b", "b"], ["M"], QUANTILE)
    assert cell(stats, "a", "M", "pos_frac") is None
    assert cell(stats, "a", "M", "de_z") == 0.0


def _reference_z(values, labels, cluster):
    values, labels = np.asarray(values, float), np.asarray(labels)
    keep = ~np.isnan(values)
    inside, outside = values[keep & (labels == cluster)], values[keep & (labels != cluster)]
    res = mannwhitneyu(inside, outside, alternative="two-sided", method="asymptotic", use_continuity=False)
    z = norm.isf(res.pvalue / 2)
    return math.copysign(z, res.statistic - inside.size * outside.size / 2)


@pytest.mark.parametrize("marker,values", [("M1", M1), ("TIES", TIES), ("M3", M3)])
@pytest.mark.parametrize("cluster", ["a", "b", "c"])
def test_ranksum_z_with_ties_matches_scipy(stats, marker, values, cluster):
    assert cell(stats, cluster, marker, "de_z") == pytest.approx(_reference_z(values, LABELS, cluster), abs=1e-9)


def test_de_rank_counts_only_up_regulated_markers(stats):
    # cluster a: M1 z > TIES z > 0 (M3 also up); FLAT has z 0 -> no rank
    ranks = {m: cell(stats, "a", m, "de_rank") for m in MARKERS}
    zs = {m: cell(stats, "a", m, "de_z") for m in MARKERS}
    up = sorted((m for m in MARKERS if zs[m] > 0), key=lambda m: -zs[m])
    assert [ranks[m] for m in up] == list(range(1, len(up) + 1))
    assert ranks["FLAT"] is None
    down = [m for m in MARKERS if zs[m] <= 0]
    assert all(ranks[m] is None for m in down)


def test_absolute_threshold_replaces_quantile():
    stats = compute_statistics(X, LABELS, MARKERS, QUANTILE, thresholds={"M1": (">", 2.0)})
    assert glob(stats, "M1", "threshold") == 2.0
    assert glob(stats, "M1", "threshold_source") == "absolute"
    # > 2: cluster a all four, cluster b none (2 is not > 2), cluster c one (3)
    assert cell(stats, "a", "M1", "pos_frac") == 1.0
    assert cell(stats, "b", "M1", "pos_frac") == 0.0
    assert cell(stats, "c", "M1", "pos_frac") == 0.25
    inclusive = compute_statistics(X, LABELS, MARKERS, QUANTILE, thresholds={"M1": (">=", 2.0)})
    assert cell(inclusive, "b", "M1", "pos_frac") == 0.25


def test_positive_quantile_parameter_moves_threshold():
    stats = compute_statistics(X, LABELS, MARKERS, QUANTILE.model_copy(update={"positive_quantile": 0.5}))
    assert glob(stats, "M1", "threshold") == 5.0  # median of 1 2 3 5 6 7 8


def test_sparse_input_gives_the_same_tables():
    dense = compute_statistics(np.nan_to_num(X), LABELS, MARKERS, QUANTILE)
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        sparse = compute_statistics(fmt(np.nan_to_num(X)), LABELS, MARKERS, QUANTILE)
        assert sparse.cluster.equals(dense.cluster)
        assert sparse.global_.equals(dense.global_)


def test_clusters_in_natural_order_and_deterministic():
    labels = ["10", "2", "1", "2", "10", "1"]
    x = np.arange(12, dtype=float).reshape(6, 2)
    first = compute_statistics(x, labels, ["A", "B"], QUANTILE)
    assert first.cluster_ids == ["1", "2", "10"]
    assert first.clusters["n_cells"].to_list() == [2, 2, 2]
    assert first.cluster["cluster"].to_list() == ["1", "1", "2", "2", "10", "10"]
    second = compute_statistics(x, labels, ["A", "B"], QUANTILE)
    assert first.cluster.equals(second.cluster) and first.global_.equals(second.global_)
    assert natural_order(["c10", "c9", "b"]) == ["b", "c9", "c10"]


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="3 marker names"):
        compute_statistics(X, LABELS, ["A", "B", "C"], QUANTILE)
    with pytest.raises(InputError, match="11 cluster labels"):
        compute_statistics(X, LABELS[:11], MARKERS, QUANTILE)


def test_tied_de_z_share_a_rank():
    # A and B carry the same values: equal z, equal rank; C ranks after them
    x = np.array([[5, 5, 3], [6, 6, 1], [0, 0, 2], [1, 1, 0]], dtype=float)
    stats = compute_statistics(x, ["a", "a", "b", "b"], ["A", "B", "C"], QUANTILE)
    assert [cell(stats, "a", m, "de_rank") for m in "ABC"] == [1, 1, 3]


def _random_panel(seed: int = 3, n: int = 3000, n_clusters: int = 7, zeros: float = 0.3):
    """float32 values with ties, exact zeros (share ``zeros``), negative zeros and missing values; labels 0..k-1."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0.5, 1.0, (n, 3)), 1).astype(np.float32)
    x[rng.random((n, 3)) < zeros] = 0.0
    x[rng.random((n, 3)) < zeros / 6] = -0.0
    x[rng.random((n, 3)) < 0.05] = np.nan
    return x, rng.integers(0, n_clusters, n)


@pytest.mark.parametrize("zeros, n_clusters", [(0.3, 7), (0.0, 7), (0.3, 300)])
def test_cluster_statistics_match_a_per_cluster_recomputation(zeros, n_clusters):
    # the one-sort path (float32 values sorted as integer keys; a mass of zeros set apart, or
    # none; cluster codes of 8 or 16 bits) against numpy/scipy per cluster
    x, codes = _random_panel(n=6000, n_clusters=n_clusters, zeros=zeros)
    stats = compute_statistics(x, codes, ["A", "B", "C"], QUANTILE)
    x64 = x.astype(np.float64)
    for j, marker in enumerate(["A", "B", "C"]):
        for k in range(0, n_clusters, max(1, n_clusters // 7)):
            values = x64[codes == k, j]
            values = values[~np.isnan(values)]
            assert cell(stats, str(k), marker, "median") == pytest.approx(np.median(values), rel=1e-12)
            assert cell(stats, str(k), marker, "mean") == pytest.approx(values.mean(), rel=1e-12)
            assert cell(stats, str(k), marker, "n_nan") == int(np.isnan(x64[codes == k, j]).sum())
            z = _reference_z(x64[:, j], codes.astype(str), str(k))
            assert cell(stats, str(k), marker, "de_z") == pytest.approx(z, abs=1e-9)


def test_float32_and_float64_values_give_the_same_tables():
    # float64 values that are not float32 take the argsort path; the ranks and medians agree
    x, codes = _random_panel()
    as32 = compute_statistics(x, codes, ["A", "B", "C"], QUANTILE)
    as64 = compute_statistics(x.astype(np.float64), codes, ["A", "B", "C"], QUANTILE)
    shifted = compute_statistics(x.astype(np.float64) + 1e-12, codes, ["A", "B", "C"], QUANTILE)
    assert as32.cluster.equals(as64.cluster)
    assert shifted.cluster["de_z"].to_list() == pytest.approx(as32.cluster["de_z"].to_list(), abs=1e-9)


def test_labels_as_categories_integers_or_text_give_the_same_tables():
    import pandas as pd

    x, codes = _random_panel(n_clusters=12)
    text = compute_statistics(x, codes.astype(str), ["A", "B", "C"], QUANTILE)
    for labels in (codes, pd.Categorical(codes), pd.Series(pd.Categorical(codes.astype(str))), list(codes)):
        other = compute_statistics(x, labels, ["A", "B", "C"], QUANTILE)
        assert other.cluster.equals(text.cluster)
        assert other.cluster_ids == [str(k) for k in range(12)]
