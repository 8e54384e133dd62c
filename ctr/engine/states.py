"""Cell states (proliferating, exhausted ...): called per cluster and per cell, beside the type.

A state is gated like a cell type with the same gate functions (coverage of its markers,
mean enrichment, its ``when`` conditions, the anti-marker conflict) at the level-0 thresholds,
in every cluster (and every cell) whose label lies in the state's scope. Per cell, each cell is
evaluated as a cluster of one (:mod:`ctr.engine.cell_evidence`), without the enrichment gate:
a single cell carries the state when enough of its markers are positive (and its conditions hold). Values only: the trace rows are
:class:`~ctr.engine.trace.Step` records with ``kind`` ``state``; ``ctr.report`` words them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctr.engine.annotate import gate_step
from ctr.engine.gates import anti_conflict_gate, condition_gates, coverage_gate, enrichment_gate, node_passed
from ctr.engine.scoring import ClusterEvidence, document_frequency, score_node
from ctr.engine.trace import trace_frame
from ctr.rules.model import PATH_SEP, CellState, CellType, Ruleset
from ctr.rules.params import ResolvedParams
from ctr.rules.states import scope_paths

STATE_KIND = "state"
CALL_COLUMNS = ["cluster", "state", "label_path", "applies", "called", "coverage", "mean_enrichment", "n_gates_failed"]


@dataclass
class StateCalls:
    """``calls``: one row per (cluster, state); ``steps``: the gate rows of the states that applied;
    ``cells``: one boolean column per state, one row per cell (empty without cells)."""

    calls: pd.DataFrame
    steps: pd.DataFrame
    cells: pd.DataFrame


def state_node(state: CellState) -> CellType:
    """The state as a level-0 node the gate functions can evaluate."""
    return CellType(name=state.name, path=(state.name,), markers=state.markers, anti=state.anti,
                    conditions=state.conditions, loc=state.loc)


def state_gates(ev: ClusterEvidence, state: CellState, ruleset: Ruleset, mapping: dict[str, str], params: ResolvedParams,
                per_cell: bool = False):
    """The gate outcomes of ``state`` over every row of ``ev``, the node scores, and the pass mask.
    ``per_cell``: rows are single cells, for which the enrichment gate (a value against the global
    median) says nothing the positivity does not, so it is left out."""
    node = state_node(state)
    ns = score_node(ev, node, mapping, params, document_frequency(ruleset, mapping), max(ruleset.cell_type_count, 1))
    gates = [coverage_gate(ev, ns, params, ruleset), *([] if per_cell else [enrichment_gate(ev, ns, params, ruleset)]),
             *condition_gates(ev, ns, mapping), *anti_conflict_gate(ev, ns, params, ruleset)]
    return node, ns, gates, node_passed(gates, len(ev.clusters))


def _applies(paths, scope: set[tuple[str, ...]]) -> np.ndarray:
    return np.array([bool(p) and tuple(str(p).split(PATH_SEP)) in scope for p in paths], dtype=bool)


def call_states(ev: ClusterEvidence, ruleset: Ruleset, mapping: dict[str, str], params: ResolvedParams,
                cluster_paths: dict[str, str], cell_ev: ClusterEvidence | None = None,
                cell_paths=None) -> StateCalls:
    """Call every state of ``ruleset`` in the clusters of ``ev`` (whose labels' paths are
    ``cluster_paths``) and, with ``cell_ev``/``cell_paths``, in every cell."""
    rows, steps, cells = [], [], {}
    for state in ruleset.states:
        scope = scope_paths(ruleset, state)
        paths = [cluster_paths.get(c, "") for c in ev.clusters]
        applies = _applies(paths, scope)
        node, ns, gates, passed = state_gates(ev, state, ruleset, mapping, params)
        for i, cluster in enumerate(ev.clusters):
            failed = sum(not bool(g.passed[i]) for g in gates)
            rows.append({"cluster": cluster, "state": state.name, "label_path": paths[i], "applies": bool(applies[i]),
                         "called": bool(applies[i] and passed[i]), "coverage": float(ns.coverage[i]),
                         "mean_enrichment": float(ns.mean_enrichment[i]), "n_gates_failed": failed if applies[i] else 0})
            if applies[i]:
                for g in gates:
                    step = gate_step(cluster, i, node, g)
                    step.kind = STATE_KIND
                    steps.append(step)
        if cell_ev is not None:
            cell_applies = _applies(cell_paths, scope)
            _, _, _, cell_passed = state_gates(cell_ev, state, ruleset, mapping, params, per_cell=True)
            cells[state.name] = cell_applies & cell_passed
    calls = pd.DataFrame(rows, columns=CALL_COLUMNS)
    return StateCalls(calls, trace_frame(steps), pd.DataFrame(cells))


def states_summary(cells: pd.DataFrame) -> np.ndarray:
    """Per cell, the ``;``-joined names of the states it carries (empty when none)."""
    if cells.empty:
        return np.array([], dtype=object)
    names = np.array(cells.columns, dtype=object)
    on = cells.to_numpy(dtype=bool)
    return np.array([";".join(names[row]) for row in on], dtype=object)
