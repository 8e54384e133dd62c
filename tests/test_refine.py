"""Refinement (semantics §8) on synthetic cells with known populations: heterogeneity, relabel,
subcluster, the guide's parameters, the manual plan, determinism."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import pytest
from polars.testing import assert_frame_equal

from ctr.data.cluster import subcluster
from ctr.engine import annotate_clusters
from ctr.engine.annotate import EngineInputs
from ctr.engine.heterogeneity import frontier, heterogeneity
from ctr.engine.refine import LOG_COLUMNS, refine
from ctr.errors import ParameterError
from ctr.lang.plan_file import load_plan
from ctr.report.sentences import refinement_reasons
from ctr.rules.model import CellType, MarkerRef, Requirement, Ruleset, Threshold, Veto, assign_paths
from ctr.rules.params import RefinementParams, resolve_params
from ctr.stats import absolute_thresholds, compute_statistics, natural_key, statistics_for_labels

PANEL = ["P", "CA", "CB", "R", "N"]
MAPPING = {m: m for m in PANEL}
HIGH = {"A": ["P", "CA"], "B": ["P", "CB"], "I": ["R"]}  # the markers each population expresses


def _node(name, markers, children=(), requires=()):
    return CellType(name=name, markers=[MarkerRef(name=m) for m in markers], children=list(children),
                    requires=[Requirement(marker=m, min_pos_frac=0.95) for m in requires])


def _ruleset() -> Ruleset:
    # the subtypes require 95% positive cells, so a mixed Epi cluster stays at Epi (no_child_passed)
    rs = Ruleset(
        name="refine-test",
        roots=[_node("Epi", ["P"], [_node("CilA", ["CA"], requires=["CA"]), _node("SecB", ["CB"], requires=["CB"])]),
               _node("Immune", ["R"])],
        thresholds=[Threshold(marker=m, value=2.0) for m in ["P", "CA", "CB", "R"]],
    )
    assign_paths(rs.roots)
    return rs


RS = _ruleset()
# cluster -> [(population, n cells)]: 0 pure Immune (many, so global medians are background), 1 90/10, 2 50/50, 3 75/25 (the borderline case)
DESIGN = {"0": [("I", 1500)], "1": [("A", 270), ("B", 30)], "2": [("A", 300), ("B", 300)], "3": [("A", 300), ("B", 100)]}


def make_cells(design=DESIGN, seed=1):
    """(matrix, cluster labels, population of each cell): high markers ~ N(4, 0.4), others ~ |N(0.3, 0.15)|."""
    rng = np.random.default_rng(seed)
    rows, clusters, pops = [], [], []
    for cluster, parts in design.items():
        for pop, n in parts:
            block = np.abs(rng.normal(0.3, 0.15, size=(n, len(PANEL))))
            for m in HIGH[pop]:
                block[:, PANEL.index(m)] = rng.normal(4.0, 0.4, size=n)
            rows.append(block)
            clusters += [cluster] * n
            pops += [pop] * n
    return np.vstack(rows), np.array(clusters), np.array(pops)


MATRIX, LABELS, POPS = make_cells()


def params(**refinement):
    return resolve_params([("cli", {"refinement": RefinementParams(**{"min_cells": 350, **refinement})})])


def run(p=None, plan=None, seed=0, matrix=MATRIX, labels=LABELS):
    p = p or params()
    stats = compute_statistics(matrix, labels, PANEL, p.scoring, absolute_thresholds(RS, MAPPING))
    inputs = EngineInputs(RS, MAPPING, p, cell_matrix=matrix)
    result = refine(inputs.annotate(stats, labels), stats, inputs, cell_clusters=labels, plan=plan,
                    split=partial(subcluster, random_seed=seed), statistics=statistics_for_labels(stats, matrix, p.scoring))
    return worded(result)


def worded(result):
    """The refinement with its log's reasons in words, as the run directory writes them."""
    assert "reason" not in result.log.columns  # the engine records values; ctr.report words them
    return replace(result, log=refinement_reasons(result.log))


@pytest.fixture(scope="module")
def default_run():
    return run()


def row(result, cluster):
    return result.annotation.clusters.set_index("cluster").loc[cluster]


def log_of(result, cluster):
    return result.log[result.log.cluster == cluster]


# ---- heterogeneity ------------------------------------------------------------------------


@pytest.mark.parametrize("shares, expected", [
    ([("A", 1.0)], 0.0),
    ([("A", 0.5), ("B", 0.5)], 1.0),
    ([("A", 1 / 3), ("B", 1 / 3), ("C", 1 / 3)], 2.0),
    ([("A", 0.5), ("Uncertain", 0.5)], 1.0),  # Uncertain is a population of its own
    ([("A", 0.75), ("B", 0.25), ("C", 0.0)], math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) - 1),
])
def test_heterogeneity_is_effective_populations_minus_one(shares, expected):
    assert heterogeneity(shares) == pytest.approx(expected)


def test_frontier_children_siblings_roots():
    epi, immune = RS.roots
    assert [n.name for n in frontier(epi, RS)] == ["CilA", "SecB"]
    assert [n.name for n in frontier(epi.children[1], RS)] == ["CilA", "SecB"]  # a leaf: its siblings
    assert [n.name for n in frontier(immune, RS)] == ["Epi", "Immune"]  # a leaf root: the roots
    assert [n.name for n in frontier(None, RS)] == ["Epi", "Immune"]  # Unassigned


def test_heterogeneity_of_the_synthetic_clusters_in_the_log(default_run):
    skip0 = log_of(default_run, "0").iloc[0]
    assert skip0.action == "skip" and skip0.heterogeneity < 0.5  # Immune, a few Uncertain cells
    relabel1 = log_of(default_run, "1").iloc[0]
    assert relabel1.heterogeneity == pytest.approx(heterogeneity([("CilA", 0.9), ("SecB", 0.1)]))
    sub2 = log_of(default_run, "2").iloc[0]
    assert sub2.heterogeneity == pytest.approx(1.0)  # 300 CilA votes, 300 SecB votes


def test_global_statistics_do_not_depend_on_the_labels():
    p = params()
    th = absolute_thresholds(RS, MAPPING)
    a = compute_statistics(MATRIX, LABELS, PANEL, p.scoring, th)
    b = compute_statistics(MATRIX, np.where(POPS == "A", "x", LABELS), PANEL, p.scoring, th)
    assert_frame_equal(a.global_, b.global_)


# ---- the automatic policy -----------------------------------------------------------------


def test_parent_cluster_with_90_percent_one_child_is_relabelled(default_run):
    r = row(default_run, "1")
    assert (r.final_annotation, r.annotation_path, r.stop_reason, r.refinement_action) == (
        "CilA", "Epi / CilA", "refined_relabel", "relabel")
    rec = log_of(default_run, "1").iloc[0]
    assert (rec.iteration, rec.action, rec.before_label, rec.after_label, rec.source) == (1, "relabel", "Epi", "CilA", "auto")
    assert "took 0.90 of the per-cell votes" in rec.reason and "heterogeneity_gap 0.30 = 0.70" in rec.reason
    assert rec.after_score >= 0.5 and rec.n_cells == 300
    # relabelled to a leaf, it is not looked at again (its siblings are what the votes were over)
    assert log_of(default_run, "1").action.tolist() == ["relabel"]


def test_mixed_cluster_is_subclustered_into_the_two_children(default_run):
    assert "2" not in set(default_run.cell_clusters)
    pieces = sorted({c for c in default_run.cell_clusters if c.startswith("2.")})
    assert len(pieces) >= 2
    labels = {p: row(default_run, p).final_annotation for p in pieces}
    assert set(labels.values()) == {"CilA", "SecB"}
    for p in pieces:  # every piece holds one population, and is named after it
        pops = set(POPS[default_run.cell_clusters == p])
        assert pops == {"A" if labels[p] == "CilA" else "B"}
        assert row(default_run, p).refinement_action == "subcluster"
    rec = log_of(default_run, "2").iloc[0]
    assert rec.action == "subcluster"
    ordered = sorted(pieces, key=natural_key)
    sizes = {p: (default_run.cell_clusters == p).sum() for p in pieces}
    assert rec.after_label == "; ".join(f"{p} {labels[p]} ({sizes[p]} cells)" for p in ordered)
    for p in ordered:
        piece = log_of(default_run, p).iloc[0]
        assert (piece.action, piece.before_label, piece.after_label) == ("subcluster", "Epi", labels[p])
        assert piece.n_cells == (default_run.cell_clusters == p).sum()
        assert piece.after_score == pytest.approx(row(default_run, p).score)
    assert rec.reason.startswith("H 1.00 >= score_threshold 1.00 and 600 cells >= min_cells 350")


def test_other_clusters_and_cells_are_untouched(default_run):
    assert row(default_run, "0").final_annotation == "Immune"
    assert row(default_run, "0").refinement_action == "skip"
    keep = LABELS != "2"
    assert (default_run.cell_clusters[keep] == LABELS[keep]).all()
    assert [c for c in default_run.log.columns if c != "reason"] == LOG_COLUMNS


def test_refinement_steps_are_in_the_trace_with_parameter_provenance(default_run):
    trace = default_run.annotation.trace
    ref = trace[(trace.kind == "refine") & (trace.cluster == "2")]
    h = ref[(ref.gate == "subcluster") & (ref.statistic == "heterogeneity")].iloc[0]
    assert (h.observed, h.threshold, h.passed, h.layer, h.param_key) == (
        pytest.approx(1.0), 1.0, True, "default", "refinement.score_threshold")
    n = ref[(ref.gate == "subcluster") & (ref.statistic == "n_cells")].iloc[0]
    assert (n.observed, n.threshold, n.layer, n.param_key) == (600, 350, "cli", "refinement.min_cells")
    share = trace[(trace.kind == "refine") & (trace.cluster == "1") & (trace.statistic == "vote_share")].iloc[0]
    assert share.cell_type == "CilA"
    assert (share.observed, share.threshold, share.passed) == (pytest.approx(0.9), pytest.approx(0.7), True)
    for _, steps in trace.groupby("cluster"):
        assert steps.step.tolist() == list(range(1, len(steps) + 1))


def test_higher_score_threshold_flags_fewer_clusters():
    def flagged(result):
        t = result.annotation.trace
        return set(t[(t.kind == "refine") & (t.statistic == "heterogeneity") & t.passed].cluster)

    # heterogeneity_gap 0.2: cluster 3 (75/25) is not relabelled, so its H 0.75 is tested
    low, high = run(params(score_threshold=0.7, heterogeneity_gap=0.2)), run(params(score_threshold=1.5, heterogeneity_gap=0.2))
    assert flagged(low) == {"2", "3"}
    assert flagged(high) == set()
    assert set(high.log.action) <= {"relabel", "skip"} and "subcluster" in set(low.log.action)


def test_higher_heterogeneity_gap_prefers_relabel_in_a_borderline_cluster():
    # cluster 3: 75% CilA votes, H 0.75 >= score_threshold 0.7 and 400 cells >= min_cells 350
    narrow = run(params(score_threshold=0.7, heterogeneity_gap=0.2))  # relabel needs 0.80
    wide = run(params(score_threshold=0.7, heterogeneity_gap=0.4))  # relabel needs 0.60
    assert log_of(narrow, "3").action.iloc[0] == "subcluster"
    assert "3" not in set(narrow.cell_clusters)
    assert log_of(wide, "3").action.tolist() == ["relabel"]
    assert row(wide, "3").final_annotation == "CilA"
    assert (wide.cell_clusters[LABELS == "3"] == "3").all()


def test_small_clusters_are_not_subclustered():
    result = run(params(min_cells=1000))
    rec = log_of(result, "2").iloc[0]
    assert rec.action == "skip" and "600 cells < min_cells 1000" in rec.reason
    assert set(result.cell_clusters) == set(LABELS)


def test_max_iterations_bounds_the_rounds(default_run):
    assert set(default_run.log.iteration) == {1, 2}  # round 2 looks at the pieces of cluster 2 and stops
    once = run(params(max_iterations=1))
    assert set(once.log.iteration) == {1}
    assert set(once.cell_clusters) == set(default_run.cell_clusters)


def test_determinism():
    a, b = run(seed=3), run(seed=3)
    pd.testing.assert_frame_equal(a.log, b.log)
    pd.testing.assert_frame_equal(a.annotation.clusters, b.annotation.clusters)
    pd.testing.assert_frame_equal(a.annotation.trace, b.annotation.trace)
    assert (a.cell_clusters == b.cell_clusters).all()


# ---- the manual plan ----------------------------------------------------------------------

PLAN = {
    "relabel": [{"cluster": "1", "to": "Epi / SecB", "reason": "expert review"}],
    "subcluster": [{"cluster": "2", "resolution": 0.5}],
    "merge": [{"clusters": ["1", "3"], "into": "1", "reason": "split by batch only"}],
    "override": [{"cluster": "0", "label": "Doublets", "reason": "CD3+CD19+"}],
}


def test_plan_applies_override_merge_subcluster_relabel_in_order(tmp_path):
    import yaml

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN))
    result = run(plan=load_plan(path))  # the engine is given the plan; the edge reads its file
    plan_rows = result.log[result.log.source == "plan"]
    assert plan_rows.iteration.unique().tolist() == [0]
    actions = plan_rows.action.tolist()
    assert actions[0] == "override" and actions[1] == "merge" and actions[-1] == "relabel"
    assert set(actions[2:-1]) == {"subcluster"}
    r0 = row(result, "0")
    assert (r0.final_annotation, r0.stop_reason, r0.refinement_action) == ("Doublets", "manual_override", "override")
    assert "3" not in set(result.cell_clusters)
    assert (result.cell_clusters[LABELS == "3"] == "1").all()
    r1 = row(result, "1")
    assert (r1.final_annotation, r1.annotation_path, r1.stop_reason, r1.refinement_action) == (
        "SecB", "Epi / SecB", "manual_relabel", "relabel")
    merge = plan_rows[plan_rows.action == "merge"].iloc[0]
    assert merge.before_label == "1 Epi; 3 Epi" and merge.n_cells == 700 and "split by batch only" in merge.reason
    relabel = plan_rows[plan_rows.action == "relabel"].iloc[0]
    assert (relabel.before_label, relabel.after_label) == ("Epi", "SecB")
    assert not math.isnan(relabel.after_score)
    pieces = sorted({c for c in result.cell_clusters if c.startswith("2.")})
    assert len(pieces) >= 2 and all(row(result, p).refinement_action == "subcluster" for p in pieces)
    # the policy leaves the clusters the plan decided alone
    assert result.log[result.log.source == "auto"].empty


def test_plan_naming_an_unknown_cluster_lists_the_valid_ids():
    with pytest.raises(ParameterError, match=r"unknown cluster\(s\) '9'.*the clusters are: 0, 1, 2, 3"):
        run(plan={"override": [{"cluster": "9", "label": "X"}]})


def test_plan_naming_a_cluster_an_earlier_merge_removed():
    plan = {"merge": [{"clusters": ["1", "3"]}], "relabel": [{"cluster": "3", "to": "CilA"}]}
    with pytest.raises(ParameterError, match="cluster '3', which an earlier merge"):
        run(plan=plan)


def test_sparse_matrix_gives_the_same_decisions():
    import scipy.sparse as sp

    result = run(matrix=sp.csr_matrix(MATRIX))
    assert row(result, "1").final_annotation == "CilA"
    assert log_of(result, "2").action.iloc[0] == "subcluster"
    pieces = {c for c in result.cell_clusters if c.startswith("2.")}
    assert {row(result, p).final_annotation for p in pieces} == {"CilA", "SecB"}


def test_without_cells_only_overrides_and_relabels_apply():
    p = params()
    stats = compute_statistics(MATRIX, LABELS, PANEL, p.scoring, absolute_thresholds(RS, MAPPING))
    ann = annotate_clusters(stats, RS, MAPPING, p)
    inputs = EngineInputs(RS, MAPPING, p)
    result = worded(refine(ann, stats, inputs, plan={"relabel": [{"cluster": "2", "to": "SecB"}]}))
    assert row(result, "2").final_annotation == "SecB"
    assert result.log.action.tolist() == ["relabel"]
    with pytest.raises(ParameterError, match="merge needs the per-cell data"):
        refine(ann, stats, inputs, plan={"merge": [{"clusters": ["1", "3"]}]})


def test_plan_rows_in_the_trace_cite_the_plan():
    result = run(plan={"override": [{"cluster": "0", "label": "Doublets"}], "subcluster": [{"cluster": "2"}]})
    t = result.annotation.trace
    rows = t[(t.kind == "refine") & t.cluster.isin(["0", "2"])]
    assert set(rows.layer) == {"plan"} and set(rows.file) == {""}
    assert rows[rows.cluster == "0"].gate.tolist() == ["override"]
    assert "Doublets" in log_of(result, "0").reason.iloc[0]


# ---- pooling the pieces of a split by outcome --------------------------------------------


def test_split_pieces_that_reach_the_same_label_are_pooled_into_one_piece_per_outcome(default_run):
    pieces = sorted({c for c in default_run.cell_clusters if c.startswith("2.")}, key=natural_key)
    assert pieces == ["2.0", "2.1"]
    assert {p: row(default_run, p).final_annotation for p in pieces} == {"2.0": "CilA", "2.1": "SecB"}
    in2 = LABELS == "2"
    assert (default_run.cell_clusters[in2 & (POPS == "A")] == "2.0").all()
    assert (default_run.cell_clusters[in2 & (POPS == "B")] == "2.1").all()
    rec = log_of(default_run, "2").iloc[0]
    assert rec.after_label == "2.0 CilA (300 cells); 2.1 SecB (300 cells)"
    n_leiden = int(re.search(r"split its 600 cells into (\d+) pieces", rec.reason).group(1))
    assert n_leiden > 2  # Leiden over-splits the two populations at resolution 0.5
    assert f"pooled, {n_leiden} Leiden pieces into 2: 2.0 CilA (300 cells); 2.1 SecB (300 cells)" in rec.reason
    # every Leiden piece went into exactly one pooled piece
    origins = [re.search(r"pooled from Leiden pieces ([\d., ]+),", log_of(default_run, p).iloc[0].reason).group(1)
               for p in pieces]
    leiden = [x for o in origins for x in o.split(", ")]
    assert sorted(leiden, key=natural_key) == [f"2.{k}" for k in range(n_leiden)]
    t = default_run.annotation.trace
    out = t[(t.kind == "refine") & (t.cluster == "2") & (t.statistic == "distinct_outcomes")].iloc[0]
    assert (out.observed, out.threshold, out.passed, out.layer) == (2, 2, True, "default")
    assert out.param_key == "refinement.resolution"
    action = t[(t.kind == "refine") & (t.cluster == "2") & (t.statistic == "action")].iloc[0]
    assert (action.gate, action.observed) == ("subcluster", pytest.approx(rec.heterogeneity))


def test_pooled_pieces_are_numbered_by_size():
    # cluster 3 (300 A, 100 B) is split when a relabel needs 80% of the votes
    result = run(params(score_threshold=0.7, heterogeneity_gap=0.2))
    assert sorted({c for c in result.cell_clusters if c.startswith("3.")}, key=natural_key) == ["3.0", "3.1"]
    assert log_of(result, "3").iloc[0].after_label == "3.0 CilA (300 cells); 3.1 SecB (100 cells)"
    assert [log_of(result, p).iloc[0].n_cells for p in ["3.0", "3.1"]] == [300, 100]


def noisy_cells(n=600, seed=2):
    """The synthetic cells plus cluster 4: one Epi population whose subtype markers CA and CB are
    both ~ N(2.1, 0.5), around the positivity threshold 2: about half the cells meet each subtype's
    requirement (and vote between CilA and SecB on the rest of their values, nearly a coin toss:
    H above 1), far from the 95% either subtype requires, in the cluster or any piece of it."""
    rng = np.random.default_rng(seed)
    block = np.abs(rng.normal(0.3, 0.15, size=(n, len(PANEL))))
    block[:, PANEL.index("P")] = rng.normal(4.0, 0.4, size=n)
    for m in ("CA", "CB"):
        block[:, PANEL.index(m)] = rng.normal(2.1, 0.5, size=n)
    return np.vstack([MATRIX, block]), np.concatenate([LABELS, np.full(n, "4")])


@pytest.fixture(scope="module")
def noisy_run():
    matrix, labels = noisy_cells()
    return run(matrix=matrix, labels=labels), labels


def test_split_whose_pieces_all_reach_the_same_label_is_skipped(noisy_run):
    result, labels = noisy_run
    rec = log_of(result, "4")
    assert rec.action.tolist() == ["skip"]
    rec = rec.iloc[0]
    assert rec.heterogeneity >= 1.0 and rec.n_cells == 600
    n_leiden = int(re.search(r"Leiden's (\d+) pieces all reached Epi", rec.reason).group(1))
    assert n_leiden >= 2
    assert rec.reason.startswith(f"H {rec.heterogeneity:.2f} >= score_threshold 1.00 and 600 cells >= min_cells 350")
    assert (rec.before_label, rec.after_label) == ("Epi", "Epi")
    assert rec.after_score == pytest.approx(rec.before_score)
    # the cluster is kept whole, with the engine's label, and no piece of it is left anywhere
    assert (result.cell_clusters[labels == "4"] == "4").all()
    r = row(result, "4")
    assert (r.final_annotation, r.stop_reason, r.refinement_action, r.n_cells) == (
        "Epi", "no_child_passed", "skip", 600)
    assert not any(c.startswith("4.") for c in result.log.cluster)
    assert not any(c.startswith("4.") for c in result.annotation.clusters.cluster)
    t = result.annotation.trace
    steps = t[(t.kind == "refine") & (t.cluster == "4")]
    out = steps[steps.statistic == "distinct_outcomes"].iloc[0]
    assert (out.observed, out.threshold, out.passed) == (1, 2, False)
    assert steps.gate.tolist()[-1] == "skip" and "subcluster" not in set(steps[steps.statistic == "action"].gate)
    # the rest of the run is that of the synthetic cells alone
    assert sorted({c for c in result.cell_clusters if c.startswith("2.")}) == ["2.0", "2.1"]


def test_pooling_is_deterministic(noisy_run):
    matrix, labels = noisy_cells()
    again = run(matrix=matrix, labels=labels)
    first, _ = noisy_run
    pd.testing.assert_frame_equal(first.log, again.log)
    pd.testing.assert_frame_equal(first.annotation.trace, again.annotation.trace)
    assert (first.cell_clusters == again.cell_clusters).all()


def test_a_planned_split_is_pooled_too():
    result = run(plan={"subcluster": [{"cluster": "2"}]})
    assert sorted({c for c in result.cell_clusters if c.startswith("2.")}, key=natural_key) == ["2.0", "2.1"]
    rows = result.log[result.log.cluster.isin(["2", "2.0", "2.1"])]
    assert (rows.source == "plan").all() and (rows.iteration == 0).all()
    assert rows.iloc[0].after_label == "2.0 CilA (300 cells); 2.1 SecB (300 cells)"
    assert all(row(result, p).refinement_action == "subcluster" for p in ["2.0", "2.1"])


def test_min_cells_not_set_scales_with_a_small_sample():
    p = RefinementParams()
    assert p.min_cells is None
    assert p.effective_min_cells(50_000) == 500  # large samples: the guide's 500
    assert p.effective_min_cells(2_400) == 120  # 5% of a small sample
    assert p.effective_min_cells(300) == 50  # never below 50 cells
    assert RefinementParams(min_cells=1000).effective_min_cells(2_400) == 1000  # a set value is kept


def test_mixed_cluster_of_a_small_sample_is_split_with_default_min_cells():
    # a 2,400-cell sample whose 297-cell cluster mixes two subtypes (the case): 297 < 500
    design = {"0": [("I", 1500)], "1": [("A", 303), ("B", 300)], "2": [("A", 150), ("B", 147)]}
    matrix, labels, _ = make_cells(design)
    unset = resolve_params([("cli", {"refinement": RefinementParams(score_threshold=0.8)})])
    result = run(unset, matrix=matrix, labels=labels)
    rec = log_of(result, "2").iloc[0]
    assert rec.action == "subcluster" and "297 cells >= min_cells 120" in rec.reason
    assert "2.0 CilA (150 cells); 2.1 SecB (147 cells)" in rec.reason  # split along the two populations
    # a cluster of a leaf type (no subtypes to be mixed between) keeps the absolute limit of 500
    trace = result.annotation.trace
    pure = trace[(trace.kind == "refine") & (trace.cluster == "0") & (trace.statistic == "n_cells")]
    assert pure.threshold.tolist() == [500.0]


def test_a_split_never_takes_a_label_away():
    # Leiden pieces are decided afresh; one on which no root passes stays with its cluster's label
    from types import SimpleNamespace

    from ctr.engine.refine import _piece_outcome

    epi = RS.node(("Epi",))
    unassigned = SimpleNamespace(path=[], stop_reason="no_root_passed", label="Unassigned", annotation_path="Unassigned")
    immune = SimpleNamespace(path=[RS.node(("Immune",))], stop_reason="leaf_reached", label="Immune", annotation_path="Immune")
    scores = {("1.1", ("Immune",)): 3.0}
    view = SimpleNamespace(decision={"1.0": unassigned, "1.1": immune}.get,
                           score=lambda piece, node: scores[(piece, node.path)])
    split = SimpleNamespace(before="Epi", node=epi, lineage={("Epi",): 2.0})
    assert _piece_outcome(view, split, "1.0") == ("Epi", "Epi")
    assert _piece_outcome(view, split, "1.1") == ("Immune", "Immune")  # stronger evidence than Epi had: taken
    weak = SimpleNamespace(before="Epi", node=epi, lineage={("Epi",): 3.5})
    assert _piece_outcome(view, weak, "1.1") == ("Epi", "Epi")  # weaker than Epi's on the whole cluster: kept
    unlabelled = SimpleNamespace(before="Unassigned", node=None)
    assert _piece_outcome(view, unlabelled, "1.0") == ("Unassigned", "Unassigned")


# Lymphocytes (L), 150 of them carrying a spurious signal: a marker (X) that vetoes the lymphocyte
# type and a weak myeloid one (M, just above its gate); real myeloid cells express M strongly.
LYM_PANEL = ["L", "X", "M"]
LYM_RS = Ruleset(
    name="pieces",
    roots=[CellType(name="Lymph", markers=[MarkerRef(name="L")], vetoes=[Veto(markers=["X"], max_pos_frac=0.2)]),
           CellType(name="Myeloid", markers=[MarkerRef(name="M")])],
    thresholds=[Threshold(marker=m, value=2.0) for m in LYM_PANEL],
)
assign_paths(LYM_RS.roots)


def lymph_cells(seed=3):
    """Cluster 0: 900 lymphocytes and 150 with the spurious signal (all lymphocytes by construction);
    cluster 1: 600 myeloid cells; cluster 2: 400 lymphocytes mixed with 250 myeloid cells."""
    rng = np.random.default_rng(seed)
    parts = [("0", "Lymph", 900, {"L": 4.0}), ("0", "Lymph", 150, {"L": 4.0, "X": 4.0, "M": 2.6}),
             ("1", "Myeloid", 600, {"M": 6.0}), ("2", "Lymph", 400, {"L": 4.0}), ("2", "Myeloid", 250, {"M": 6.0})]
    rows, clusters, truth = [], [], []
    for cluster, kind, n, high in parts:
        block = np.abs(rng.normal(0.3, 0.15, size=(n, len(LYM_PANEL))))
        for m, level in high.items():
            block[:, LYM_PANEL.index(m)] = rng.normal(level, 0.2, size=n)
        rows.append(block)
        clusters += [cluster] * n
        truth += [kind] * n
    return np.vstack(rows), np.array(clusters), np.array(truth)


def test_a_piece_takes_another_lineage_only_on_stronger_evidence_than_its_cluster_had():
    matrix, labels, truth = lymph_cells()
    p = params()
    mapping = {m: m for m in LYM_PANEL}
    stats = compute_statistics(matrix, labels, LYM_PANEL, p.scoring, absolute_thresholds(LYM_RS, mapping))
    inputs = EngineInputs(LYM_RS, mapping, p, cell_matrix=matrix)
    annotation = inputs.annotate(stats, labels)
    assert annotation.clusters.set_index("cluster").loc[["0", "2"], "final_annotation"].tolist() == ["Lymph", "Lymph"]
    result = refine(annotation, stats, inputs, cell_clusters=labels, split=partial(subcluster, random_seed=0),
                    statistics=statistics_for_labels(stats, matrix, p.scoring),
                    plan={"subcluster": [{"cluster": "0"}, {"cluster": "2"}]})
    final = result.annotation.clusters.set_index("cluster")["final_annotation"]
    label = final.reindex(result.cell_clusters).to_numpy()
    # the spurious piece fails Lymph's veto and passes Myeloid weakly: weaker evidence than Lymph had
    # on its whole cluster, so it stays Lymph; the myeloid cells of cluster 2 are myeloid by more
    # than cluster 2 was lymphoid, so their piece is relabelled
    assert (label[labels == "0"] == "Lymph").all()
    assert (label[(labels == "2") & (truth == "Myeloid")] == "Myeloid").mean() > 0.95
    assert (label[(labels == "2") & (truth == "Lymph")] == "Lymph").mean() > 0.95


def test_cells_that_lack_a_required_marker_do_not_vote_for_the_type():
    """A cluster of CD45+ HLA-DR+ cells with neither CD20 nor CD68 stops at Leukocytes (B cells fail
    `require CD20`, macrophages `require CD68`). Scored on their markers' mean alone, its cells would
    vote B cells (CD45 and HLA-DR high) and the relabel would name B cells a cluster without one
    CD20+ cell; a `require` line holds per cell, so they vote for nothing."""
    import anndata as ad

    import ctr
    from ctr.lang import compile_ruleset

    rng = np.random.default_rng(5)
    n = 400

    def cells(*on):  # CD45, CD20, HLADR, CD68: high where on, background elsewhere
        return np.c_[tuple(rng.normal(3.0, 0.3, n) if k else np.abs(rng.normal(0.2, 0.1, n)) for k in on)]

    adata = ad.AnnData(np.vstack([cells(1, 0, 1, 0), cells(1, 1, 1, 0), cells(1, 0, 1, 1), cells(0, 0, 0, 0)])
                       .astype(np.float32))
    adata.var_names = ["CD45", "CD20", "HLADR", "CD68"]
    adata.obs["cluster"] = pd.Categorical(np.repeat(["odd", "b", "mac", "stroma"], n))
    text = ('type Leukocytes {\n  markers CD45\n'
            '  type "B cells" { markers CD20, HLADR, CD45\n require CD20 }\n'
            '  type Macrophages { markers CD68\n require CD68 }\n}\n')
    ruleset = compile_ruleset("r.ctr", text=text).ruleset
    result = ctr.annotate(adata, ruleset, cluster_key="cluster", write_obs=False,
                          refinement_params={"min_cells": 10_000})
    labels = result.clusters.set_index("cluster")["final_annotation"]
    assert (labels["b"], labels["mac"], labels["odd"]) == ("B cells", "Macrophages", "Leukocytes")
    log = result.refinement_log.set_index("cluster")
    assert log.loc["odd", "action"] == "skip"
    assert '"B cells"' not in log.loc["odd", "detail"].split('"shares"')[1]  # no cell of it voted B cells
