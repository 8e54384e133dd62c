"""Cell-level labels (``--unit cell``): each cell starts from its cluster's decision and descends
further on its own evidence.

Where the cluster stopped at a parent (or at an ambiguous root ``A~B``), each cell votes among
the candidates (the parent's children, or the tied roots) with the per-cell scores of
semantics §7.5; a cell that leads by ``per_cell_gap`` takes that candidate and keeps descending.
A cell that does not lead keeps the cluster's label. Unassigned clusters stay unassigned: the
cluster-level gates rejected every root, and one cell's values do not overturn that.

A cell votes only among the candidates whose ``when`` conditions hold on its own values (evaluated
by the condition gate on the cell as a cluster of one): a condition is a rule about the values,
and it binds a single cell too. Requirements and vetoes are about a cluster's share of positive
cells and stay cluster rules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ctr.engine.cell_evidence import cell_evidence
from ctr.engine.decide import AMBIGUITY_SEP
from ctr.engine.gates import condition_gates, node_passed
from ctr.engine.scoring import ClusterEvidence, document_frequency, score_node
from ctr.engine.votes import UNCERTAIN, cell_scores, vote
from ctr.rules.model import PATH_SEP, CellType, Ruleset

CELL_STOP = "cell_vote"


def cell_level_labels(cells: pd.DataFrame, ruleset: Ruleset, mapping: dict[str, str], global_: pd.DataFrame,
                      matrix, markers: list[str], per_cell_gap: float, params=None) -> pd.DataFrame:
    """Refine the per-cell table (columns label, root, path, confidence, stop_reason; one row per
    cell, in matrix row order) by per-cell votes. Returns a new table; ``stop_reason`` is
    ``cell_vote`` for cells that moved below their cluster's label. With ``params`` (the resolved
    parameters), candidates whose hard rules fail on a cell's values are out of its vote."""
    out = cells.copy()
    column = {m: i for i, m in enumerate(markers)}
    g = global_.set_index("marker")
    median = g.loc[markers, "enrichment_reference"].to_numpy(dtype=float)
    std = g.loc[markers, "global_std"].to_numpy(dtype=float)
    by_path = {node.path_str: node for node in ruleset.walk()}
    roots = {node.name: node for node in ruleset.roots}

    def columns(node: CellType) -> list[int]:
        return [column[mapping[m]] for m in node.marker_names if m in mapping and mapping[m] in column]

    paths = out["path"].astype(str).to_numpy().copy()
    labels = out["label"].astype(str).to_numpy().copy()
    stops = out["stop_reason"].astype(str).to_numpy().copy()
    frontier: dict[str, list[CellType]] = {}
    for label, path in set(zip(labels, paths)):
        tied = label.split(AMBIGUITY_SEP)
        if len(tied) > 1 and all(name in roots for name in tied):
            frontier[path or label] = [roots[name] for name in tied]
        elif path in by_path and by_path[path].children:
            frontier[path] = by_path[path].children
    keys = np.where(paths == "", labels, paths)
    while frontier:
        following: dict[str, list[CellType]] = {}
        for key, candidates in frontier.items():
            rows = np.flatnonzero(keys == key)
            if len(rows) == 0:
                continue
            scores = cell_scores(matrix[rows], [columns(c) for c in candidates], median, std)
            if params is not None and any(c.conditions for c in candidates):
                allowed = conditions_hold(cell_evidence(matrix, markers, global_, rows), candidates, ruleset, mapping, params)
                scores = np.where(allowed, scores, np.nan)
            votes = vote(scores, [c.name for c in candidates], per_cell_gap)
            for node in candidates:
                moved = rows[votes == node.name]
                if len(moved) == 0:
                    continue
                labels[moved] = node.name
                paths[moved] = node.path_str
                stops[moved] = CELL_STOP
                keys[moved] = node.path_str
                if node.children:
                    following[node.path_str] = node.children
            del votes
        frontier = following
    out["label"] = labels
    out["path"] = paths
    out["root"] = [p.split(PATH_SEP)[0] if s == CELL_STOP else r for p, s, r in zip(paths, stops, out["root"])]
    out["stop_reason"] = stops
    return out


def conditions_hold(ev: ClusterEvidence, candidates: list[CellType], ruleset: Ruleset, mapping: dict[str, str],
                    params) -> np.ndarray:
    """(rows of ``ev`` x candidates): whether each candidate's ``when`` conditions all hold."""
    doc_freq = document_frequency(ruleset, mapping)
    n_types = ruleset.cell_type_count
    out = np.ones((len(ev.clusters), len(candidates)), bool)
    for k, node in enumerate(candidates):
        if not node.conditions:
            continue
        ns = score_node(ev, node, mapping, params, doc_freq, n_types)
        out[:, k] = node_passed(condition_gates(ev, ns, mapping), len(ev.clusters))
    return out


__all__ = ["cell_level_labels", "conditions_hold", "CELL_STOP", "UNCERTAIN"]
