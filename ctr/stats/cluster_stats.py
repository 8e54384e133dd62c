"""Per (cluster, marker) statistics with polars group-bys, and the Statistics bundle."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from ctr.errors import InputError
from ctr.rules.params import ScoringParams
from ctr.stats.global_stats import MarkerSummary, positive, summarise_marker
from ctr.stats.ranksum import ranksum_z


@dataclass
class Statistics:
    """``global_`` (one row per marker), ``cluster`` (one row per (cluster, marker)) and
    ``clusters`` (cluster, n_cells in natural order); columns in docs/internals.md."""

    global_: pl.DataFrame
    cluster: pl.DataFrame
    clusters: pl.DataFrame
    markers: list[str] = field(default_factory=list)

    @property
    def cluster_ids(self) -> list[str]:
        return self.clusters["cluster"].to_list()

    @property
    def flat_markers(self) -> list[str]:
        return self.global_.filter(pl.col("flat"))["marker"].to_list()


def natural_key(label: str) -> tuple:
    """Sort key putting "2" before "10" and "c2" before "c10"."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.findall(r"\d+|\D+", label))


def natural_order(labels) -> list[str]:
    return sorted({str(x) for x in labels}, key=natural_key)


def _column(matrix, j: int) -> np.ndarray:
    if sp.issparse(matrix):
        return np.asarray(matrix[:, [j]].toarray(), dtype=np.float64).ravel()
    return np.asarray(matrix[:, j], dtype=np.float64)


def compute_statistics(
    matrix,
    clusters,
    markers: Sequence[str],
    scoring: ScoringParams,
    thresholds: dict[str, tuple[str, float]] | None = None,
) -> Statistics:
    """Global and per-cluster statistics of the resolved marker columns.

    ``matrix``: cells x len(markers), dense or scipy sparse (one column densified at a time);
    ``clusters``: one label per cell; ``thresholds``: panel marker -> (op, value) absolute cuts
    replacing the quantile threshold. NaN values are missing: excluded and never positive.
    """
    markers = [str(m) for m in markers]
    labels = np.asarray(clusters).astype(str)
    if matrix.ndim != 2 or matrix.shape[1] != len(markers):
        raise InputError(f"statistics: the matrix has shape {matrix.shape} but {len(markers)} marker names were given")
    if labels.shape[0] != matrix.shape[0]:
        raise InputError(f"statistics: {labels.shape[0]} cluster labels for {matrix.shape[0]} cells")
    order = natural_order(labels)
    uniq, codes = np.unique(labels, return_inverse=True)
    # codes follow np.unique's lexical order; remap to the natural order
    position = {label: i for i, label in enumerate(order)}
    remap = np.array([position[u] for u in uniq], dtype=np.int64)
    codes = remap[codes] if len(uniq) else codes.astype(np.int64)
    n_clusters = len(order)
    if sp.issparse(matrix):
        matrix = matrix.tocsc()
    thresholds = thresholds or {}

    summaries: list[MarkerSummary] = []
    frames: list[pl.DataFrame] = []
    n_cells = np.bincount(codes, minlength=n_clusters)
    for j, marker in enumerate(markers):
        values = _column(matrix, j)
        summary = summarise_marker(marker, values, scoring, thresholds.get(marker))
        summaries.append(summary)
        frames.append(_marker_cluster_stats(values, codes, n_clusters, summary, scoring))

    global_ = pl.DataFrame(
        {
            "marker": [s.marker for s in summaries],
            "global_median": [s.global_median for s in summaries],
            "global_mean": [s.global_mean for s in summaries],
            "global_std": [s.global_std for s in summaries],
            "threshold": [s.threshold for s in summaries],
            "threshold_source": [s.threshold_source for s in summaries],
            "threshold_op": [s.threshold_op for s in summaries],
            "flat": [s.flat for s in summaries],
            "n_nonzero": [s.n_nonzero for s in summaries],
            "n_nan": [s.n_nan for s in summaries],
        },
        schema_overrides={"global_median": pl.Float64, "global_mean": pl.Float64, "global_std": pl.Float64, "threshold": pl.Float64},
    )
    cluster = _with_de_rank(pl.concat(frames) if frames else _empty_cluster_frame(), order, markers)
    clusters_df = pl.DataFrame({"cluster": order, "n_cells": n_cells.astype(np.int64)}, schema={"cluster": pl.Utf8, "n_cells": pl.Int64})
    return Statistics(global_=global_, cluster=cluster, clusters=clusters_df, markers=markers)


def _marker_cluster_stats(values, codes, n_clusters, summary: MarkerSummary, scoring: ScoringParams) -> pl.DataFrame:
    valid = ~np.isnan(values)
    pos = positive(values, summary)
    frame = pl.DataFrame({"code": codes, "x": values, "pos": pos}).with_columns(pl.col("x").fill_nan(None))
    agg = (
        frame.group_by("code")
        .agg(
            pl.len().alias("n_cells"),
            pl.col("x").null_count().alias("n_nan"),
            pl.col("x").median().alias("median"),
            pl.col("x").mean().alias("mean"),
            pl.col("pos").sum().alias("n_pos"),
        )
        .sort("code")
    )
    # clusters with no cell at all do not occur (labels come from the cells)
    z = ranksum_z(values[valid], codes[valid], n_clusters)
    centre = agg["median"] if scoring.enrichment_center == "median" else agg["mean"]
    if summary.flat:
        enrichment = pl.Series([0.0] * agg.height)
    else:
        enrichment = (centre - summary.global_median) / summary.global_std
    n_valid = agg["n_cells"] - agg["n_nan"]
    return agg.select(
        pl.col("code"),
        pl.lit(summary.marker).alias("marker"),
        pl.col("n_cells").cast(pl.Int64),
        pl.col("n_nan").cast(pl.Int64),
        pl.col("median").cast(pl.Float64),
        pl.col("mean").cast(pl.Float64),
        pl.when(n_valid > 0).then(pl.col("n_pos") / n_valid).otherwise(None).cast(pl.Float64).alias("pos_frac"),
        enrichment.cast(pl.Float64).alias("enrichment"),
        pl.Series("de_z", z[agg["code"].to_numpy()], dtype=pl.Float64),
    )


def _empty_cluster_frame() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"code": pl.Int64, "marker": pl.Utf8, "n_cells": pl.Int64, "n_nan": pl.Int64, "median": pl.Float64,
                "mean": pl.Float64, "pos_frac": pl.Float64, "enrichment": pl.Float64, "de_z": pl.Float64}
    )


def _with_de_rank(cluster: pl.DataFrame, order: list[str], markers: list[str]) -> pl.DataFrame:
    """Add ``de_rank`` (1-based among the cluster's markers with de_z > 0, by de_z desc then
    marker name) and replace cluster codes by labels; rows sorted by cluster then marker order."""
    ranked = (
        cluster.filter(pl.col("de_z") > 0)
        .sort(["code", "de_z", "marker"], descending=[False, True, False])
        .with_columns((pl.int_range(pl.len()).over("code") + 1).cast(pl.Int64).alias("de_rank"))
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
