"""Every gate of semantics §6 passing and failing, with its threshold's provenance and reason."""

from __future__ import annotations

import numpy as np
import pytest
from test_scoring import MAPPING, make_stats, node, ruleset

from ctr.diagnostics import SourceLoc
from ctr.engine import annotate_clusters
from ctr.engine.annotate import gate_step
from ctr.engine.gates import gate_node
from ctr.engine.scoring import ClusterEvidence, document_frequency, score_node
from ctr.report.sentences import gate_reason, gating_with_reasons
from ctr.rules import expr as E
from ctr.rules.model import Condition, Requirement, Veto
from ctr.rules.params import GatingParams, LevelParams, ResolvedParams, resolve_params

LOC = SourceLoc(file="tube.ctr", line=14, column=3)
# c1: an epithelial cluster; c2: an immune one
EVIDENCE = {
    "c1": {"A": (0.60, 1.0), "B": (0.40, 0.5), "C": (0.05, -0.2), "D": (0.10, 0.0)},
    "c2": {"A": (0.10, -1.0), "B": (0.00, -0.8), "C": (0.80, 2.0), "D": (0.70, 1.5)},
}


class Worded:
    """A gate outcome with its trace rows in words (``reasons``, one per cluster), as the trace shows them."""

    def __init__(self, gate, node, clusters):
        self.gate_outcome = gate
        self.reasons = [gate_reason(gate_step(c, i, node, gate)) for i, c in enumerate(clusters)]

    def __getattr__(self, name):
        return getattr(self.gate_outcome, name)


def subject(g) -> str:
    """What a gate row is about: pos_frac(A), the marker alone when it is not in the panel, the condition, the statistic."""
    if g.marker and g.statistic:
        return f"{g.statistic}({g.marker})"
    return g.marker or g.expression or g.statistic


def gates(n, params=None, rs=None, evidence=EVIDENCE):
    rs = rs or ruleset(n)
    params = params or ResolvedParams()
    ev = ClusterEvidence.from_statistics(make_stats(evidence))
    cell_type = rs.roots[0]
    ns = score_node(ev, cell_type, MAPPING, params, document_frequency(rs, MAPPING), rs.cell_type_count)
    return {(g.gate, subject(g)): Worded(g, cell_type, ev.clusters) for g in gate_node(ev, ns, MAPPING, params, rs)}


def test_gate_order_and_every_gate_recorded():
    n = node("Epi", ["A", "B"], anti=["C"], requires=[Requirement(marker="A", min_pos_frac=0.5)],
             vetoes=[Veto(markers=["C"], max_pos_frac=0.25)],
             conditions=[Condition(expr=E.Compare(op=">", left=E.Var(name="coverage"), right=E.Num(value=0.1)), text="coverage > 0.1")])
    names = [g[0] for g in gates(n)]
    assert names == ["panel", "requirement", "requirement", "veto", "coverage", "enrichment", "condition", "anti_conflict"]


def test_requirement_passes_and_fails_with_reason():
    n = node("Epi", ["A"], requires=[Requirement(marker="A", min_pos_frac=0.5, min_enrichment=0.8, loc=LOC)])
    g = gates(n)
    pf, enr = g[("requirement", "pos_frac(A)")], g[("requirement", "enrichment(A)")]
    assert pf.passed.tolist() == [True, False]
    assert enr.passed.tolist() == [True, False]
    assert pf.reasons[1] == "A pos_frac 0.10 < 0.50 required (rule tube.ctr:14:3)"
    assert pf.reasons[0] == "A pos_frac 0.60 >= 0.50 required (rule tube.ctr:14:3)"
    assert pf.provenance.rule_loc == "tube.ctr:14:3"


def test_requirement_defaults_to_level_thresholds():
    n = node("Epi", ["A"], requires=[Requirement(marker="B")])
    g = gates(n)
    pf = g[("requirement", "pos_frac(B)")]
    assert pf.threshold[0] == 0.30  # level 0 min_pos_frac
    assert pf.passed.tolist() == [True, False]
    assert pf.provenance.source == "default"
    assert "(gating.level_defaults.0.min_pos_frac, default)" in pf.reasons[0]


def test_requirement_on_missing_marker_fails():
    n = node("Epi", ["A"], requires=[Requirement(marker="EPCAM", loc=LOC)])
    g = gates(n)[("requirement", "EPCAM")]
    assert g.passed.tolist() == [False, False]
    assert np.isnan(g.observed).all()
    assert g.reasons[0] == "marker EPCAM is not in the panel, so the requirement fails (rule tube.ctr:14:3)"


def test_veto_per_marker():
    n = node("Epi", ["A"], vetoes=[Veto(markers=["C", "D", "PTPRC"], max_pos_frac=0.25, loc=LOC)])
    g = gates(n)
    assert g[("veto", "pos_frac(C)")].passed.tolist() == [True, False]
    assert g[("veto", "pos_frac(D)")].passed.tolist() == [True, False]
    assert g[("veto", "pos_frac(C)")].reasons[1] == "C pos_frac 0.80 > 0.25: vetoed (rule tube.ctr:14:3)"
    missing = g[("veto", "pos_frac(PTPRC)")]
    assert missing.passed.tolist() == [True, True]
    assert "not in the panel" in missing.reasons[0]


def test_veto_boundary_is_strict():
    n = node("Epi", ["A"], vetoes=[Veto(markers=["D"], max_pos_frac=0.10)])
    assert gates(n)[("veto", "pos_frac(D)")].passed.tolist() == [True, False]  # 0.10 is not > 0.10


def test_coverage_gate_lists_markers_on():
    n = node("Epi", ["A", "B", "C", "X"])
    g = gates(n)[("coverage", "coverage")]
    # c1: A and B on (>= 0.30) of the 3 measured -> 0.67 >= 0.50; c2: C only -> 0.33 (X is not measured)
    assert g.observed.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert g.passed.tolist() == [True, False]
    assert g.reasons[0].startswith("coverage 0.67 >= 0.34: 2 of 3 measured markers on (A, B); not in the panel: X")


def test_panel_gate_fails_a_type_the_panel_cannot_judge():
    # by default one measured marker is enough; none is not
    assert gates(node("Epi", ["A", "X", "Y"]))[("panel", "measured_markers")].passed.all()
    none = gates(node("Epi", ["X", "Y"]))[("panel", "measured_markers")]
    assert none.observed.tolist() == [0, 0] and none.threshold.tolist() == [1, 1] and not none.passed.any()
    two = ResolvedParams(gating=GatingParams(min_measured_markers=2))
    g = gates(node("Epi", ["A", "X", "Y"]), params=two)[("panel", "measured_markers")]
    assert g.observed.tolist() == [1, 1] and g.threshold.tolist() == [2, 2]
    assert g.passed.tolist() == [False, False]
    assert g.reasons[0].startswith("1 of 3 positive markers measured on this panel, 2 needed to judge Epi (not in the panel: X, Y)")
    assert gates(node("Epi", ["A"]), params=two)[("panel", "measured_markers")].passed.all()  # one listed, one measured


def test_enrichment_gate():
    g = gates(node("Epi", ["A", "B"]))[("enrichment", "mean_enrichment")]
    assert g.observed.tolist() == pytest.approx([0.75, -0.9])
    assert g.passed.tolist() == [True, False]


def test_condition_gate_uses_the_interpreter():
    cond = Condition(expr=E.Compare(op=">", left=E.MarkerStat(func="pos_frac", marker="A"),
                                    right=E.BinOp(op="*", left=E.Num(value=2), right=E.MarkerStat(func="pos_frac", marker="B"))),
                     text="pos_frac(A) > 2 * pos_frac(B)", loc=LOC)
    g = gates(node("Epi", ["A"], conditions=[cond]))[("condition", "pos_frac(A) > 2 * pos_frac(B)")]
    # c1: 0.6 > 0.8 false; c2: 0.1 > 0 true
    assert g.passed.tolist() == [False, True]
    assert g.observed.tolist() == pytest.approx([0.6, 0.1])
    assert g.threshold.tolist() == pytest.approx([0.8, 0.0])
    assert g.reasons[0] == ("condition `pos_frac(A) > 2 * pos_frac(B)` fails: pos_frac(A)=0.60 > "
                            "2 * pos_frac(B)=0.80 is false (rule tube.ctr:14:3)")


def test_condition_with_missing_marker_fails_and_says_so():
    cond = Condition(expr=E.Compare(op="<", left=E.MarkerStat(func="pos_frac", marker="NOPE"), right=E.Num(value=0.5)), text="")
    g = gates(node("Epi", ["A"], conditions=[cond]))[("condition", "pos_frac(NOPE) < 0.5")]
    assert g.passed.tolist() == [False, False]
    assert "marker NOPE missing" in g.reasons[0]


def test_anti_conflict_gate_only_with_anti_markers():
    assert ("anti_conflict", "anti_penalty") not in gates(node("Epi", ["A"]))
    g = gates(node("Epi", ["A"], anti=["C", "D"]))[("anti_conflict", "anti_penalty")]
    # c2: top2mean of enrichment (2.0, 1.5) and pos_frac (0.8, 0.7) -> 0.5 * (1.75 + 0.75) = 1.25 > 1.0
    assert g.observed.tolist() == pytest.approx([0.5 * (0.0 + 0.075), 1.25])
    assert g.passed.tolist() == [True, False]


def test_thresholds_cite_node_override_ruleset_block_and_cli():
    n = node("Epi", ["A", "B"], overrides=LevelParams(min_coverage=0.9), override_locs={"min_coverage": LOC})
    g = gates(n)[("coverage", "coverage")]
    assert g.threshold[0] == 0.9 and g.provenance.rule_loc == "tube.ctr:14:3"
    assert (g.provenance.source, g.provenance.setting.scope) == ("ruleset", "node")

    block_loc = SourceLoc(file="tube.ctr", line=3, column=10)
    rs = ruleset(node("Epi", ["A", "B"]))
    rs.param_locs["gating.level_defaults.0.min_coverage"] = block_loc
    params = resolve_params([("ruleset", {"gating": GatingParams(level_defaults={0: LevelParams(min_coverage=0.7)})})])
    g = gates(None, params, rs)[("coverage", "coverage")]
    assert g.threshold[0] == 0.7 and g.provenance.source == "ruleset" and g.provenance.rule_loc == "tube.ctr:3:10"

    params = resolve_params([("cli", {"gating": GatingParams(anti_penalty_hard_gate=2.0)})])
    g = gates(None, params, ruleset(node("Epi", ["A"], anti=["C"])))[("anti_conflict", "anti_penalty")]
    assert g.threshold[0] == 2.0 and g.provenance.rule_loc == "cli" and g.provenance.source == "cli"


def test_all_gates_recorded_after_a_failure_in_the_trace():
    n = node("Epi", ["A", "B"], anti=["C", "D"], requires=[Requirement(marker="A", min_pos_frac=0.5, loc=LOC)])
    rs = ruleset(n)
    ann = annotate_clusters(make_stats(EVIDENCE), rs, MAPPING, ResolvedParams())
    c2 = ann.trace[(ann.trace.cluster == "c2") & (ann.trace.kind == "gate")]
    assert c2.gate.tolist() == ["panel", "requirement", "requirement", "coverage", "enrichment", "anti_conflict"]
    c2 = c2[c2.gate != "panel"]
    assert not c2.passed.any()
    row = ann.gating[ann.gating.cluster == "c2"].iloc[0]
    assert row.failed_gates == "requirement;coverage;enrichment;anti_conflict"
    row = gating_with_reasons(ann.gating, ann.trace).set_index("cluster").loc["c2"]
    assert row.reason.startswith("A pos_frac 0.10 < 0.50 required (rule tube.ctr:14:3); ")
    assert ann.clusters.set_index("cluster").loc["c2", "n_gates_failed"] == 5


def test_marker_without_values_in_a_cluster_is_missing_for_gates():
    evidence = {"c1": {"A": (None, None), "B": (0.5, 1.0)}}
    n = node("Epi", ["A", "B"], requires=[Requirement(marker="A", min_pos_frac=0.1)], vetoes=[Veto(markers=["A"])])
    ev = ClusterEvidence.from_statistics(make_stats(evidence))
    rs = ruleset(n)
    ns = score_node(ev, rs.roots[0], MAPPING, ResolvedParams(), document_frequency(rs, MAPPING), 1)
    assert ns.coverage[0] == 0.5  # A is not on
    assert ns.mean_enrichment[0] == 1.0  # the mean skips A
    g = gates(n, evidence=evidence)
    req = g[("requirement", "pos_frac(A)")]
    assert not req.passed[0] and "every value missing" in req.reasons[0]
    assert g[("veto", "pos_frac(A)")].passed[0]
