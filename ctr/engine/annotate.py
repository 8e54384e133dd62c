"""Annotate clusters: score and gate every cell type, decide per cluster, and lay out the tables
(cluster_annotations, gating_details, marker_scores, marker_evidence, decision_steps, votes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctr.engine.decide import AMBIGUITY_SEP, Decision, NodeEvaluation, Selection, decide_cluster
from ctr.engine.gates import gate_node, node_passed
from ctr.engine.scoring import ClusterEvidence, document_frequency, score_node
from ctr.engine.trace import Step, fmt, fmt_pair, param_provenance, trace_frame
from ctr.engine.votes import cell_scores, composition, composition_text, vote
from ctr.rules.expr import markers_in
from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import ResolvedParams
from ctr.stats import Statistics

CLUSTER_COLUMNS = [
    "cluster", "final_annotation", "annotation_path", "level", "root", "score", "confidence", "uncontested",
    "stop_reason", "n_cells", "runner_up", "runner_up_score", "margin", "ambiguous_candidates",
    "vote_composition", "refinement_action", "n_gates_failed",
]
GATING_COLUMNS = [
    "cluster", "cell_type", "path", "level", "parent", "root_type", "coverage", "panel_coverage", "pos_frac",
    "enrichment", "de_component", "anti_penalty", "score", "passed", "failed_gates", "reason",
]
SCORE_COLUMNS = [
    "cluster", "cell_type", "path", "level", "mean_enrichment", "mean_positive", "de_component", "coverage",
    "coverage_term", "anti_penalty", "score",
]
EVIDENCE_COLUMNS = [
    "cluster", "cell_type", "path", "marker", "panel_name", "role", "resolved", "median", "pos_frac",
    "enrichment", "threshold", "de_z", "de_rank",
]
VOTE_COLUMNS = ["cell", "cluster", "candidates", "vote"]


@dataclass
class Annotation:
    """The engine's result: the tables written to the run directory, plus the decisions."""

    clusters: pd.DataFrame
    gating: pd.DataFrame
    scores: pd.DataFrame
    evidence: pd.DataFrame
    trace: pd.DataFrame
    votes: pd.DataFrame
    unresolved: list[str] = field(default_factory=list)
    flat: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # every cell type scored and gated over every cluster: what the decisions read (refinement reuses it)
    cluster_evidence: ClusterEvidence | None = None
    evaluations: dict[tuple, NodeEvaluation] = field(default_factory=dict)


def evaluate_nodes(
    ev: ClusterEvidence, ruleset: Ruleset, mapping: dict[str, str], params: ResolvedParams
) -> dict[tuple, NodeEvaluation]:
    """Score and gate every cell type of the ruleset over every cluster of ``ev``."""
    doc_freq = document_frequency(ruleset, mapping)
    n_types = max(ruleset.cell_type_count, 1)
    out: dict[tuple, NodeEvaluation] = {}
    for order, node in enumerate(ruleset.walk()):
        ns = score_node(ev, node, mapping, params, doc_freq, n_types)
        gates = gate_node(ev, ns, mapping, params, ruleset)
        out[node.path] = NodeEvaluation(ns, gates, node_passed(gates, len(ev.clusters)), order)
    return out


def annotate_clusters(
    stats: Statistics,
    ruleset: Ruleset,
    mapping: dict[str, str],
    params: ResolvedParams,
    *,
    cell_matrix=None,
    cell_clusters=None,
) -> Annotation:
    """Annotate every cluster of ``stats`` with ``ruleset``.

    ``mapping``: ruleset marker name -> panel column name (resolved markers only). ``cell_matrix``
    (cells x ``stats.markers``, dense or sparse) and ``cell_clusters`` (a label per cell) enable
    per-cell votes on ambiguities; without them votes are skipped.
    """
    ev = ClusterEvidence.from_statistics(stats)
    evaluations = evaluate_nodes(ev, ruleset, mapping, params)
    decisions = [decide_cluster(i, c, ruleset, evaluations, params) for i, c in enumerate(ev.clusters)]
    cells = cells_by_cluster(cell_clusters) if cell_matrix is not None and cell_clusters is not None else None

    steps: list[Step] = []
    cluster_rows, vote_frames = [], []
    for d in decisions:
        d_steps = _decision_steps(d, evaluations, ruleset, params)
        shares = ""
        if d.ambiguous and cells is not None and d.cluster in cells:
            frame, shares_list = _votes(d, cells[d.cluster], cell_matrix, ev, evaluations, params)
            vote_frames.append(frame)
            shares = composition_text(shares_list)
            d_steps.append(_vote_step(d, shares_list, params, ruleset))
        steps.extend(d_steps)
        n_failed = sum(1 for s in d_steps if s.kind == "gate" and not s.passed)
        cluster_rows.append(_cluster_row(d, ev, evaluations, shares, n_failed))

    unresolved = [m for m in ruleset.all_markers() if mapping.get(m) not in ev.column]
    votes = pd.concat(vote_frames, ignore_index=True) if vote_frames else pd.DataFrame(columns=VOTE_COLUMNS)
    reached = _reached(decisions, evaluations)
    return Annotation(
        clusters=pd.DataFrame(cluster_rows, columns=CLUSTER_COLUMNS),
        gating=_gating_table(reached, evaluations, ev),
        scores=_score_table(ev, evaluations),
        evidence=_evidence_table(reached, evaluations, ev, mapping),
        trace=trace_frame(steps),
        votes=votes,
        unresolved=unresolved,
        flat=[m for m, f in zip(ev.markers, ev.flat) if f],
        decisions=decisions,
        cluster_evidence=ev,
        evaluations=evaluations,
    )


# ---- the trace ---------------------------------------------------------------------------


def _decision_steps(d: Decision, evaluations, ruleset: Ruleset, params: ResolvedParams) -> list[Step]:
    i, steps = d.index, []
    for sel in d.selections:
        for cand in sel.candidates:
            for g in evaluations[cand.path].gates:
                steps.append(Step(
                    d.cluster, cand.level, cand.path_str, cand.name, "gate", g.gate, g.subject,
                    float(g.observed[i]), g.operator, float(g.threshold[i]), bool(g.passed[i]),
                    g.provenance.rule_loc, g.provenance.source, g.reasons[i],
                    **Step.provenance_columns(g.provenance),
                ))
        steps.append(_select_step(d, sel, evaluations))
        if sel.outcome == "winner" and not sel.ranked[0].children:
            leaf = sel.ranked[0]
            steps.append(Step(d.cluster, leaf.level, leaf.path_str, leaf.name, "select", "leaf", leaf.name, np.nan, "",
                              np.nan, True, "", "", f"{leaf.name} has no subtypes: the descent ends here"))
    return steps


def _select_step(d: Decision, sel: Selection, evaluations) -> Step:
    i = d.index
    parent_path = sel.parent.path_str if sel.parent is not None else ""
    subject = "; ".join(f"{c.name} {fmt(s)}" for c, s in zip(sel.ranked, sel.scores))
    loc = sel.provenance.rule_loc if sel.provenance else ""
    source = sel.provenance.source if sel.provenance else ""
    what = "root" if sel.parent is None else f"subtype of {sel.parent.name}"
    if sel.outcome == "none_passed":
        failed = "; ".join(
            f"{c.name} failed {', '.join(_failed_gate_names(evaluations[c.path], i))}" for c in sel.candidates
        ) or "no candidates"
        result = "the cluster is Unassigned" if sel.parent is None else f"the label stays {sel.parent.name}"
        return Step(d.cluster, sel.level, parent_path, "", "select", "none_passed",
                    "; ".join(c.name for c in sel.candidates), np.nan, ">=", np.nan, False, "", "",
                    f"no {what} passed its gates ({failed}): {result}")
    best = sel.ranked[0]
    if sel.outcome == "winner":
        if len(sel.ranked) == 1:
            others = [c.name for c in sel.candidates if c is not best]
            tail = f" ({', '.join(others)} failed)" if others else ""
            reason = f"{best.name} was the only {what} that passed{tail}: uncontested"
        else:
            a, b = fmt_pair(sel.margin, sel.min_gap)
            reason = f"{best.name} beat {sel.ranked[1].name} by {a} (min_gap {b})"
        return Step(d.cluster, sel.level, parent_path, best.name, "select", "winner", subject, sel.margin, ">=",
                    sel.min_gap, True, loc, source, reason, **Step.provenance_columns(sel.provenance))
    names = [c.name for c in sel.ambiguous]
    a, b = fmt_pair(sel.margin, sel.min_gap)
    result = f"label {AMBIGUITY_SEP.join(names)}" if sel.parent is None else f"the label stays {sel.parent.name}"
    reason = f"{best.name} led {sel.ranked[1].name} by only {a} < min_gap {b}: {' and '.join(names)} are ambiguous, {result}"
    return Step(d.cluster, sel.level, parent_path, AMBIGUITY_SEP.join(names), "select", "ambiguous", subject, sel.margin, ">=",
                sel.min_gap, False, loc, source, reason, **Step.provenance_columns(sel.provenance))


def _failed_gate_names(evaluation: NodeEvaluation, i: int) -> list[str]:
    return list(dict.fromkeys(g.gate for g in evaluation.gates if not g.passed[i]))


def _vote_step(d: Decision, shares: list[tuple[str, float]], params: ResolvedParams, ruleset: Ruleset) -> Step:
    sel = d.selections[-1]
    prov = param_provenance("scoring.per_cell_gap", params, ruleset)
    names = [c.name for c in sel.ambiguous]
    text = ", ".join(f"{name} {share:.2f}" for name, share in shares)
    top = shares[0][1] if shares else np.nan
    path = sel.parent.path_str if sel.parent is not None else ""
    return Step(d.cluster, sel.level, path, AMBIGUITY_SEP.join(names), "vote", "vote", ";".join(names), top, ">=",
                params.scoring.per_cell_gap, True, prov.rule_loc, prov.source,
                f"per-cell votes among {', '.join(names)}: {text} (evidence only; the label is unchanged)",
                **Step.provenance_columns(prov))


# ---- votes --------------------------------------------------------------------------------


def cells_by_cluster(cell_clusters) -> dict[str, np.ndarray]:
    """Cluster id -> the row positions of its cells."""
    labels = np.asarray(cell_clusters).astype(str)
    return {str(k): np.asarray(v) for k, v in pd.Series(np.arange(labels.size)).groupby(labels).indices.items()}


def _votes(d: Decision, idx: np.ndarray, cell_matrix, ev: ClusterEvidence, evaluations, params: ResolvedParams):
    candidates = d.ambiguous
    columns = [[c for c in evaluations[n.path].scores.positive_cols if not ev.flat[c]] for n in candidates]
    names = [n.name for n in candidates]
    scores = cell_scores(cell_matrix[idx], columns, ev.global_median, ev.global_std)
    votes = vote(scores, names, params.scoring.per_cell_gap)
    frame = pd.DataFrame({"cell": idx.astype(np.int64), "cluster": d.cluster, "candidates": ";".join(names), "vote": votes})
    return frame, composition(votes, names)


# ---- tables -------------------------------------------------------------------------------


def _cluster_row(d: Decision, ev: ClusterEvidence, evaluations, shares: str, n_failed: int) -> dict:
    i = d.index
    deciding = d.deciding
    if d.stop_reason == "no_root_passed":
        score, level, root = np.nan, -1, d.label
    elif d.stop_reason == "ambiguous_root":
        score, level, root = deciding.scores[0], 0, d.label
    else:
        score, level, root = float(evaluations[d.path[-1].path].scores.score[i]), d.path[-1].level, d.path[0].name
    runner, runner_score = "", np.nan
    if deciding is not None and len(deciding.ranked) > 1:
        runner, runner_score = deciding.ranked[1].name, deciding.scores[1]
    confidence = d.confidence
    return {
        "cluster": d.cluster, "final_annotation": d.label, "annotation_path": d.annotation_path, "level": level,
        "root": root, "score": score, "confidence": confidence, "uncontested": bool(np.isinf(confidence)),
        "stop_reason": d.stop_reason, "n_cells": int(ev.n_cells[i]), "runner_up": runner,
        "runner_up_score": runner_score, "margin": score - runner_score if runner else np.nan,
        "ambiguous_candidates": ";".join(n.name for n in d.ambiguous), "vote_composition": shares,
        "refinement_action": "", "n_gates_failed": n_failed,
    }


def _reached(decisions: list[Decision], evaluations) -> dict[tuple, np.ndarray]:
    """Which clusters evaluated each cell type (the roots, and the children of chosen nodes)."""
    n = len(decisions)
    reached = {path: np.zeros(n, bool) for path in evaluations}
    for d in decisions:
        for sel in d.selections:
            for cand in sel.candidates:
                reached[cand.path][d.index] = True
    return reached


def _node_columns(node: CellType) -> dict:
    return {"cell_type": node.name, "path": node.path_str, "level": node.level}


def _gating_table(reached: dict[tuple, np.ndarray], evaluations, ev: ClusterEvidence) -> pd.DataFrame:
    frames = []
    for path, e in evaluations.items():
        rows = np.flatnonzero(reached[path])
        if rows.size == 0:
            continue
        ns, node = e.scores, e.scores.node
        reasons, failed = [], []
        for i in rows:
            bad = [g for g in e.gates if not g.passed[i]]
            failed.append(";".join(dict.fromkeys(g.gate for g in bad)))
            reasons.append("; ".join(g.reasons[i] for g in bad) if bad else f"passed all {len(e.gates)} gates")
        frames.append(pd.DataFrame({
            "_c": rows, "_o": e.order, "cluster": [ev.clusters[i] for i in rows], **_node_columns(node),
            "parent": node.path[-2] if len(node.path) > 1 else "", "root_type": node.path[0],
            "coverage": ns.coverage[rows], "panel_coverage": ns.panel_coverage[rows], "pos_frac": ns.mean_positive[rows],
            "enrichment": ns.mean_enrichment[rows], "de_component": ns.de_component[rows],
            "anti_penalty": ns.anti_penalty[rows], "score": ns.score[rows], "passed": e.passed[rows],
            "failed_gates": failed, "reason": reasons,
        }))
    return _ordered(frames, GATING_COLUMNS)


def _score_table(ev: ClusterEvidence, evaluations) -> pd.DataFrame:
    rows = np.arange(len(ev.clusters))
    frames = []
    for e in evaluations.values():
        ns = e.scores
        frames.append(pd.DataFrame({
            "_c": rows, "_o": e.order, "cluster": ev.clusters, **_node_columns(ns.node),
            "mean_enrichment": ns.mean_enrichment, "mean_positive": ns.mean_positive, "de_component": ns.de_component,
            "coverage": ns.coverage, "coverage_term": ns.coverage_term, "anti_penalty": ns.anti_penalty, "score": ns.score,
        }))
    return _ordered(frames, SCORE_COLUMNS)


def _roles(node: CellType) -> list[tuple[str, str]]:
    pairs = [(m, "positive") for m in node.marker_names] + [(m, "anti") for m in node.anti_names]
    pairs += [(r.marker, "require") for r in node.requires]
    pairs += [(m, "veto") for v in node.vetoes for m in v.markers]
    pairs += [(m, "condition") for c in node.conditions for m in markers_in(c.expr)]
    return list(dict.fromkeys(pairs))


def _evidence_table(reached: dict[tuple, np.ndarray], evaluations, ev: ClusterEvidence, mapping: dict[str, str]) -> pd.DataFrame:
    frames = []
    for path, e in evaluations.items():
        rows = np.flatnonzero(reached[path])
        if rows.size == 0:
            continue
        node = e.scores.node
        for k, (marker, role) in enumerate(_roles(node)):
            panel = mapping.get(marker)
            col = ev.column.get(panel) if panel is not None else None

            def take(table, rows=rows, col=col):
                return table[rows, col] if col is not None else np.full(rows.size, np.nan)

            frames.append(pd.DataFrame({
                "_c": rows, "_o": e.order, "_k": k, "cluster": [ev.clusters[i] for i in rows],
                "cell_type": node.name, "path": node.path_str, "marker": marker,
                "panel_name": panel if col is not None else "", "role": role, "resolved": col is not None,
                "median": take(ev.median), "pos_frac": take(ev.pos_frac), "enrichment": take(ev.enrichment),
                "threshold": ev.threshold[col] if col is not None else np.nan, "de_z": take(ev.de_z),
                "de_rank": pd.array(take(ev.de_rank), dtype="Float64").astype("Int64"),
            }))
    return _ordered(frames, EVIDENCE_COLUMNS, extra=["_k"])


def _ordered(frames: list[pd.DataFrame], columns: list[str], extra: list[str] | None = None) -> pd.DataFrame:
    """Concatenate and sort by cluster order, then declaration order of the cell types."""
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.sort_values(["_c", "_o", *(extra or [])], kind="stable")
    return frame[columns].reset_index(drop=True)



