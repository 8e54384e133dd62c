"""The statistics of a matrix larger than memory, chunk by chunk on Dask, in the one contract of
:class:`ctr.stats.Statistics` (the engine cannot tell which producer made them).

Every pass over the cells is a sum of per-chunk partial aggregates, so the same task graph runs on
Dask's threads or, when a ``dask.distributed`` client is active, on its cluster:

1. each marker's finite range ``[lo, hi]`` (given by the caller when the data checks counted it);
2. per (cluster, marker): non-missing count, sum and a histogram of ``BINS`` equal bins over
   ``(lo, hi]`` with the cells exactly at ``lo`` (the floor: zeros of dropout data) in a bin of
   their own; per marker: count, mean and sum of squared deviations (combined exactly), the
   non-zero count and a ``FINE_BINS`` histogram of the same form;
3. once each marker's positivity split is known: the positive cells per (cluster, marker).

Exact (as in memory up to float rounding): ``n_cells``, ``n_nan``, ``mean``, ``pos_frac`` (against
the split found), ``global_mean``, ``global_std``, ``flat``, ``n_nonzero``. Read off histograms, within
one bin width (docs/performance.md, "Out of core"): per-cluster ``median``, ``de_z`` (the exact
rank-sum z of the binned values), and everything the global distribution gives: the global median,
the positivity split, the negative median, the enrichment reference and the drawn histogram, which
come from the unchanged in-memory code (:func:`summarise_marker`) run on a sorted stand-in of at
most ``SKETCH_SIZE`` values with the marker's fine histogram.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import polars as pl

from ctr.data.chunked import reduce_row_chunks
from ctr.rules.params import ScoringParams
from ctr.stats.cluster_stats import Statistics, assemble_statistics, cluster_frame
from ctr.stats.global_stats import MarkerSummary, marker_histogram, positive, summarise_marker
from ctr.stats.ranksum import ranksum_z, tie_term_of_sizes

# Bins of each (cluster, marker) histogram over (lo, hi]: a cluster's median is within
# (hi - lo) / BINS of the exact one.
BINS = 1024
# Bins of each marker's global histogram, 64 per cluster bin: the global median and the split are
# found on values within (hi - lo) / FINE_BINS of the exact ones.
_PER_BIN_SHIFT = 6
FINE_BINS = BINS << _PER_BIN_SHIFT
# The most values the global stand-in of one marker holds (its quantiles are within 1 / SKETCH_SIZE).
SKETCH_SIZE = 1 << 18
# Rows a chunk is processed in at once, bounding the temporaries of a task.
_ROWS = 1 << 17


def streaming_statistics(
    matrix,
    codes: np.ndarray,
    order: list[str],
    markers: list[str],
    scoring: ScoringParams,
    thresholds: dict[str, tuple[str, float]],
    global_: pl.DataFrame | None = None,
    ranges: tuple[np.ndarray, np.ndarray] | None = None,
    rescale_gate: float | None = None,
) -> Statistics:
    """:func:`ctr.stats.compute_statistics` of a dask array (cells x markers, chunked by rows), from
    partial aggregates per chunk; ``codes``: each cell's cluster as an index into ``order``;
    ``ranges``: each marker's finite (min, max), when known (else the first pass). Runs on
    the active ``dask.distributed`` client when there is one, else on Dask's threads."""
    k = len(order)
    codes = codes.astype(np.int32 if k < 2**31 else np.int64)
    lo, hi = ranges if ranges is not None else reduce_row_chunks(matrix, _range_part, _range_add, per_row=codes)
    part = reduce_row_chunks(matrix, _histogram_part, _histogram_add, lo, hi, k, per_row=codes)
    count, mean, m2, nonzero, n_valid, sums, hist, fine = part
    std = np.sqrt(np.where(count > 0, m2 / np.maximum(count, 1), np.nan))

    known = {row["marker"]: MarkerSummary(**row) for row in global_.iter_rows(named=True)} if global_ is not None else {}
    summaries, histograms = [], []
    for j, marker in enumerate(markers):
        summary = known.get(marker)
        if summary is None:
            sketch = _sketch(fine[j], lo[j], hi[j], FINE_BINS)
            summary = summarise_marker(marker, sketch, scoring, thresholds.get(marker), sorted_valid=sketch,
                                       rescale_gate=rescale_gate)
            flat = not (std[j] > 0)
            summary = replace(summary, global_mean=float(mean[j]) if count[j] else float("nan"), global_std=float(std[j]),
                              flat=flat, n_nonzero=int(nonzero[j]), n_nan=int(matrix.shape[0] - count[j]),
                              positive_share=0.0 if flat else summary.positive_share)
            histograms.append(marker_histogram(marker, sketch))
        summaries.append(summary)
    n_pos = reduce_row_chunks(matrix, _positive_part, _add, summaries, k, per_row=codes)

    n_cells = np.bincount(codes, minlength=k)
    frames = []
    for j, summary in enumerate(summaries):
        counts = hist[:, j, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            cluster_mean = np.where(n_valid[:, j] > 0, sums[:, j] / n_valid[:, j], np.nan)
            pos_frac = np.where(n_valid[:, j] > 0, n_pos[:, j] / n_valid[:, j], np.nan)
        frames.append(cluster_frame(
            summary, scoring, n_cells, n_valid[:, j], _binned_medians(counts, lo[j], hi[j], BINS), cluster_mean, pos_frac,
            _binned_ranksum_z(counts)))
    return assemble_statistics(summaries, frames, histograms, order, markers, n_cells)


# ---- the passes: one partial aggregate per chunk, summed ----------------------------------------


def _rows(block) -> Iterator[tuple[int, np.ndarray]]:
    """A chunk as float64 in pieces of ``_ROWS`` rows, infinite values made missing (NaN)."""
    for start in range(0, max(block.shape[0], 1), _ROWS):
        x = np.array(block[start:start + _ROWS], dtype=np.float64)
        x[np.isinf(x)] = np.nan
        yield start, x


def _columns(block) -> Iterator[tuple[int, Iterator[np.ndarray]]]:
    """Pieces of ``_ROWS`` rows of a chunk, each as its markers' values one after another (float64,
    contiguous, infinite values made missing); the piece is reordered in its stored dtype."""
    for start in range(0, block.shape[0], _ROWS):
        piece = np.asfortranarray(block[start:start + _ROWS])  # each marker's values contiguous

        def markers(piece=piece) -> Iterator[np.ndarray]:
            for j in range(piece.shape[1]):
                x = piece[:, j].astype(np.float64)
                x[np.isinf(x)] = np.nan
                yield x

        yield start, markers()


def _range_part(block, codes) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    n_markers = block.shape[1]
    lo, hi = np.full(n_markers, np.nan), np.full(n_markers, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing marker in this chunk
        for _, x in _rows(block):
            if x.size:
                lo, hi = np.fmin(lo, np.nanmin(x, axis=0)), np.fmax(hi, np.nanmax(x, axis=0))
    return lo, hi


def _range_add(a, b):
    return np.fmin(a[0], b[0]), np.fmax(a[1], b[1])


def _bin_index(x: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Each value's bin: 0 for exactly ``lo`` (the floor), else 1..bins over (lo, hi] in equal
    widths; monotone in the value, so bins keep the values' order. ``x`` without missing values."""
    span = hi - lo if hi > lo else 1.0
    scaled = x - lo
    scaled *= bins / span
    index = scaled.astype(np.intp)
    np.minimum(index, bins - 1, out=index)
    index += 1
    index[x <= lo] = 0
    return index


def _histogram_part(block, codes, lo, hi, n_clusters):
    n_markers = len(lo)
    moments = (np.zeros(n_markers), np.zeros(n_markers), np.zeros(n_markers))
    nonzero = np.zeros(n_markers)
    n_valid, sums = np.zeros((n_markers, n_clusters)), np.zeros((n_markers, n_clusters))
    hist = np.zeros((n_markers, n_clusters * (BINS + 1)), np.int64)
    fine = np.zeros((n_markers, FINE_BINS + 1), np.int64)
    c, mu, d2 = np.zeros(n_markers), np.zeros(n_markers), np.zeros(n_markers)
    for start, columns in _columns(block):
        rows = codes[start:start + _ROWS].astype(np.int64)
        per_cluster = np.bincount(rows, minlength=n_clusters)
        # one marker at a time, its values contiguous: its histograms stay in the processor's cache
        for j, x in enumerate(columns):
            valid = ~np.isnan(x)
            v, r = (x, rows) if valid.all() else (x[valid], rows[valid])
            n_valid[j] += per_cluster if v is x else np.bincount(r, minlength=n_clusters)
            sums[j] += np.bincount(r, weights=v, minlength=n_clusters)
            c[j] = v.size
            mu[j] = v.mean() if v.size else 0.0
            d2[j] = float(np.square(v - mu[j]).sum())
            nonzero[j] += np.count_nonzero(v)
            f = _bin_index(v, lo[j], hi[j], FINE_BINS)
            fine[j] += np.bincount(f, minlength=FINE_BINS + 1)
            coarse = (f + (1 << _PER_BIN_SHIFT) - 1) >> _PER_BIN_SHIFT  # fine 1..64 -> 1, 65..128 -> 2; the floor stays 0
            hist[j] += np.bincount(r * (BINS + 1) + coarse, minlength=hist.shape[1])
        moments = _merge_moments(moments, (c.copy(), mu.copy(), d2.copy()))
    hist = hist.reshape(n_markers, n_clusters, BINS + 1).transpose(1, 0, 2)
    return (*moments, nonzero, n_valid.T, sums.T, hist, fine)


def _merge_moments(a, b):
    """Count, mean and sum of squared deviations of two parts together (Chan et al.): exact
    whatever the chunking, without the cancellation of a sum of squares."""
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mb - ma
        mean = np.where(n > 0, ma + delta * np.where(n > 0, nb / n, 0.0), 0.0)
        m2 = sa + sb + np.where(n > 0, delta**2 * na * nb / np.where(n > 0, n, 1.0), 0.0)
    return n, mean, m2


def _histogram_add(a, b):
    return (*_merge_moments(a[:3], b[:3]), *(x + y for x, y in zip(a[3:], b[3:])))


def _positive_part(block, codes, summaries: list[MarkerSummary], n_clusters):
    n_pos = np.zeros((n_clusters, len(summaries)))
    for start, columns in _columns(block):
        rows = codes[start:start + _ROWS]
        for j, (x, summary) in enumerate(zip(columns, summaries)):
            n_pos[:, j] += np.bincount(rows, weights=positive(x, summary), minlength=n_clusters)
    return n_pos


def _add(a, b):
    return a + b


# ---- reading statistics off the histograms ------------------------------------------------------


def _bin_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    return lo + (hi - lo) * np.arange(bins + 1) / bins if hi > lo else np.full(bins + 1, lo)


def _sketch(counts: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """A sorted stand-in for one marker's values from its histogram (bin 0: exactly ``lo``):
    at most ``SKETCH_SIZE`` values, each bin holding its share of them spread evenly across it."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0)
    size = min(total, SKETCH_SIZE)
    cum = np.round(np.cumsum(counts) * (size / total)).astype(np.int64)
    per_bin = np.diff(np.concatenate(([0], cum)))
    edges = _bin_edges(lo, hi, bins)
    bin_of = np.repeat(np.arange(counts.size), per_bin)
    within = np.arange(size) - np.repeat(cum - per_bin, per_bin)  # position inside its bin
    left = np.where(bin_of > 0, edges[np.maximum(bin_of - 1, 0)], lo)
    width = np.where(bin_of > 0, (hi - lo) / bins, 0.0)
    return left + width * (within + 0.5) / np.maximum(per_bin[bin_of], 1)


def _binned_medians(counts: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Each cluster's median (numpy's: the mean of the two middle values) from its histogram row,
    values spread evenly inside their bin; the floor bin is exact."""
    n = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)

    def value_at(rank: np.ndarray) -> np.ndarray:  # 0-based rank in each cluster's sorted values
        b = np.argmax(cum > rank[:, None], axis=1)  # the first bin holding the rank
        before = np.take_along_axis(cum, b[:, None], axis=1)[:, 0] - counts[np.arange(len(b)), b]
        inside = counts[np.arange(len(b)), b]
        left = lo + (hi - lo) * (b - 1) / bins
        spread = left + (hi - lo) / bins * (rank - before + 0.5) / np.maximum(inside, 1)
        return np.where(b == 0, lo, spread)

    has = n > 0
    lower = value_at(np.where(has, (n - 1) // 2, 0))
    upper = value_at(np.where(has, n // 2, 0))
    return np.where(has, lower + (upper - lower) * 0.5, np.nan)


def _binned_ranksum_z(counts: np.ndarray) -> np.ndarray:
    """One-vs-rest rank-sum z of each cluster (rows of ``counts``, clusters x bins): the exact
    statistic of the values rounded to their bin, each bin one tie group at its average rank."""
    total = counts.sum(axis=0)
    n = int(total.sum())
    mid_rank = np.cumsum(total) - total + (total + 1) / 2.0
    r1 = counts @ mid_rank
    return ranksum_z(r1, counts.sum(axis=1), n, tie_term_of_sizes(total[total > 0]))
