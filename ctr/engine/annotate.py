"""Annotate clusters: score and gate every cell type, decide per cluster, and lay out the tables
(cluster_annotations, gating_details, marker_scores, marker_evidence, decision_steps, votes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctr.engine.decide import AMBIGUITY_SEP, Decision, NodeEvaluation, Selection, decide_cluster
from ctr.engine.gates import GateOutcome, credit_subtypes, gate_node, node_passed
from ctr.engine.scoring import ClusterEvidence, document_frequency, score_node
from ctr.engine.trace import Step, cite_stored_copy, param_provenance, trace_frame
from ctr.engine.votes import candidate_votes, composition, composition_text
from ctr.rules.expr import markers_in
from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import ResolvedParams
from ctr.stats import Statistics
from ctr.stats.cluster_stats import cluster_codes

CLUSTER_COLUMNS = [
    "cluster", "final_annotation", "annotation_path", "level", "root", "score", "confidence", "uncontested",
    "stop_reason", "n_cells", "runner_up", "runner_up_score", "margin", "ambiguous_candidates",
    "vote_composition", "refinement_action", "n_gates_failed",
]
GATING_COLUMNS = [
    "cluster", "cell_type", "path", "level", "parent", "root_type", "coverage", "panel_coverage", "pos_frac",
    "enrichment", "de_component", "anti_penalty", "score", "passed", "failed_gates",
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


@dataclass(frozen=True)
class EngineInputs:
    """What every annotation of one run shares: the ruleset, the panel name of each resolved ruleset
    marker (``mapping``), the parameters in force, and optionally the cells (``cell_matrix``: cells
    x the statistics' markers) for per-cell votes and refinement."""

    ruleset: Ruleset
    mapping: dict[str, str]
    params: ResolvedParams
    cell_matrix: object = None

    def annotate(self, stats: Statistics, cell_clusters=None) -> Annotation:
        """:func:`annotate_clusters` of ``stats``; ``cell_clusters`` labels the rows of ``cell_matrix``."""
        return annotate_clusters(stats, self.ruleset, self.mapping, self.params,
                                 cell_matrix=self.cell_matrix if cell_clusters is not None else None,
                                 cell_clusters=cell_clusters)


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
    """Score and gate every cell type of the ruleset over every cluster of ``ev``.

    With ``gating.coverage_from_subtypes`` the types are gated deepest first, so that a type's
    coverage gate can count its subtypes' verdicts (:func:`credit_subtypes`)."""
    doc_freq = document_frequency(ruleset, mapping)
    n_types = max(ruleset.cell_type_count, 1)
    nodes = list(ruleset.walk())
    out: dict[tuple, NodeEvaluation] = {}
    for order in reversed(range(len(nodes))):  # children before their parent
        node = nodes[order]
        ns = score_node(ev, node, mapping, params, doc_freq, n_types)
        gates = gate_node(ev, ns, mapping, params, ruleset)
        if params.gating.coverage_from_subtypes and node.children:
            subtypes = [(c.name, out[c.path].passed) for c in node.children]
            gates = [credit_subtypes(g, subtypes) if g.gate == "coverage" else g for g in gates]
        out[node.path] = NodeEvaluation(ns, gates, node_passed(gates, len(ev.clusters)), order)
    return {node.path: out[node.path] for node in nodes}  # declaration order


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
        trace=trace_frame(cite_stored_copy(steps, ruleset)),
        votes=votes,
        unresolved=unresolved,
        flat=[m for m, f in zip(ev.markers, ev.flat) if f],
        decisions=decisions,
        cluster_evidence=ev,
        evaluations=evaluations,
    )


# ---- the trace ---------------------------------------------------------------------------


def _decision_steps(d: Decision, evaluations, ruleset: Ruleset, params: ResolvedParams) -> list[Step]:
    steps = []
    for sel in d.selections:
        for cand in sel.candidates:
            steps += [gate_step(d.cluster, d.index, cand, g) for g in evaluations[cand.path].gates]
        if sel.tie_break:
            steps.append(_tie_break_step(d, sel, params, ruleset))
        steps.append(_select_step(d, sel))
        if sel.outcome == "winner" and not sel.ranked[0].children:
            leaf = sel.ranked[0]
            steps.append(Step(d.cluster, leaf.level, leaf.path_str, leaf.name, "select", "leaf"))
    return steps


def gate_step(cluster: str, i: int, node: CellType, g: GateOutcome) -> Step:
    """The trace row of gate ``g`` of ``node`` in cluster ``cluster`` (row ``i`` of its arrays)."""
    return Step(
        cluster, node.level, node.path_str, node.name, "gate", g.gate, marker=g.marker, statistic=g.statistic,
        observed=float(g.observed[i]), comparison=g.comparison, threshold=float(g.threshold[i]),
        passed=bool(g.passed[i]), expression=g.expression, markers=g.markers[i] if g.markers is not None else "",
        absent=";".join(g.absent), n_markers=float(g.n_markers) if g.n_markers is not None else np.nan,
        values=g.values[i] if g.values is not None else "",
        candidates=g.carried_by[i] if g.carried_by is not None else "",
    ).locate(g.provenance)


def _select_step(d: Decision, sel: Selection) -> Step:
    parent_path = sel.parent.path_str if sel.parent is not None else ""
    if sel.outcome == "none_passed":
        return Step(d.cluster, sel.level, parent_path, "", "select", "none_passed", passed=False,
                    candidates=";".join(c.name for c in sel.candidates))
    label = sel.ranked[0].name if sel.outcome == "winner" else AMBIGUITY_SEP.join(c.name for c in sel.ambiguous)
    return Step(d.cluster, sel.level, parent_path, label, "select", sel.outcome, statistic="margin",
                observed=sel.margin, comparison=">=", threshold=sel.min_gap, passed=sel.outcome == "winner",
                candidates=";".join(c.name for c in sel.ranked)).locate(sel.provenance)


def _tie_break_step(d: Decision, sel: Selection, params: ResolvedParams, ruleset: Ruleset) -> Step:
    """A near-tie the evidence settled: the rule (coverage, anti_penalty or distinct_coverage), the
    winner's advantage on it and the parameter it had to reach; ``candidates`` are the ones set aside."""
    key = {"coverage": "tie_coverage_gap", "anti_penalty": "tie_anti_gap", "distinct_coverage": "tie_coverage_gap"}[sel.tie_break]
    path = sel.parent.path_str if sel.parent is not None else ""
    return Step(d.cluster, sel.level, path, sel.ranked[0].name, "select", "tie_break", statistic=sel.tie_break,
                observed=sel.advantage, comparison=">=", threshold=getattr(params.gating, key), passed=True,
                candidates=";".join(c.name for c in sel.set_aside)).locate(param_provenance(f"gating.{key}", params, ruleset))


def _vote_step(d: Decision, shares: list[tuple[str, float]], params: ResolvedParams, ruleset: Ruleset) -> Step:
    sel = d.selections[-1]
    names = [c.name for c in sel.ambiguous]
    path = sel.parent.path_str if sel.parent is not None else ""
    return Step(d.cluster, sel.level, path, AMBIGUITY_SEP.join(names), "vote", "vote", statistic="vote_share",
                observed=shares[0][1] if shares else np.nan, comparison=">=", threshold=params.scoring.per_cell_gap,
                candidates=";".join(names), values=json.dumps(dict(shares)),
                ).locate(param_provenance("scoring.per_cell_gap", params, ruleset))


# ---- votes --------------------------------------------------------------------------------


def cells_by_cluster(cell_clusters) -> dict[str, np.ndarray]:
    """Cluster id -> the row positions of its cells, in ascending order (labels as integer codes:
    no string per cell)."""
    codes, order = cluster_codes(cell_clusters)
    counts = np.bincount(codes, minlength=len(order))
    rows = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    return {label: r for label, r, n in zip(order, rows, counts) if n}


def _votes(d: Decision, idx: np.ndarray, cell_matrix, ev: ClusterEvidence, evaluations, params: ResolvedParams):
    candidates = d.ambiguous
    names = [n.name for n in candidates]
    votes = candidate_votes(cell_matrix[idx], candidates, evaluations, ev, params.scoring.per_cell_gap)
    frame = pd.DataFrame({"cell": idx.astype(np.int64), "cluster": d.cluster, "candidates": ";".join(names), "vote": votes})
    return frame, composition(votes, names)


# ---- tables -------------------------------------------------------------------------------


def _cluster_row(d: Decision, ev: ClusterEvidence, evaluations, shares: str, n_failed: int) -> dict:
    i = d.index
    deciding = d.deciding
    if not d.path and d.stop_reason != "ambiguous_root":
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
        failed = [";".join(dict.fromkeys(g.gate for g in e.gates if not g.passed[i])) for i in rows]
        frames.append(pd.DataFrame({
            "_c": rows, "_o": e.order, "cluster": [ev.clusters[i] for i in rows], **_node_columns(node),
            "parent": node.path[-2] if len(node.path) > 1 else "", "root_type": node.path[0],
            "coverage": ns.coverage[rows], "panel_coverage": ns.panel_coverage[rows], "pos_frac": ns.mean_positive[rows],
            "enrichment": ns.mean_enrichment[rows], "de_component": ns.de_component[rows],
            "anti_penalty": ns.anti_penalty[rows], "score": ns.score[rows], "passed": e.passed[rows],
            "failed_gates": failed,
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



