"""Coverage, enrichment, DE component, anti-marker penalty and score (semantics §5), by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from ctr.engine.scoring import ClusterEvidence, de_k, document_frequency, score_node
from ctr.rules.model import CellType, MarkerRef, Ruleset, assign_paths
from ctr.rules.params import GatingParams, ResolvedParams, ScoringParams
from ctr.stats import Statistics

PANEL = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]  # 10 markers -> K = max(ceil(2), 3) = 3


def make_stats(values: dict[str, dict[str, tuple]], panel=PANEL, n_cells=100) -> Statistics:
    """Statistics from {cluster: {marker: (pos_frac, enrichment[, de_rank])}}; unlisted = 0."""
    rows = []
    for cluster, markers in values.items():
        for m in panel:
            pf, enr, *rank = markers.get(m, (0.0, 0.0))
            rows.append({"cluster": cluster, "marker": m, "n_cells": n_cells, "pos_frac": None if pf is None else float(pf),
                         "enrichment": None if enr is None else float(enr), "de_rank": rank[0] if rank else None})
    cluster = pl.DataFrame(rows, schema={"cluster": pl.Utf8, "marker": pl.Utf8, "n_cells": pl.Int64,
                                         "pos_frac": pl.Float64, "enrichment": pl.Float64, "de_rank": pl.Int64})
    return Statistics.from_tables(cluster, pl.DataFrame({"marker": panel}))


def node(name, markers=(), anti=(), children=(), **kw) -> CellType:
    return CellType(name=name, markers=[MarkerRef(name=m) for m in markers], anti=[MarkerRef(name=m) for m in anti],
                    children=list(children), **kw)


def ruleset(*roots) -> Ruleset:
    rs = Ruleset(name="test", roots=list(roots))
    assign_paths(rs.roots)
    return rs


RS = ruleset(node("T", ["A", "B", "C", "X"], anti=["D", "E", "F"]), node("U", ["A"]), node("V", ["G"]), node("W", ["H"]))
EVIDENCE = {"c1": {"A": (0.6, 1.0, 1), "B": (0.2, -0.5), "C": (0.4, 0.8, 4),
                   "D": (0.5, 1.2), "E": (0.1, -0.3), "F": (0.3, 0.4)}}
MAPPING = {m: m for m in PANEL}


def scored(params=None, rs=RS, path=("T",), evidence=EVIDENCE):
    params = params or ResolvedParams()
    ev = ClusterEvidence.from_statistics(make_stats(evidence))
    return score_node(ev, rs.node(path), MAPPING, params, document_frequency(rs, MAPPING), rs.cell_type_count)


def test_coverage_counts_the_markers_the_panel_measures():
    ns = scored()
    # on at level-0 min_pos_frac 0.30: A (0.6) and C (0.4) of the measured A, B, C; X is not in the
    # panel, so it says nothing about the cluster (panel_coverage reports it)
    assert ns.coverage[0] == pytest.approx(2 / 3)
    assert ns.panel_coverage[0] == pytest.approx(3 / 4)
    assert ns.missing == ["X"]
    assert ns.assessable and ns.needed == 1


def test_a_type_with_too_few_measured_markers_is_not_assessable():
    two = ResolvedParams(gating=GatingParams(min_measured_markers=2))
    ns = scored(rs=ruleset(node("Z", ["A", "Q1", "Q2"])), path=("Z",), params=two)
    assert (len(ns.positive), ns.needed, ns.assessable) == (1, 2, False)
    assert scored(rs=ruleset(node("Z", ["A", "Q1", "Q2"])), path=("Z",)).assessable  # default: one is enough
    assert not scored(rs=ruleset(node("Z", ["Q1", "Q2"])), path=("Z",)).assessable


def test_means_over_resolved_markers():
    ns = scored()
    assert ns.mean_enrichment[0] == pytest.approx((1.0 - 0.5 + 0.8) / 3)
    assert ns.mean_positive[0] == pytest.approx((0.6 + 0.2 + 0.4) / 3)


def test_de_k_is_clamped():
    s = ScoringParams()
    assert de_k(10, s) == 3  # ceil(2) raised to de_min_k
    assert de_k(40, s) == 8
    assert de_k(100, s) == 12  # capped at de_max_k
    assert de_k(7, ScoringParams(de_top_frac=0.5, de_min_k=1)) == 4


def test_de_component_rank_weight_and_commonness():
    ns = scored()
    # A: rank 1 of K=3 -> weight 1; listed by T and U of 4 types -> commonness 0.5
    bonus_a = 1.0 * (1 - 0.5**0.5)
    # C: rank 4 > K -> 0; B: not up-regulated -> 0
    assert ns.de_component[0] == pytest.approx(0.6 * bonus_a / 3)


def test_de_rank_weight_inside_top_k():
    evidence = {"c1": {"A": (0.6, 1.0, 2), "B": (0.2, -0.5, 3), "C": (0.4, 0.8)}}
    ns = scored(evidence=evidence)
    bonus_a = (3 - 2 + 1) / 3 * (1 - 0.5**0.5)
    bonus_b = (3 - 3 + 1) / 3 * (1 - 0.25**0.5)
    assert ns.de_component[0] == pytest.approx(0.6 * (bonus_a + bonus_b) / 3)


@pytest.mark.parametrize("agg,expected", [
    ("top2mean", 0.5 * ((1.2 + 0.4) / 2 + (0.5 + 0.3) / 2)),
    ("max", 0.5 * (1.2 + 0.5)),
    ("mean", 0.5 * ((1.2 + 0.0 + 0.4) / 3 + (0.5 + 0.1 + 0.3) / 3)),  # E's negative enrichment counts as 0
])
def test_anti_aggregation(agg, expected):
    params = ResolvedParams(scoring=ScoringParams(anti_agg=agg))
    assert scored(params).anti_penalty[0] == pytest.approx(expected)


def test_top2mean_with_one_anti_marker_is_that_marker():
    rs = ruleset(node("T", ["A"], anti=["D"]))
    ns = scored(rs=rs)
    assert ns.anti_penalty[0] == pytest.approx(0.5 * (1.2 + 0.5))


def test_no_anti_markers_no_penalty():
    assert scored(path=("U",)).anti_penalty[0] == 0.0


def test_score_formula():
    ns = scored()
    mean_enrichment = 1.3 / 3
    mean_positive = 1.2 / 3
    de = 0.6 * (1 - math.sqrt(0.5)) / 3
    coverage_term = 0.3 * 2 / 3
    anti = 0.5 * (0.8 + 0.4)  # anti_agg top2mean
    assert ns.coverage_term[0] == pytest.approx(coverage_term)
    assert ns.score[0] == pytest.approx(mean_enrichment + mean_positive + de + coverage_term - anti)


def test_weights_come_from_parameters():
    params = ResolvedParams(scoring=ScoringParams(coverage_weight=1.0, anti_weight=0.0, de_bonus=0.0))
    ns = scored(params)
    assert ns.score[0] == pytest.approx(1.3 / 3 + 1.2 / 3 + 2 / 3)


def test_vectorised_over_clusters():
    evidence = dict(EVIDENCE, c2={"A": (0.0, -1.0)}, c10={"A": (0.9, 2.0, 1)})
    ns = scored(evidence=evidence)
    # rows follow the natural cluster order c1, c2, c10
    assert np.allclose(ns.coverage, [2 / 3, 0.0, 1 / 3])
    assert ns.mean_enrichment[2] == pytest.approx(2.0 / 3)


def test_node_without_resolved_markers_scores_zero_coverage():
    ns = scored(rs=ruleset(node("Z", ["Q1", "Q2"])), path=("Z",))
    assert ns.coverage[0] == 0.0 and ns.panel_coverage[0] == 0.0 and ns.mean_enrichment[0] == 0.0


# Sixteen anti-markers, as a type that lists every other lineage as 'not expressed' (CELESTA's
# prior): two of them carry spill-over from neighbouring cells, the other fourteen are clean.
MANY_PANEL = ["P", *[f"N{i}" for i in range(16)]]
MANY_RS = ruleset(node("Lineage", ["P"], anti=[f"N{i}" for i in range(16)]))
SPILL = {"c1": {"P": (0.9, 2.0), "N0": (0.7, 1.5), "N1": (0.7, 1.5)}}


def many_anti(agg, rs=MANY_RS):
    params = ResolvedParams(scoring=ScoringParams(anti_agg=agg))
    ev = ClusterEvidence.from_statistics(make_stats(SPILL, MANY_PANEL))
    mapping = {m: m for m in MANY_PANEL}
    return score_node(ev, rs.roots[0], mapping, params, document_frequency(rs, mapping), rs.cell_type_count)


def test_top_quarter_averages_the_largest_quarter_of_many_anti_markers():
    # 16 anti-markers -> the largest 4: enrichment (1.5 + 1.5 + 0 + 0) / 4, pos_frac (0.7 + 0.7) / 4
    assert many_anti("top_quarter").anti_penalty[0] == pytest.approx(0.5 * (3.0 / 4 + 1.4 / 4))
    # top2mean reads the two spilled-over markers as a conflict beyond the hard gate (1.0)
    assert many_anti("top2mean").anti_penalty[0] == pytest.approx(0.5 * (1.5 + 0.7))
    assert many_anti("top2mean").anti_penalty[0] > 1.0 > many_anti("top_quarter").anti_penalty[0]


def test_top_quarter_is_top2mean_for_up_to_eight_anti_markers():
    for n in (1, 2, 5, 8):
        rs = ruleset(node("Lineage", ["P"], anti=[f"N{i}" for i in range(n)]))
        assert many_anti("top_quarter", rs).anti_penalty[0] == pytest.approx(many_anti("top2mean", rs).anti_penalty[0])
