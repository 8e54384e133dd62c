"""Per (cluster, marker) statistics with polars group-bys, and the Statistics bundle."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp

from ctr.errors import InputError
from ctr.memory import release_freed_memory
from ctr.progress import steps
from ctr.rules.params import ScoringParams
from ctr.stats.global_stats import MarkerSummary, column_moments, marker_histogram, positive, summarise_marker
from ctr.stats.ranksum import ranksum_z, tie_term_of_sizes


@dataclass
class Statistics:
    """``global_`` (one row per marker), ``cluster`` (one row per (cluster, marker)) and
    ``clusters`` (cluster, n_cells in natural order); columns in docs/internals.md."""

    global_: pl.DataFrame
    cluster: pl.DataFrame
    clusters: pl.DataFrame
    markers: list[str] = field(default_factory=list)
    histograms: pl.DataFrame | None = None  # marker, lower, upper, count: each marker's distribution

    @classmethod
    def from_tables(cls, cluster: pl.DataFrame, global_: pl.DataFrame) -> Statistics:
        """Assemble statistics from ready-made tables (subcluster statistics, tests).

        ``cluster`` needs cluster, marker, pos_frac, enrichment and n_cells; median, mean, de_z
        and de_rank default to null/0. ``global_`` needs marker; other columns get neutral defaults.
        """
        defaults = {"n_nan": pl.lit(0, pl.Int64), "median": pl.lit(None, pl.Float64), "mean": pl.lit(None, pl.Float64),
                    "de_z": pl.lit(0.0), "de_rank": pl.lit(None, pl.Int64)}
        cluster = cluster.with_columns([v.alias(k) for k, v in defaults.items() if k not in cluster.columns])
        g_defaults = {"global_median": pl.lit(0.0), "global_mean": pl.lit(0.0), "global_std": pl.lit(1.0),
                      "threshold": pl.lit(None, pl.Float64), "threshold_source": pl.lit("quantile"),
                      "threshold_op": pl.lit(">="), "threshold_method": pl.lit("quantile"),
                      "threshold_quality": pl.lit(None, pl.Float64), "negative_median": pl.lit(None, pl.Float64),
                      "positive_share": pl.lit(None, pl.Float64), "flat": pl.lit(False), "n_nonzero": pl.lit(0, pl.Int64),
                      "n_nan": pl.lit(0, pl.Int64)}
        global_ = global_.with_columns([v.alias(k) for k, v in g_defaults.items() if k not in global_.columns])
        if "enrichment_reference" not in global_.columns:
            global_ = global_.with_columns(pl.col("global_median").alias("enrichment_reference"))
        order = natural_order(cluster["cluster"].to_list())
        counts = dict(cluster.group_by("cluster").agg(pl.col("n_cells").max()).iter_rows())
        clusters = pl.DataFrame({"cluster": order, "n_cells": [int(counts[c]) for c in order]},
                                schema={"cluster": pl.Utf8, "n_cells": pl.Int64})
        return cls(global_=global_, cluster=cluster, clusters=clusters, markers=global_["marker"].to_list())

    @property
    def cluster_ids(self) -> list[str]:
        return self.clusters["cluster"].to_list()

    @property
    def flat_markers(self) -> list[str]:
        return self.global_.filter(pl.col("flat"))["marker"].to_list()


_HISTOGRAM_SCHEMA = {"marker": pl.Utf8, "lower": pl.Float64, "upper": pl.Float64, "count": pl.Int64}
_FLOAT_COLUMNS = ("global_median", "global_mean", "global_std", "threshold", "threshold_quality", "negative_median",
                  "enrichment_reference", "positive_share")


def natural_key(label: str) -> tuple:
    """Sort key putting "2" before "10" and "c2" before "c10"."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.findall(r"\d+|\D+", label))


def natural_order(labels) -> list[str]:
    return sorted({str(x) for x in labels}, key=natural_key)


def cluster_codes(clusters) -> tuple[np.ndarray, list[str]]:
    """Each cell's cluster as an integer code into the labels (as text) in natural order.

    Labels are hashed once per cell (a categorical column only through its codes) and turned into
    text once per distinct label, never a Python string per cell."""
    raw = clusters.array if isinstance(clusters, pd.Series) else clusters
    if not isinstance(raw, pd.Categorical):
        raw = np.asarray(raw)
        raw = raw.ravel() if raw.ndim else raw.reshape(1)
    codes, uniques = pd.factorize(raw, use_na_sentinel=False)
    # labels equal as text are one cluster (1 and "1"), as when every label was made text first
    text, inverse = np.unique(np.asarray(uniques, dtype=object).astype(str), return_inverse=True)
    order = natural_order(text)
    position = {label: i for i, label in enumerate(order)}
    remap = np.array([position[t] for t in text], dtype=np.int64)[inverse] if len(text) else np.zeros(0, np.int64)
    return remap[codes] if len(codes) else np.zeros(0, np.int64), order


def column_values(matrix, j: int) -> np.ndarray:
    """Column ``j`` as a new array, infinite values made missing (NaN) like NaN itself: float32
    when the matrix is (every value of it exact, half the memory of float64), else float64."""
    column = matrix[:, [j]].toarray().ravel() if sp.issparse(matrix) else matrix[:, j]
    values = np.array(column, dtype=np.float32 if column.dtype == np.float32 else np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        values[infinite] = np.nan
    return values


def is_dask_array(matrix) -> bool:
    """Whether ``matrix`` is a dask array (out-of-core input), without importing dask."""
    return type(matrix).__module__.split(".")[0] == "dask"


def checked_inputs(matrix, clusters, markers: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """The marker names as text, each cell's cluster code and the cluster labels in natural order,
    after checking that the matrix has a column per marker and a row per label."""
    markers = [str(m) for m in markers]
    if matrix.ndim != 2 or matrix.shape[1] != len(markers):
        raise InputError(f"statistics: the matrix has shape {matrix.shape} but {len(markers)} marker names were given")
    codes, order = cluster_codes(clusters)
    if codes.shape[0] != matrix.shape[0]:
        raise InputError(f"statistics: {codes.shape[0]} cluster labels for {matrix.shape[0]} cells")
    return markers, codes, order


def compute_statistics(
    matrix,
    clusters,
    markers: Sequence[str],
    scoring: ScoringParams,
    thresholds: dict[str, tuple[str, float]] | None = None,
    global_: pl.DataFrame | None = None,
    ranges: tuple[np.ndarray, np.ndarray] | None = None,
    rescale_gate: float | None = None,
) -> Statistics:
    """Global and per-cluster statistics of the resolved marker columns.

    ``matrix``: cells x len(markers), dense or scipy sparse (one column densified at a time), or a
    dask array chunked by rows (statistics from partial aggregates per chunk, :mod:`ctr.stats.streaming`);
    ``clusters``: one label per cell; ``thresholds``: panel marker -> (op, value) absolute cuts
    replacing the data-driven split. NaN values are missing: excluded and never positive.
    ``global_``: the global table of an earlier call on the same cells (refinement relabels cells;
    global statistics do not depend on the labels), reused instead of recomputed. ``ranges``: each
    column's finite (min, max) when the caller has them (saves a dask array one pass).
    ``rescale_gate``: where a rescale around manual gates put every marker's gate (the data
    profile's ``gate``); positivity ``auto`` cuts there (:func:`summarise_marker`).
    """
    markers, codes, order = checked_inputs(matrix, clusters, markers)
    if is_dask_array(matrix):  # larger than memory: partial aggregates per chunk (ctr.stats.streaming)
        from ctr.stats.streaming import streaming_statistics

        return streaming_statistics(matrix, codes, order, markers, scoring, thresholds or {}, global_, ranges,
                                    rescale_gate)
    n_clusters = len(order)
    if sp.issparse(matrix):
        matrix = matrix.tocsc()
    thresholds = thresholds or {}

    n_cells = np.bincount(codes, minlength=n_clusters)
    known = {row["marker"]: MarkerSummary(**row) for row in global_.iter_rows(named=True)} if global_ is not None else {}

    def one_marker(j: int) -> tuple[MarkerSummary, dict | None, pl.DataFrame]:
        marker = markers[j]
        values = column_values(matrix, j)
        missing = np.isnan(values)
        if missing.any():
            v, c = values[~missing], codes[~missing]
            n_valid = np.bincount(c, minlength=n_clusters)
        else:
            v, c, n_valid = values, codes, n_cells
        del missing
        # the sums run in cell order and in float64, whatever the column's type; the float64
        # copy is dropped before the sort, so a marker never holds both
        exact = v.astype(np.float64)
        sums = np.bincount(c, weights=exact, minlength=n_clusters)
        summary = known.get(marker)
        moments = column_moments(exact) if summary is None and exact.size else None
        del exact
        ordered = _sorted_values(v, c, n_clusters)  # the one sort of this marker, shared by every statistic
        del v, c
        histogram = None
        if summary is None:
            summary = summarise_marker(marker, values, scoring, thresholds.get(marker), sorted_valid=ordered[0],
                                       moments=moments, rescale_gate=rescale_gate)
            histogram = marker_histogram(marker, ordered[0])
        del values
        return summary, histogram, _marker_cluster_stats(ordered, n_cells, n_valid, sums, summary, scoring)

    summaries: list[MarkerSummary] = []
    frames: list[pl.DataFrame] = []
    histograms: list[dict] = []
    with steps(len(markers), "statistics", unit="marker") as advance, _marker_pool(matrix.shape[0], len(markers)) as pool:
        # markers are independent and numpy's sorts release the GIL: one thread per core;
        # results are taken in marker order, so the tables do not depend on the threads
        for summary, histogram, frame in pool.map(one_marker, range(len(markers))):
            summaries.append(summary)
            frames.append(frame)
            if histogram is not None:
                histograms.append(histogram)
            advance(1)

    return assemble_statistics(summaries, frames, histograms, order, markers, n_cells)


def assemble_statistics(summaries: list[MarkerSummary], frames: list[pl.DataFrame], histograms: list[dict],
                        order: list[str], markers: list[str], n_cells: np.ndarray) -> Statistics:
    """The :class:`Statistics` of per-marker summaries, per-marker cluster frames (:func:`cluster_frame`)
    and drawn histograms (:func:`marker_histogram`), whichever producer computed them."""
    columns = [f.name for f in fields(MarkerSummary)]
    global_ = pl.DataFrame(
        {name: [getattr(s, name) for s in summaries] for name in columns},
        schema_overrides={name: pl.Float64 for name in _FLOAT_COLUMNS},
    ).select(columns)
    cluster = _with_de_rank(pl.concat(frames) if frames else _empty_cluster_frame(), order, markers)
    clusters_df = pl.DataFrame({"cluster": order, "n_cells": n_cells.astype(np.int64)}, schema={"cluster": pl.Utf8, "n_cells": pl.Int64})
    drawn = [pl.DataFrame(h, schema=_HISTOGRAM_SCHEMA) for h in histograms]
    return Statistics(global_=global_, cluster=cluster, clusters=clusters_df, markers=markers,
                      histograms=pl.concat(drawn) if drawn else None)


# Below this many cells a marker takes about a millisecond and a thread would cost more than it saves.
_THREADS_FROM_CELLS = 50_000


@contextmanager
def _marker_pool(n_cells: int, n_markers: int):
    """Something with ``map``: a pool of one thread per available core for large inputs, else
    the calling thread."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cores, n_markers)
    if n_cells < _THREADS_FROM_CELLS or workers < 2:
        yield _Serial()
        return
    # the threads start from a trimmed heap, and what they freed in their own arenas (tens of MiB
    # at 10^6 cells) goes back when they are done, not with the next stage's memory on top
    release_freed_memory()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctr-stats")
    try:
        yield pool
    finally:  # on an interrupt, markers not yet started are dropped rather than run
        pool.shutdown(wait=True, cancel_futures=True)
        release_freed_memory()


class _Serial:
    @staticmethod
    def map(fn, items):
        return map(fn, items)


def _code_dtype(n_clusters: int) -> type:
    """The narrowest integer type holding a cluster code (numpy radix-sorts 8- and 16-bit integers)."""
    return np.uint8 if n_clusters <= 2**8 else np.int16 if n_clusters <= 2**15 else np.int64


def _sorted_values(values: np.ndarray, codes: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The values in ascending order (float64) and the cluster code of each (the narrowest
    integer type), by one sort.

    Values that are exactly float32 (anything read from an .h5ad of float32) are sorted as one
    uint64 key per cell, the float32 bits made order-preserving above the cluster code: numpy's
    vectorised integer sort is several times faster than an argsort of the floats. Other values
    take one argsort. Either way ties end in an order that does not matter (average ranks)."""
    narrow = values if values.dtype == np.float32 else values.astype(np.float32)
    small = _code_dtype(n_clusters)
    if codes.size and int(codes.max()) < 2**32 and (narrow is values or np.array_equal(narrow, values)):
        zero = narrow == 0
        n_zero = int(np.count_nonzero(zero))
        if n_zero and n_zero >= values.size // 8:
            # a mass of zeros (dropouts, counts) is one tie group whose order does not matter:
            # only the other values are sorted, and the zeros' codes go between the negatives
            # and the positives
            sv, sc = _sorted_values(narrow[~zero], codes[~zero], n_clusters)
            at = int(np.searchsorted(sv, 0.0))
            return (np.concatenate((sv[:at], np.zeros(n_zero), sv[at:])),
                    np.concatenate((sc[:at], codes[zero].astype(small), sc[at:])))
        del zero
        bits = (narrow + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0: one tie group
        bits = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
        del narrow
        # built and sorted in place: each marker's thread holds one key array, not four
        key = bits.astype(np.uint64)
        del bits
        key <<= np.uint64(32)
        key |= np.ascontiguousarray(codes, dtype=np.int64).view(np.uint64)  # codes >= 0: the same bits
        key.sort()
        sorted_codes = (key & np.uint64(0xFFFFFFFF)).astype(small)
        key >>= np.uint64(32)
        bits = key.astype(np.uint32)
        del key
        bits = np.where(bits >> 31, bits & np.uint32(0x7FFFFFFF), ~bits)
        return bits.view(np.float32).astype(np.float64), sorted_codes
    del narrow
    order = np.argsort(values)
    return values[order].astype(np.float64, copy=False), codes[order].astype(small, copy=False)


def _marker_cluster_stats(ordered: tuple[np.ndarray, np.ndarray], n_cells: np.ndarray, n_valid: np.ndarray,
                          sums: np.ndarray, summary: MarkerSummary, scoring: ScoringParams) -> pl.DataFrame:
    """One marker's per-cluster table from its non-missing values sorted with their codes
    (``ordered``), the cells and non-missing values per cluster and the sums of the values."""
    n_clusters = n_cells.size
    sv, sc = ordered
    # one global ranking (average ranks of the tie groups); rank sums per cluster are sums of
    # half-integers, exact in float64 whatever the order of addition
    n = sv.size
    starts = np.flatnonzero(np.concatenate(([True], sv[1:] != sv[:-1]))) if n else np.zeros(0, np.int64)
    sizes = np.diff(np.append(starts, n))
    ranks = np.repeat(starts + (sizes + 1) / 2.0, sizes)
    del starts
    r1 = np.bincount(sc, weights=ranks, minlength=n_clusters)
    del ranks
    z = ranksum_z(r1, n_valid, n, tie_term_of_sizes(sizes))
    del sizes
    # each cluster's values in ascending order: a stable sort of the codes keeps the value order
    # (numpy radix-sorts 8- and 16-bit integers); only the middle two of each cluster are looked up
    grouped = np.argsort(sc, kind="stable")
    has = n_valid > 0
    first = np.cumsum(n_valid) - n_valid
    if n:
        lower = sv[grouped[np.where(has, first + (n_valid - 1) // 2, 0)]]
        upper = sv[grouped[np.where(has, first + n_valid // 2, 0)]]
        median = np.where(has, lower + (upper - lower) * 0.5, np.nan)  # linear interpolation, as polars
    else:
        median = np.full(n_clusters, np.nan)
    del grouped
    # every positivity rule is a cut on the value: the positive cells are the last in order
    n_pos = np.bincount(sc[n - int(np.count_nonzero(positive(sv, summary))):], minlength=n_clusters)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has, sums / n_valid, np.nan)
        pos_frac = np.where(has, n_pos / n_valid, np.nan)
    return cluster_frame(summary, scoring, n_cells, n_valid, median, mean, pos_frac, z)


def cluster_frame(summary: MarkerSummary, scoring: ScoringParams, n_cells: np.ndarray, n_valid: np.ndarray,
                  median: np.ndarray, mean: np.ndarray, pos_frac: np.ndarray, z: np.ndarray) -> pl.DataFrame:
    """One marker's per-cluster table from per-cluster arrays (indexed by cluster code): the
    enrichment of each cluster's centre, and a row for each cluster with cells."""
    n_clusters = n_cells.size
    centre = median if scoring.enrichment_center == "median" else mean
    enrichment = np.zeros(n_clusters) if summary.flat else (centre - summary.enrichment_reference) / summary.global_std
    present = n_cells > 0
    return pl.DataFrame({
        "code": np.arange(n_clusters, dtype=np.int64)[present],
        "marker": [summary.marker] * int(present.sum()),
        "n_cells": n_cells[present].astype(np.int64),
        "n_nan": (n_cells - n_valid)[present].astype(np.int64),
        "median": median[present], "mean": mean[present], "pos_frac": pos_frac[present],
        "enrichment": enrichment[present].astype(np.float64), "de_z": z[present],
    }, schema=_CLUSTER_SCHEMA, nan_to_null=True)  # NaN only where a cluster has no value: null, as before


_CLUSTER_SCHEMA = {"code": pl.Int64, "marker": pl.Utf8, "n_cells": pl.Int64, "n_nan": pl.Int64, "median": pl.Float64,
                   "mean": pl.Float64, "pos_frac": pl.Float64, "enrichment": pl.Float64, "de_z": pl.Float64}


def _empty_cluster_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=_CLUSTER_SCHEMA)


def _with_de_rank(cluster: pl.DataFrame, order: list[str], markers: list[str]) -> pl.DataFrame:
    """Add ``de_rank`` (1-based among the cluster's markers with de_z > 0, by de_z descending;
    tied z share the best rank, as in competition ranking) and replace cluster codes by labels; rows sorted by cluster then marker order."""
    ranked = (
        cluster.filter(pl.col("de_z") > 0)
        .with_columns(pl.col("de_z").rank("min", descending=True).over("code").cast(pl.Int64).alias("de_rank"))
        .select("code", "marker", "de_rank")
    )
    marker_pos = pl.DataFrame({"marker": markers, "_m": list(range(len(markers)))}, schema={"marker": pl.Utf8, "_m": pl.Int64})
    labels = pl.DataFrame({"code": list(range(len(order))), "cluster": order}, schema={"code": pl.Int64, "cluster": pl.Utf8})
    return (
        cluster.with_columns(pl.col("code").cast(pl.Int64))
        .join(ranked.with_columns(pl.col("code").cast(pl.Int64)), on=["code", "marker"], how="left")
        .join(labels, on="code")
        .join(marker_pos, on="marker")
        .sort(["code", "_m"])
        .select("cluster", "marker", "n_cells", "n_nan", "median", "mean", "pos_frac", "enrichment", "de_z", "de_rank")
    )
