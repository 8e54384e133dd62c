"""The six gates of semantics §6, each evaluated for one cell type over all clusters at once.

Every gate is evaluated even after another failed, so an explanation can list all failures.
Order: requirement, veto, coverage, enrichment, condition, anti_conflict. A gate records values
(what was measured, the threshold and where it came from); ``ctr.report`` puts them in words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from ctr.engine.conditions import Context, evaluate, evaluation_tree
from ctr.engine.scoring import ClusterEvidence, NodeScores
from ctr.engine.trace import Provenance, param_provenance, rule_provenance, threshold_provenance
from ctr.rules.expr import Compare
from ctr.rules.model import Ruleset
from ctr.rules.params import ResolvedParams

GATE_ORDER = ("panel", "requirement", "veto", "coverage", "enrichment", "condition", "anti_conflict")
_STAT_ARRAYS = {"pos_frac": "pos_frac", "enrichment": "enrichment", "median": "median", "mean": "mean", "de_z": "de_z"}


@dataclass
class GateOutcome:
    """One gate of one cell type, over all clusters (arrays are per cluster)."""

    gate: str
    statistic: str  # what was measured: pos_frac, enrichment, coverage, mean_enrichment, condition, anti_penalty
    comparison: str  # the comparison that passes
    observed: np.ndarray
    threshold: np.ndarray
    passed: np.ndarray
    provenance: Provenance
    marker: str = ""  # the one marker a requirement or veto row is about
    expression: str = ""  # a condition as written
    absent: list[str] = field(default_factory=list)  # the row's markers that are not in the panel
    markers: list[str] | None = None  # per cluster ";"-joined markers (coverage: those on)
    n_markers: int | None = None
    values: list[str] | None = None  # per cluster JSON (a condition's evaluation tree)
    carried_by: list[str] | None = None  # per cluster ";"-joined subtypes that passed the coverage gate for it

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What was evaluated, the same in every run of the same ruleset."""
        return (self.gate, self.marker, self.statistic, self.expression)


def _compare(values: np.ndarray, op: str, threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        out = {">=": values >= threshold, ">": values > threshold, "<=": values <= threshold, "<": values < threshold}[op]
    return out & ~np.isnan(values)


def _full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def _panel_col(name: str, mapping: dict[str, str], ev: ClusterEvidence) -> int | None:
    panel = mapping.get(name)
    return ev.column.get(panel) if panel is not None else None


def panel_gate(ev, ns: NodeScores, params, ruleset) -> GateOutcome:
    """Does the panel measure enough of the type's positive markers to judge it at all?"""
    n = len(ev.clusters)
    return GateOutcome("panel", "measured_markers", ">=", _full(n, len(ns.positive)), _full(n, ns.needed),
                       np.full(n, ns.assessable), param_provenance("gating.min_measured_markers", params, ruleset),
                       absent=list(ns.missing), n_markers=ns.n_listed)


def requirement_gates(ev, ns: NodeScores, mapping, params, ruleset) -> list[GateOutcome]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateOutcome] = []
    for req in node.requires:
        col = _panel_col(req.marker, mapping, ev)
        if col is None:  # not in the panel: the requirement fails
            out.append(GateOutcome("requirement", "", ">=", _full(n, np.nan), _full(n, np.nan), np.zeros(n, bool),
                                   rule_provenance(req.loc), marker=req.marker, absent=[req.marker]))
            continue
        checks = (("pos_frac", req.min_pos_frac, ns.thresholds.min_pos_frac, "min_pos_frac", ev.pos_frac),
                  ("enrichment", req.min_enrichment, ns.thresholds.min_enrichment, "min_enrichment", ev.enrichment))
        for stat, own, level_value, key, table in checks:
            threshold = own if own is not None else level_value
            prov = (rule_provenance(req.loc, own, node=node, key=key, params=params) if own is not None
                    else threshold_provenance(node, key, params, ruleset))
            observed = table[:, col]
            out.append(GateOutcome("requirement", stat, ">=", observed, _full(n, threshold),
                                   _compare(observed, ">=", threshold), prov, marker=req.marker))
    return out


def veto_gates(ev, ns: NodeScores, mapping) -> list[GateOutcome]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateOutcome] = []
    for veto in node.vetoes:
        prov = rule_provenance(veto.loc, veto.max_pos_frac)
        for marker in veto.markers:
            col = _panel_col(marker, mapping, ev)
            if col is None:  # not in the panel: no evidence to veto
                out.append(GateOutcome("veto", "pos_frac", "<=", _full(n, np.nan), _full(n, veto.max_pos_frac),
                                       np.ones(n, bool), prov, marker=marker, absent=[marker]))
                continue
            observed = ev.pos_frac[:, col]
            with np.errstate(invalid="ignore"):
                passed = ~(observed > veto.max_pos_frac)  # no value: no evidence to veto
            out.append(GateOutcome("veto", "pos_frac", "<=", observed, _full(n, veto.max_pos_frac), passed, prov,
                                   marker=marker))
    return out


def coverage_gate(ev, ns: NodeScores, params, ruleset) -> GateOutcome:
    threshold = ns.thresholds.min_coverage
    on = [";".join(m for m, flag in zip(ns.positive, row) if flag) for row in ns.on]
    return GateOutcome("coverage", "coverage", ">=", ns.coverage, _full(len(ev.clusters), threshold),
                       _compare(ns.coverage, ">=", threshold), threshold_provenance(ns.node, "min_coverage", params, ruleset),
                       absent=list(ns.missing), markers=on, n_markers=len(ns.positive))


def credit_subtypes(coverage: GateOutcome, subtypes: list[tuple[str, np.ndarray]]) -> GateOutcome:
    """``coverage`` passed also where one of the type's subtypes (name, passed per cluster) passed
    every gate: a subtype is a kind of its parent, so a cluster that is convincingly one is the
    parent too, even when the parent's own markers read low (CD45 on CODEX granulocytes, plasma
    cells that lose it). The type's other gates (enrichment, anti-markers, rules) still apply."""
    carried = [";".join(name for name, passed in subtypes if passed[i]) if not coverage.passed[i] else ""
               for i in range(len(coverage.passed))]
    passed = coverage.passed | np.array([bool(c) for c in carried], dtype=bool)
    return replace(coverage, passed=passed, carried_by=carried)


def enrichment_gate(ev, ns: NodeScores, params, ruleset) -> GateOutcome:
    threshold = ns.thresholds.min_enrichment
    n = len(ev.clusters)
    return GateOutcome("enrichment", "mean_enrichment", ">=", ns.mean_enrichment, _full(n, threshold),
                       _compare(ns.mean_enrichment, ">=", threshold),
                       threshold_provenance(ns.node, "min_enrichment", params, ruleset),
                       markers=[";".join(ns.positive)] * n, n_markers=len(ns.positive))


def condition_gates(ev: ClusterEvidence, ns: NodeScores, mapping) -> list[GateOutcome]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateOutcome] = []
    for cond in node.conditions:
        observed, threshold, passed, values = np.zeros(n), np.zeros(n), np.zeros(n, bool), []
        top_compare = isinstance(cond.expr, Compare)
        for i in range(n):
            result = evaluate(cond.expr, _context(ev, ns, mapping, i))
            passed[i] = bool(result.value)
            if top_compare:
                observed[i], threshold[i] = result.children[0].value, result.children[1].value
            else:
                observed[i], threshold[i] = float(passed[i]), 1.0
            values.append(json.dumps(evaluation_tree(result)))
        op = cond.expr.op if top_compare else "=="
        out.append(GateOutcome("condition", "condition", op, observed, threshold, passed,
                               rule_provenance(cond.loc, scope="node"), expression=cond.render(), values=values))
    return out


def _context(ev: ClusterEvidence, ns: NodeScores, mapping, i: int) -> Context:
    def marker_stat(func: str, marker: str) -> float:
        col = _panel_col(marker, mapping, ev)
        return float("nan") if col is None else float(getattr(ev, _STAT_ARRAYS[func])[i, col])

    node_vars = {
        "coverage": ns.coverage[i], "panel_coverage": ns.panel_coverage[i], "mean_enrichment": ns.mean_enrichment[i],
        "mean_positive": ns.mean_positive[i], "anti_penalty": ns.anti_penalty[i], "score": ns.score[i],
        "n_cells": float(ev.n_cells[i]),
    }
    return Context(marker_stat, node_vars)


def anti_conflict_gate(ev, ns: NodeScores, params, ruleset) -> list[GateOutcome]:
    node, n = ns.node, len(ev.clusters)
    if not node.anti:
        return []
    threshold = params.gating.anti_penalty_hard_gate
    prov = param_provenance("gating.anti_penalty_hard_gate", params, ruleset)
    resolved = ";".join(ns.anti)
    return [GateOutcome("anti_conflict", "anti_penalty", "<=", ns.anti_penalty, _full(n, threshold),
                        _compare(ns.anti_penalty, "<=", threshold), prov, markers=[resolved] * n)]


def gate_node(
    ev: ClusterEvidence, ns: NodeScores, mapping: dict[str, str], params: ResolvedParams, ruleset: Ruleset
) -> list[GateOutcome]:
    """Every gate of ``ns.node`` over all clusters, in §6 order."""
    return [
        panel_gate(ev, ns, params, ruleset),
        *requirement_gates(ev, ns, mapping, params, ruleset),
        *veto_gates(ev, ns, mapping),
        coverage_gate(ev, ns, params, ruleset),
        enrichment_gate(ev, ns, params, ruleset),
        *condition_gates(ev, ns, mapping),
        *anti_conflict_gate(ev, ns, params, ruleset),
    ]


def node_passed(gates: list[GateOutcome], n_clusters: int) -> np.ndarray:
    out = np.ones(n_clusters, bool)
    for g in gates:
        out &= g.passed
    return out


