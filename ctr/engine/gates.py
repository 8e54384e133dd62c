"""The six gates of semantics §6, each evaluated for one cell type over all clusters at once.

Every gate is evaluated even after another failed, so an explanation can list all failures.
Order: requirement, veto, coverage, enrichment, condition, anti_conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.engine.conditions import Context, evaluate, explain
from ctr.engine.scoring import ClusterEvidence, NodeScores
from ctr.engine.trace import Provenance, fmt, fmt_pair, param_provenance, rule_provenance, threshold_provenance
from ctr.rules.expr import Compare
from ctr.rules.model import Ruleset
from ctr.rules.params import ResolvedParams

GATE_ORDER = ("requirement", "veto", "coverage", "enrichment", "condition", "anti_conflict")
_STAT_ARRAYS = {"pos_frac": "pos_frac", "enrichment": "enrichment", "median": "median", "mean": "mean", "de_z": "de_z"}


@dataclass
class GateResult:
    """One gate of one cell type, over all clusters."""

    gate: str
    subject: str
    operator: str  # the comparison that passes
    observed: np.ndarray
    threshold: np.ndarray
    passed: np.ndarray
    reasons: list[str]
    provenance: Provenance


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _compare(values: np.ndarray, op: str, threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        out = {">=": values >= threshold, ">": values > threshold, "<=": values <= threshold, "<": values < threshold}[op]
    return out & ~np.isnan(values)


def _full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def _panel_col(name: str, mapping: dict[str, str], ev: ClusterEvidence) -> int | None:
    panel = mapping.get(name)
    return ev.column.get(panel) if panel is not None else None


def requirement_gates(ev, ns: NodeScores, mapping, params, ruleset) -> list[GateResult]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateResult] = []
    for req in node.requires:
        col = _panel_col(req.marker, mapping, ev)
        if col is None:
            prov = rule_provenance(req.loc)
            reason = f"marker {req.marker} is not in the panel, so the requirement fails{prov.cite('requirement')}"
            out.append(GateResult("requirement", req.marker, ">=", _full(n, np.nan), _full(n, np.nan),
                                  np.zeros(n, bool), [reason] * n, prov))
            continue
        checks = (("pos_frac", req.min_pos_frac, ns.thresholds.min_pos_frac, "min_pos_frac", ev.pos_frac),
                  ("enrichment", req.min_enrichment, ns.thresholds.min_enrichment, "min_enrichment", ev.enrichment))
        for stat, own, level_value, key, table in checks:
            threshold = own if own is not None else level_value
            prov = (rule_provenance(req.loc, own, node=node, key=key, params=params) if own is not None
                    else threshold_provenance(node, key, params, ruleset))
            observed = table[:, col]
            passed = _compare(observed, ">=", threshold)
            reasons = []
            for value, ok in zip(observed, passed):
                if np.isnan(value):
                    reasons.append(f"{req.marker} has no {stat} in this cluster (every value missing), so the requirement fails{prov.cite(f'level {node.level} {key}')}")
                    continue
                a, b = fmt_pair(value, threshold)
                reasons.append(f"{req.marker} {stat} {a} {'>=' if ok else '<'} {b} required{prov.cite(f'level {node.level} {key}')}")
            out.append(GateResult("requirement", f"{stat}({req.marker})", ">=", observed, _full(n, threshold), passed, reasons, prov))
    return out


def veto_gates(ev, ns: NodeScores, mapping) -> list[GateResult]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateResult] = []
    for veto in node.vetoes:
        prov = rule_provenance(veto.loc, veto.max_pos_frac)
        for marker in veto.markers:
            col = _panel_col(marker, mapping, ev)
            if col is None:
                reason = f"marker {marker} is not in the panel, so its veto is not applied{prov.cite('veto')}"
                out.append(GateResult("veto", f"pos_frac({marker})", "<=", _full(n, np.nan), _full(n, veto.max_pos_frac),
                                      np.ones(n, bool), [reason] * n, prov))
                continue
            observed = ev.pos_frac[:, col]
            with np.errstate(invalid="ignore"):
                passed = ~(observed > veto.max_pos_frac)  # no value: no evidence to veto
            reasons = []
            for value, ok in zip(observed, passed):
                a, b = fmt_pair(value, veto.max_pos_frac)
                if np.isnan(value):
                    reasons.append(f"{marker} has no values in this cluster, so its veto is not applied{prov.cite('veto')}")
                elif ok:
                    reasons.append(f"{marker} pos_frac {a} <= {b}: not vetoed{prov.cite('veto')}")
                else:
                    reasons.append(f"{marker} pos_frac {a} > {b}: vetoed{prov.cite('veto')}")
            out.append(GateResult("veto", f"pos_frac({marker})", "<=", observed, _full(n, veto.max_pos_frac), passed, reasons, prov))
    return out


def coverage_gate(ev, ns: NodeScores, params, ruleset) -> GateResult:
    node, n = ns.node, len(ev.clusters)
    threshold = ns.thresholds.min_coverage
    prov = threshold_provenance(node, "min_coverage", params, ruleset)
    passed = _compare(ns.coverage, ">=", threshold)
    missing = f"; not in the panel: {', '.join(ns.missing)}" if ns.missing else ""
    reasons = []
    for i in range(n):
        on = [m for m, flag in zip(ns.positive, ns.on[i]) if flag]
        a, b = fmt_pair(ns.coverage[i], threshold)
        listed = f"({', '.join(on)})" if on else ""
        reasons.append(
            f"coverage {a} {'>=' if passed[i] else '<'} {b}: {len(on)} of {_count(ns.n_listed, 'marker')} on {listed}".rstrip()
            + f" at pos_frac >= {fmt(ns.thresholds.min_pos_frac)}{missing}{prov.cite(f'level {node.level} min_coverage')}"
        )
    return GateResult("coverage", "coverage", ">=", ns.coverage, _full(n, threshold), passed, reasons, prov)


def enrichment_gate(ev, ns: NodeScores, params, ruleset) -> GateResult:
    node, n = ns.node, len(ev.clusters)
    threshold = ns.thresholds.min_enrichment
    prov = threshold_provenance(node, "min_enrichment", params, ruleset)
    passed = _compare(ns.mean_enrichment, ">=", threshold)
    reasons = []
    for i in range(n):
        a, b = fmt_pair(ns.mean_enrichment[i], threshold)
        over = f"over {_count(len(ns.positive), 'resolved marker')}" if ns.positive else "(no marker of this type is in the panel)"
        reasons.append(f"mean enrichment {a} {'>=' if passed[i] else '<'} {b} {over}{prov.cite(f'level {node.level} min_enrichment')}")
    return GateResult("enrichment", "mean_enrichment", ">=", ns.mean_enrichment, _full(n, threshold), passed, reasons, prov)


def condition_gates(ev: ClusterEvidence, ns: NodeScores, mapping) -> list[GateResult]:
    node, n = ns.node, len(ev.clusters)
    out: list[GateResult] = []
    for cond in node.conditions:
        prov = rule_provenance(cond.loc, scope="node")
        text = cond.render()
        observed, threshold, passed, reasons = np.zeros(n), np.zeros(n), np.zeros(n, bool), []
        top_compare = isinstance(cond.expr, Compare)
        for i in range(n):
            result = evaluate(cond.expr, _context(ev, ns, mapping, i))
            passed[i] = bool(result.value)
            if top_compare:
                observed[i], threshold[i] = result.children[0].value, result.children[1].value
            else:
                observed[i], threshold[i] = float(passed[i]), 1.0
            verdict = "holds" if passed[i] else "fails"
            reasons.append(f"condition `{text}` {verdict}: {explain(result)}{prov.cite('condition')}")
        op = cond.expr.op if top_compare else "=="
        out.append(GateResult("condition", text, op, observed, threshold, passed, reasons, prov))
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


def anti_conflict_gate(ev, ns: NodeScores, params, ruleset) -> list[GateResult]:
    node, n = ns.node, len(ev.clusters)
    if not node.anti:
        return []
    threshold = params.gating.anti_penalty_hard_gate
    prov = param_provenance("gating.anti_penalty_hard_gate", params, ruleset)
    passed = _compare(ns.anti_penalty, "<=", threshold)
    reasons = []
    for i in range(n):
        a, b = fmt_pair(ns.anti_penalty[i], threshold)
        detail = ", ".join(
            f"{m} pos_frac {fmt(ev.pos_frac[i, c])} enrichment {fmt(ev.enrichment[i, c])}" for m, c in zip(ns.anti, ns.anti_cols)
        ) or "no anti-marker in the panel"
        verdict = "<= {b} allowed" if passed[i] else "> {b} allowed: the anti-markers conflict"
        reasons.append(f"anti-marker penalty {a} {verdict.format(b=b)} ({detail}){prov.cite('anti_penalty_hard_gate')}")
    return [GateResult("anti_conflict", "anti_penalty", "<=", ns.anti_penalty, _full(n, threshold), passed, reasons, prov)]


def gate_node(
    ev: ClusterEvidence, ns: NodeScores, mapping: dict[str, str], params: ResolvedParams, ruleset: Ruleset
) -> list[GateResult]:
    """Every gate of ``ns.node`` over all clusters, in §6 order."""
    return [
        *requirement_gates(ev, ns, mapping, params, ruleset),
        *veto_gates(ev, ns, mapping),
        coverage_gate(ev, ns, params, ruleset),
        enrichment_gate(ev, ns, params, ruleset),
        *condition_gates(ev, ns, mapping),
        *anti_conflict_gate(ev, ns, params, ruleset),
    ]


def node_passed(gates: list[GateResult], n_clusters: int) -> np.ndarray:
    out = np.ones(n_clusters, bool)
    for g in gates:
        out &= g.passed
    return out


