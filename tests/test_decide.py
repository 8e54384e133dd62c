"""The hierarchical decision (semantics §7): stop reasons, ambiguity, confidence, votes, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_scoring import make_stats, node, ruleset

from ctr.engine import annotate_clusters
from ctr.engine.votes import cell_scores, composition, composition_text, vote
from ctr.report.sentences import with_reasons
from ctr.rules.model import LevelParams
from ctr.rules.params import GatingParams, ResolvedParams, resolve_params
from ctr.stats import compute_statistics

PANEL = ["A", "B", "C", "D", "E"]
MAPPING = {m: m for m in PANEL}
RS = ruleset(
    node("Immune", ["A"]),
    node("Epi", ["B"], children=[node("Cil", ["C"]), node("Sec", ["D"])]),
    node("Stroma", ["E"]),
)
EVIDENCE = {
    "none": {},
    "leaf": {"B": (0.9, 2.0), "D": (0.8, 1.5), "C": (0.1, -0.5), "A": (0.35, 0.1)},
    "amb_root": {"A": (0.6, 1.0), "E": (0.62, 1.05)},
    "amb_sib": {"B": (0.9, 2.0), "C": (0.6, 1.0), "D": (0.6, 1.05), "A": (0.35, 0.1)},
    "no_child": {"B": (0.9, 2.0)},
    "alone": {"A": (0.9, 2.0)},
}


@pytest.fixture(scope="module")
def ann():
    return annotate_clusters(make_stats(EVIDENCE, PANEL), RS, MAPPING, ResolvedParams())


def row(ann, cluster):
    return ann.clusters.set_index("cluster").loc[cluster]


def score(ann, cluster, path):
    s = ann.scores
    return float(s[(s.cluster == cluster) & (s.path == path)].score.iloc[0])


def test_no_root_passed(ann):
    r = row(ann, "none")
    assert (r.final_annotation, r.stop_reason, r.confidence, r.level) == ("Unassigned", "no_root_passed", 0.0, -1)
    assert math.isnan(r.score)
    trace = with_reasons(ann.trace)
    select = trace[(trace.cluster == "none") & (trace.kind == "select")]
    assert select.gate.tolist() == ["none_passed"]
    assert select.reason.iloc[0].startswith("no root passed its gates (Immune failed coverage; Epi failed coverage;")


def test_leaf_reached_and_confidence_is_the_smallest_margin(ann):
    r = row(ann, "leaf")
    assert (r.final_annotation, r.annotation_path, r.level, r.root, r.stop_reason) == ("Sec", "Epi / Sec", 1, "Epi", "leaf_reached")
    root_margin = score(ann, "leaf", "Epi") - score(ann, "leaf", "Immune")
    child_margin = math.inf  # Cil fails coverage, Sec is alone
    assert r.confidence == pytest.approx(min(root_margin, child_margin))
    assert not r.uncontested
    assert r.score == pytest.approx(score(ann, "leaf", "Epi / Sec"))
    trace = with_reasons(ann.trace)
    steps = trace[(trace.cluster == "leaf") & (trace.kind == "select")]
    assert steps.gate.tolist() == ["winner", "winner", "leaf"]
    a = f"{root_margin:.2f}"
    assert steps.reason.iloc[0] == f"Epi beat Immune by {a} (min_gap 0.25)"
    assert steps.reason.iloc[1] == "Sec was the only subtype of Epi that passed (Cil failed): uncontested"
    assert ann.trace[ann.trace.cluster == "leaf"].step.tolist() == list(range(1, len(ann.trace[ann.trace.cluster == "leaf"]) + 1))


def test_ambiguous_root_label_and_confidence(ann):
    r = row(ann, "amb_root")
    gap = score(ann, "amb_root", "Stroma") - score(ann, "amb_root", "Immune")
    assert 0 < gap < 0.25
    assert (r.final_annotation, r.stop_reason, r.root) == ("Stroma~Immune", "ambiguous_root", "Stroma~Immune")
    assert r.confidence == pytest.approx(gap)
    assert r.ambiguous_candidates == "Stroma;Immune"
    assert (r.runner_up, r.runner_up_score) == ("Immune", pytest.approx(score(ann, "amb_root", "Immune")))
    assert r.vote_composition == ""  # no cells given: no votes


def test_ambiguous_siblings_keep_the_parent(ann):
    r = row(ann, "amb_sib")
    assert (r.final_annotation, r.stop_reason, r.ambiguous_candidates) == ("Epi", "ambiguous_siblings", "Sec;Cil")
    assert r.confidence == pytest.approx(score(ann, "amb_sib", "Epi") - score(ann, "amb_sib", "Immune"))
    sel = ann.trace[(ann.trace.cluster == "amb_sib") & (ann.trace.gate == "ambiguous")].iloc[0]
    assert sel.threshold == 0.30 and not sel.passed and sel.path == "Epi"  # min_gap of level 1


def test_no_child_passed(ann):
    r = row(ann, "no_child")
    assert (r.final_annotation, r.stop_reason, r.level) == ("Epi", "no_child_passed", 0)
    assert math.isinf(r.confidence) and r.uncontested


def test_uncontested_leaf_root(ann):
    r = row(ann, "alone")
    assert (r.final_annotation, r.stop_reason) == ("Immune", "leaf_reached")
    assert math.isinf(r.confidence) and r.uncontested and r.runner_up == ""


def test_only_reached_nodes_are_gated(ann):
    g = ann.gating
    assert set(g[g.cluster == "alone"].path) == {"Immune", "Epi", "Stroma"}
    assert set(g[g.cluster == "leaf"].path) == {"Immune", "Epi", "Epi / Cil", "Epi / Sec", "Stroma"}
    # declaration order within a cluster
    assert g[g.cluster == "leaf"].path.tolist() == ["Immune", "Epi", "Epi / Cil", "Epi / Sec", "Stroma"]
    # clusters in natural order of their labels
    assert ann.clusters.cluster.tolist() == ["alone", "amb_root", "amb_sib", "leaf", "no_child", "none"]


def test_ties_go_to_declaration_order_and_max_ambiguity():
    rs = ruleset(node("P", ["A"]), node("Q", ["B"]), node("R", ["C"]))
    evidence = {"t": {"A": (0.8, 1.0), "B": (0.8, 1.0), "C": (0.8, 1.0)}}
    params = resolve_params([("cli", {"gating": GatingParams(max_ambiguity=2)})])
    ann = annotate_clusters(make_stats(evidence, PANEL), rs, MAPPING, params)
    assert ann.clusters.final_annotation.iloc[0] == "P~Q"
    zero_gap = resolve_params([("cli", {"gating": GatingParams(level_defaults={0: LevelParams(min_gap=0.0)})})])
    ann = annotate_clusters(make_stats(evidence, PANEL), rs, MAPPING, zero_gap)
    r = ann.clusters.iloc[0]
    assert (r.final_annotation, r.stop_reason, r.confidence) == ("P", "leaf_reached", 0.0)


def test_a_tie_on_a_shared_marker_goes_to_the_type_whose_own_markers_are_on():
    # endothelium (vimentin A, CD31 B) and fibroblasts (vimentin A plus one of FAP C, SMA D, CD36
    # E): a FAP+ fibroblast cluster has vimentin and FAP on, CD31 off. Both cover half their
    # markers and score within min_gap; only the markers that tell them apart settle it.
    rs = ruleset(node("Endothelium", ["A", "B"]), node("Fibroblasts", ["A", "C", "D", "E"]))
    evidence = {"t": {"A": (0.9, 1.5), "B": (0.05, 0.0), "C": (0.8, 1.0)}}
    ann = annotate_clusters(make_stats(evidence, PANEL), rs, MAPPING, ResolvedParams())
    r = ann.clusters.iloc[0]
    assert (r.final_annotation, r.stop_reason) == ("Fibroblasts", "leaf_reached")
    trace = with_reasons(ann.trace)
    settled = trace[trace.gate == "tie_break"].iloc[0]
    assert (settled.cell_type, settled.statistic, settled.candidates) == ("Fibroblasts", "distinct_coverage", "Endothelium")
    assert settled.observed == pytest.approx(1 / 3)  # FAP of FAP, SMA, CD36 on; CD31 off
    assert settled.param_key == "gating.tie_coverage_gap"
    assert "tell them apart" in settled.reason
    # with the coverage tie rules off, the tie stands
    off = resolve_params([("cli", {"gating": GatingParams(tie_coverage_gap=None)})])
    r = annotate_clusters(make_stats(evidence, PANEL), rs, MAPPING, off).clusters.iloc[0]
    assert r.final_annotation == "Endothelium~Fibroblasts"


def test_node_min_gap_override_applies_when_that_node_leads():
    rs = ruleset(node("P", ["A"], overrides=LevelParams(min_gap=0.01)), node("Q", ["B"]))
    evidence = {"t": {"A": (0.8, 1.1), "B": (0.8, 1.0)}}
    r = annotate_clusters(make_stats(evidence, PANEL), rs, MAPPING, ResolvedParams()).clusters.iloc[0]
    assert (r.final_annotation, r.stop_reason) == ("P", "leaf_reached")
    assert r.confidence == pytest.approx(0.1)


def test_cell_votes_by_hand():
    block = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 1.9], [1.0, 0.0]])
    scores = cell_scores(block, [[0], [1]], np.array([0.0, 0.0]), np.array([1.0, 2.0]))
    assert scores.tolist() == [[2.0, 0.0], [0.0, 2.0], [1.0, 0.95], [1.0, 0.0]]
    votes = vote(scores, ["A", "B"], 0.1)
    assert votes.tolist() == ["A", "B", "Uncertain", "A"]
    assert composition_text(composition(votes, ["A", "B"])) == "A:0.50;B:0.25;Uncertain:0.25"


def _cells():
    x_rows = [[6, 4]] * 4 + [[4, 6]] * 4 + [[5, 5]] * 2
    zeros = [[0, 0]] * 20
    matrix = np.array(x_rows + zeros, dtype=float)
    labels = np.array(["x"] * 10 + ["y"] * 10 + ["z"] * 10)
    return matrix, labels


def test_votes_on_an_ambiguous_root_feed_vote_composition():
    matrix, labels = _cells()
    rs = ruleset(node("Immune", ["A"]), node("Stroma", ["E"]))
    stats = compute_statistics(matrix, labels, ["A", "E"], ResolvedParams().scoring)
    ann = annotate_clusters(stats, rs, {"A": "A", "E": "E"}, ResolvedParams(), cell_matrix=matrix, cell_clusters=labels)
    r = ann.clusters.set_index("cluster").loc["x"]
    assert (r.final_annotation, r.stop_reason, r.confidence) == ("Immune~Stroma", "ambiguous_root", 0.0)
    assert r.vote_composition == "Immune:0.40;Stroma:0.40;Uncertain:0.20"
    assert ann.votes.cell.tolist() == list(range(10))
    assert ann.votes.vote.tolist()[:4] == ["Immune"] * 4
    trace = with_reasons(ann.trace)
    vote_step = trace[(trace.cluster == "x") & (trace.kind == "vote")]
    assert vote_step.reason.iloc[0] == "per-cell votes among Immune, Stroma: Immune 0.40, Stroma 0.40, Uncertain 0.20 (evidence only; the label is unchanged)"


def test_same_input_gives_identical_tables():
    matrix, labels = _cells()
    rs = ruleset(node("Immune", ["A"]), node("Stroma", ["E"]))

    def run():
        stats = compute_statistics(matrix, labels, ["A", "E"], ResolvedParams().scoring)
        ann = annotate_clusters(stats, rs, {"A": "A", "E": "E"}, ResolvedParams(), cell_matrix=matrix, cell_clusters=labels)
        return [t.to_csv(index=False) for t in (ann.clusters, ann.gating, ann.scores, ann.evidence, ann.trace, ann.votes)]

    assert run() == run()


def test_unresolved_markers_are_listed():
    rs = ruleset(node("Immune", ["A", "PTPRC"]))
    ann = annotate_clusters(make_stats({"c": {"A": (0.9, 1.0)}}, PANEL), rs, MAPPING, ResolvedParams())
    assert ann.unresolved == ["PTPRC"]
    ev = ann.evidence
    assert ev[ev.marker == "PTPRC"].resolved.tolist() == [False]


def test_worked_example_of_docs_semantics():
    panel = ["EPCAM", "KRT8", "CDH1", "PTPRC", "VIM", "ACTA2", "CD3E", "CD68", "PAX8", "FOXJ1"]
    rs = ruleset(
        node("Epithelium", ["EPCAM", "KRT8", "CDH1", "MUC1"], anti=["PTPRC", "VIM", "ACTA2"],
             children=[node("Secretory", ["PAX8", "EPCAM"]), node("Ciliated", ["FOXJ1"])]),
        node("Immune", ["PTPRC", "CD3E", "CD68"]),
    )
    evidence = {"7": {"EPCAM": (0.6, 1.0, 1), "KRT8": (0.2, -0.5), "CDH1": (0.4, 0.8, 4), "PTPRC": (0.5, 1.2),
                      "VIM": (0.1, -0.3), "ACTA2": (0.3, 0.4), "CD3E": (0.05, -0.2), "CD68": (0.1, 0.0),
                      "PAX8": (0.45, 0.9, 2), "FOXJ1": (0.25, 0.3, 3)}}
    ann = annotate_clusters(make_stats(evidence, panel), rs, {m: m for m in panel}, ResolvedParams())
    r = ann.clusters.iloc[0]
    secretory = 0.95 + 0.525 + 0.6 * ((2 / 3 * 0.5) + (1 - 0.5**0.5)) / 2 + 0.3
    ciliated = 0.3 + 0.25 + 0.6 * (1 / 3 * 0.5) + 0.3
    assert (r.final_annotation, r.annotation_path, r.stop_reason) == ("Secretory", "Epithelium / Secretory", "leaf_reached")
    assert r.score == pytest.approx(secretory)
    assert r.confidence == pytest.approx(secretory - ciliated)
    assert (r.runner_up, r.runner_up_score) == ("Ciliated", pytest.approx(ciliated))
    assert score(ann, "7", "Epithelium") == pytest.approx(1.3 / 3 + 0.4 + 0.6 * (1 - 0.5**0.5) / 3 + 0.3 * 2 / 3 - 0.6)


# A parent whose own marker reads low where its subtypes are unmistakable (CD45 on CODEX
# granulocytes and plasma cells): A = the parent's marker, C and D its subtypes', E a rival lineage.
SUB_RS = ruleset(
    node("Immune", ["A"], anti=["E"], children=[node("Gran", ["C"]), node("Mac", ["D"])]),
    node("Stroma", ["E"]),
)
SUB_EVIDENCE = {
    "gran": {"A": (0.05, 0.2), "C": (0.9, 3.0)},  # parent marker dim, subtype clear
    "gran_in_stroma": {"A": (0.05, 0.2), "C": (0.9, 3.0), "E": (0.9, 3.0)},  # the parent's anti-marker conflicts
    "dim_only": {"A": (0.05, 0.2)},  # no subtype passes: nothing carries the parent
    "against": {"A": (0.0, -1.0), "C": (0.9, 3.0)},  # the parent's own enrichment is against it
}


def subtype_annotation(on: bool):
    params = ResolvedParams(gating=GatingParams(coverage_from_subtypes=on))
    return annotate_clusters(make_stats(SUB_EVIDENCE, PANEL), SUB_RS, MAPPING, params)


def test_a_subtype_that_passes_every_gate_carries_its_parents_coverage():
    ann = subtype_annotation(True)
    labels = dict(zip(ann.clusters["cluster"], ann.clusters["annotation_path"]))
    assert labels["gran"] == "Immune / Gran"
    # the parent's other gates still hold: an anti-marker conflict, or enrichment against it
    assert labels["gran_in_stroma"] == "Stroma"
    assert labels["dim_only"] == "Unassigned"
    assert labels["against"] == "Unassigned"
    step = ann.trace[(ann.trace["cluster"] == "gran") & (ann.trace["cell_type"] == "Immune")
                     & (ann.trace["gate"] == "coverage")].iloc[0]
    assert (step["observed"] < step["threshold"], bool(step["passed"]), step["candidates"]) == (True, True, "Gran")
    reasons = with_reasons(ann.trace)
    reason = reasons.loc[step.name, "reason"]
    assert "subtype Gran passed every gate" in reason and "coverage 0.00 < 0.34" in reason


def test_without_coverage_from_subtypes_the_parent_needs_its_own_markers():
    ann = subtype_annotation(False)
    labels = dict(zip(ann.clusters["cluster"], ann.clusters["annotation_path"]))
    assert labels["gran"] == "Unassigned"
    assert (ann.trace.loc[ann.trace["gate"] == "coverage", "candidates"] == "").all()
