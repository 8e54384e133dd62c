"""Per (cluster, cell type) evidence and score (semantics §5), vectorised over clusters.

:class:`ClusterEvidence` holds the per-cluster statistics as (cluster x marker) arrays;
:func:`score_node` turns one cell type into arrays over all clusters at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import LevelParams, ResolvedParams, ScoringParams
from ctr.stats import Statistics
from ctr.stats.global_stats import positive_values


@dataclass
class ClusterEvidence:
    """The statistics of a set of clusters as dense (cluster x marker) arrays (NaN = no value)."""

    clusters: list[str]
    n_cells: np.ndarray
    markers: list[str]  # panel names, the columns
    column: dict[str, int]
    pos_frac: np.ndarray
    enrichment: np.ndarray
    median: np.ndarray
    mean: np.ndarray
    de_z: np.ndarray
    de_rank: np.ndarray
    threshold: np.ndarray  # per marker
    reference: np.ndarray  # per marker: what enrichment is measured from
    global_std: np.ndarray
    flat: np.ndarray
    strict: np.ndarray  # per marker: positive means value > threshold (else >=)
    nonzero: np.ndarray  # per marker: positive also needs value > 0 (the quantile rule)

    def positive_cells(self, block, cols: Sequence[int]) -> np.ndarray:
        """(cells x len(cols)) whether each cell of ``block`` (cells x every marker column) is
        positive for each of the columns ``cols``, by that marker's split
        (:func:`ctr.stats.global_stats.positive_values`)."""
        cols = list(cols)
        x = block[:, cols]
        x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
        return positive_values(x, self.threshold[cols], self.strict[cols], self.nonzero[cols], self.flat[cols])

    @classmethod
    def from_statistics(cls, stats: Statistics) -> ClusterEvidence:
        clusters = stats.cluster_ids
        markers = stats.global_["marker"].to_list()
        row = {c: i for i, c in enumerate(clusters)}
        column = {m: j for j, m in enumerate(markers)}
        table = stats.cluster
        ri = np.array([row[c] for c in table["cluster"].to_list()], dtype=np.int64)
        ci = np.array([column[m] for m in table["marker"].to_list()], dtype=np.int64)

        def wide(name: str) -> np.ndarray:
            out = np.full((len(clusters), len(markers)), np.nan)
            out[ri, ci] = table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            return out

        g = stats.global_
        return cls(
            clusters=clusters,
            n_cells=stats.clusters["n_cells"].to_numpy().astype(np.int64),
            markers=markers,
            column=column,
            pos_frac=wide("pos_frac"),
            enrichment=wide("enrichment"),
            median=wide("median"),
            mean=wide("mean"),
            de_z=wide("de_z"),
            de_rank=wide("de_rank"),
            threshold=g["threshold"].to_numpy().astype(np.float64),
            reference=g["enrichment_reference"].to_numpy().astype(np.float64),
            global_std=g["global_std"].to_numpy().astype(np.float64),
            flat=g["flat"].to_numpy().astype(bool),
            strict=(g["threshold_op"] == ">").to_numpy().astype(bool),
            nonzero=(g["threshold_source"] == "quantile").to_numpy().astype(bool),
        )

    @property
    def panel_size(self) -> int:
        return len(self.markers)


def unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def resolved_columns(names: list[str], mapping: dict[str, str], ev: ClusterEvidence) -> tuple[list[str], list[int], list[str]]:
    """Split ruleset marker names into (resolved names, their columns, missing names)."""
    found, cols, missing = [], [], []
    for name in unique(names):
        panel = mapping.get(name)
        if panel is not None and panel in ev.column:
            found.append(name)
            cols.append(ev.column[panel])
        else:
            missing.append(name)
    return found, cols, missing


def de_k(panel_size: int, scoring: ScoringParams) -> int:
    """K = clamp(ceil(panel_size * de_top_frac), de_min_k, de_max_k)."""
    return int(min(max(math.ceil(panel_size * scoring.de_top_frac), scoring.de_min_k), scoring.de_max_k))


def document_frequency(ruleset: Ruleset, mapping: dict[str, str]) -> dict[str, int]:
    """How many cell types list each marker as positive (keyed by panel name when resolved,
    so two spellings of one marker count as one)."""
    counts: dict[str, int] = {}
    for node in ruleset.walk():
        for key in {mapping.get(m, m) for m in node.marker_names}:
            counts[key] = counts.get(key, 0) + 1
    return counts


def anti_top_k(n_anti: int, how: str) -> int:
    """How many of ``n_anti`` anti-markers the top-k aggregations average: two for top2mean; for
    top_quarter the largest quarter, at least two (the same as top2mean up to eight anti-markers).

    The largest of many noisy values grows with their number: a type that lists every other
    lineage as 'not expressed' (16 anti-markers) would read the spill-over of its two worst as a
    conflict. Averaging a fixed share keeps that chance the same however many are listed."""
    return 2 if how == "top2mean" else max(2, math.ceil(n_anti / 4))


def aggregate(values: np.ndarray, how: str) -> np.ndarray:
    """Aggregate (cluster x anti-marker) values per cluster: max, mean, top2mean (the mean of the
    two largest; with one anti-marker, that marker) or top_quarter (the mean of the largest
    quarter, at least two: see :func:`anti_top_k`)."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    if how == "max":
        return values.max(axis=1)
    if how == "mean":
        return values.mean(axis=1)
    top = np.sort(values, axis=1)[:, -anti_top_k(values.shape[1], how):]
    return top.mean(axis=1)


def _mean_or_zero(values: np.ndarray) -> np.ndarray:
    # mean over resolved markers ignoring clusters without a value; no value at all -> 0
    counts = np.sum(~np.isnan(values), axis=1)
    sums = np.nansum(values, axis=1)
    return np.divide(sums, counts, out=np.zeros(values.shape[0]), where=counts > 0)


@dataclass
class NodeScores:
    """One cell type's evidence and score over all clusters (arrays indexed like ``ev.clusters``)."""

    node: CellType
    thresholds: LevelParams
    positive: list[str]  # resolved positive markers (ruleset names)
    positive_cols: list[int]
    missing: list[str]  # positive markers not in the panel
    anti: list[str]
    anti_cols: list[int]
    anti_missing: list[str]
    on: np.ndarray  # (cluster x resolved positive) bool
    coverage: np.ndarray
    panel_coverage: np.ndarray
    mean_enrichment: np.ndarray
    mean_positive: np.ndarray
    de_component: np.ndarray
    coverage_term: np.ndarray
    anti_enrichment: np.ndarray  # aggregated max(enrichment, 0)
    anti_pos_frac: np.ndarray  # aggregated pos_frac
    anti_penalty: np.ndarray
    score: np.ndarray
    needed: int  # measured positive markers needed to judge this type on this panel
    required_cols: list[int] = field(default_factory=list)  # columns of the resolved `require` markers

    @property
    def n_listed(self) -> int:
        return len(self.positive) + len(self.missing)

    @property
    def assessable(self) -> bool:
        """Enough of the type's positive markers are measured to judge it."""
        return len(self.positive) >= self.needed


def score_node(
    ev: ClusterEvidence,
    node: CellType,
    mapping: dict[str, str],
    params: ResolvedParams,
    doc_freq: dict[str, int],
    n_cell_types: int,
) -> NodeScores:
    """Coverage, enrichment, DE component, anti-marker penalty and score of ``node`` in every cluster."""
    scoring = params.scoring
    lp = params.for_node(node)
    pos, cols, missing = resolved_columns(node.marker_names, mapping, ev)
    anti, anti_cols, anti_missing = resolved_columns(node.anti_names, mapping, ev)
    n_clusters = len(ev.clusters)
    n_listed = len(pos) + len(missing)

    pf = ev.pos_frac[:, cols]
    with np.errstate(invalid="ignore"):
        on = pf >= lp.min_pos_frac  # NaN compares false: not on
    # coverage counts the markers the panel measures: a panel that lacks a marker says nothing
    # about the cells (panel_coverage reports how much of the type's list is measured)
    coverage = on.sum(axis=1) / len(pos) if pos else np.zeros(n_clusters)
    panel_coverage = np.full(n_clusters, len(pos) / n_listed if n_listed else 0.0)
    mean_enrichment = _mean_or_zero(ev.enrichment[:, cols])
    mean_positive = _mean_or_zero(pf)

    k = de_k(ev.panel_size, scoring)
    ranks = ev.de_rank[:, cols]
    commonness = np.array([doc_freq.get(mapping[m], 0) / n_cell_types for m in pos]) if pos else np.zeros(0)
    with np.errstate(invalid="ignore"):
        in_top = ranks <= k  # NaN rank (not up-regulated) is outside the top K
        rank_weight = np.where(in_top, (k - ranks + 1) / k, 0.0)
    bonus = rank_weight * (1.0 - commonness**scoring.de_commonness_alpha)
    de_component = scoring.de_bonus * (bonus.mean(axis=1) if pos else np.zeros(n_clusters))

    anti_e = np.nan_to_num(np.maximum(ev.enrichment[:, anti_cols], 0.0), nan=0.0)
    anti_p = np.nan_to_num(ev.pos_frac[:, anti_cols], nan=0.0)
    agg_e = aggregate(anti_e, scoring.anti_agg)
    agg_p = aggregate(anti_p, scoring.anti_agg)
    anti_penalty = scoring.anti_weight * (agg_e + agg_p)

    coverage_term = scoring.coverage_weight * coverage
    score = mean_enrichment + mean_positive + de_component + coverage_term - anti_penalty
    return NodeScores(
        node, lp, pos, cols, missing, anti, anti_cols, anti_missing, on, coverage, panel_coverage,
        mean_enrichment, mean_positive, de_component, coverage_term, agg_e, agg_p, anti_penalty, score,
        min(params.gating.min_measured_markers, n_listed),
        resolved_columns([r.marker for r in node.requires], mapping, ev)[1],
    )
