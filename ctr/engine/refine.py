"""Refinement (semantics §8): a manual plan first, then relabel / subcluster / skip per cluster.

Every state of the clustering is annotated afresh by the engine: cluster statistics are
recomputed for the current cell labels while the global statistics stay those of the original
run (they do not depend on the labels), so subclusters are scored and gated against the same
thresholds as the clusters they came from. Labels that refinement sets without the engine's
descent (an override, a relabel) are kept per cluster and written over the engine's row.
The pieces of a split that reach the same label and path are pooled into one (Leiden over-splits),
and a split whose pieces all agree is undone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ctr.engine.annotate import Annotation, EngineInputs, cells_by_cluster, evaluate_nodes
from ctr.engine.decide import Decision
from ctr.engine.heterogeneity import frontier, frontier_votes
from ctr.engine.scoring import ClusterEvidence
from ctr.engine.trace import Step, cite_stored_copy, param_provenance, trace_frame
from ctr.errors import ParameterError
from ctr.progress import steps
from ctr.rules.model import CellType
from ctr.rules.plan import RefinementPlan, check_plan, plan_from_data, resolve_target
from ctr.stats import Statistics, natural_key

# refinement_log.csv as the engine writes it: values only. ``reason_code`` names what was decided and
# why, ``detail`` (JSON) holds the values behind it; ctr.report.sentences.refinement_reasons words
# each row (the written file's ``reason`` column).
LOG_COLUMNS = [
    "iteration", "cluster", "action", "reason_code", "before_label", "after_label", "before_score", "after_score",
    "heterogeneity", "n_cells", "source", "detail",
]


@dataclass
class Refinement:
    """The annotation over the final clusters, refinement_log.csv, and each cell's final cluster."""

    annotation: Annotation
    log: pd.DataFrame
    cell_clusters: np.ndarray


@dataclass(frozen=True)
class _Forced:
    """A label set by refinement rather than by the engine's descent."""

    label: str
    node: CellType | None  # None for a free (override) label
    stop_reason: str
    action: str


@dataclass
class _View:
    """The engine's annotation of one state of the clustering."""

    stats: Statistics
    ev: ClusterEvidence
    evaluations: dict
    annotation: Annotation
    cells: dict[str, np.ndarray]

    def index(self, cluster: str) -> int:
        return self.ev.clusters.index(cluster)

    def decision(self, cluster: str) -> Decision:
        return self.annotation.decisions[self.index(cluster)]

    def score(self, cluster: str, node: CellType) -> float:
        return float(self.evaluations[node.path].scores.score[self.index(cluster)])


@dataclass
class _Split:
    """A subcluster whose Leiden pieces await their labels: pooled by outcome, or undone when
    they all reach the same one."""

    cluster: str
    cells: np.ndarray
    pieces: list[str]  # Leiden's piece ids, "<cluster>.0" the largest
    sizes: dict[str, int]
    before: str
    before_score: float
    forced: _Forced | None  # the label refinement had set on the cluster, restored if the split is undone
    node: CellType | None
    why: dict  # what triggered the split (the values ctr.report words)
    resolution: float
    h: float
    iteration: int
    source: str
    at: int  # its row in the log
    step: int  # its outcome step in the trace
    # the score on the whole cluster of each type on its label's path (root first), what a piece
    # must beat to take a label of another lineage
    lineage: dict[tuple, float] = field(default_factory=dict)
    pools: list[tuple[str, list[str]]] = field(default_factory=list)  # (final id, its Leiden pieces), largest first
    agreed: str = ""  # the one label all pieces reached, when the split is undone


@dataclass
class _State:
    labels: np.ndarray
    forced: dict[str, _Forced] = field(default_factory=dict)
    action: dict[str, str] = field(default_factory=dict)
    manual: set[str] = field(default_factory=set)  # clusters the plan decided; the policy leaves them alone
    log: list[dict] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    splits: list[_Split] = field(default_factory=list)  # this round's splits, awaiting their pieces' labels


Split = Callable[[object, float], np.ndarray]  # (the cells' rows of the matrix, resolution) -> a piece id per cell
StatisticsFor = Callable[[np.ndarray], Statistics]  # a label per cell -> cluster statistics of those labels


def refine(
    annotation: Annotation,
    stats: Statistics,
    inputs: EngineInputs,
    *,
    cell_clusters=None,
    split: Split | None = None,
    statistics: StatisticsFor | None = None,
    plan: RefinementPlan | dict | None = None,
    origin: str = "refinement plan",
) -> Refinement:
    """Apply the manual ``plan`` (override, merge, subcluster, relabel), then the automatic policy
    for up to ``params.refinement.max_iterations`` rounds, and annotate the final clusters.

    ``cell_clusters`` labels the rows of ``inputs.cell_matrix`` (the data ``stats`` came from);
    ``split`` divides a cluster's cells into pieces (Leiden, reproducibly) and ``statistics``
    computes the cluster statistics of new labels (:func:`ctr.stats.statistics_for_labels`): the
    engine runs no clustering and reads no file. Without the cells only plan overrides and relabels
    apply. ``origin`` names the plan in messages (its file).
    """
    has_cells = inputs.cell_matrix is not None and cell_clusters is not None
    if has_cells and (split is None or statistics is None):
        raise ValueError("refine needs split and statistics functions when the cells are given")
    run = _Run(stats, inputs, split, statistics)
    labels = np.asarray(cell_clusters).astype(str) if has_cells else None
    state = _State(labels=labels if labels is not None else np.array([], dtype=str))
    view = _view_of(annotation, stats, inputs, labels)

    if plan is not None:
        plan = plan if isinstance(plan, RefinementPlan) else plan_from_data(plan, origin)
        check_plan(plan, view.ev.clusters, inputs.ruleset, origin)
        view = _apply_plan(run, state, view, plan, has_cells)

    if has_cells:
        todo = [c for c in view.ev.clusters if c not in state.manual]
        for iteration in range(1, inputs.params.refinement.max_iterations + 1):
            changed: list[str] = []
            with steps(len(todo), f"refinement round {iteration}", unit="cluster") as advance:
                for cluster in todo:
                    changed += _policy(run, state, view, cluster, iteration)
                    advance(1)
            if not changed:
                break
            view, renamed = _settle(run, state, run.view(state.labels))
            now = (renamed.get(c, c) for c in changed)
            todo = list(dict.fromkeys(c for c in now if c is not None and c in view.cells))

    final = _finalise(view, state, inputs.ruleset)
    log = pd.DataFrame(state.log, columns=LOG_COLUMNS)
    log["detail"] = [json.dumps(d, default=float) for d in log["detail"]]
    cells_out = state.labels if has_cells else np.asarray([] if cell_clusters is None else cell_clusters).astype(str)
    return Refinement(final, log, cells_out)


# ---- one state of the clustering ---------------------------------------------------------


class _Run:
    """One refinement: the shared inputs, and the functions that split and re-measure clusters."""

    def __init__(self, stats: Statistics, inputs: EngineInputs, split: Split | None, statistics: StatisticsFor | None):
        self.stats, self.inputs = stats, inputs
        self.ruleset, self.mapping, self.params = inputs.ruleset, inputs.mapping, inputs.params
        self.matrix = inputs.cell_matrix
        self._split, self.statistics = split, statistics

    def view(self, labels: np.ndarray) -> _View:
        stats = self.statistics(labels)
        ann = self.inputs.annotate(stats, labels)
        return _View(stats, ann.cluster_evidence, ann.evaluations, ann, cells_by_cluster(labels))

    def split(self, cells: np.ndarray, resolution: float) -> np.ndarray:
        """The pieces of the cells ("0" the largest), as the caller's split function gives them."""
        return np.asarray(self._split(self.matrix[cells], resolution)).astype(str)


def _view_of(annotation: Annotation, stats: Statistics, inputs: EngineInputs, labels) -> _View:
    """The caller's annotation of the original clusters as the first state."""
    ev, evaluations = annotation.cluster_evidence, annotation.evaluations
    if ev is None:  # an Annotation assembled without the engine's node evaluations
        ev = ClusterEvidence.from_statistics(stats)
        evaluations = evaluate_nodes(ev, inputs.ruleset, inputs.mapping, inputs.params)
    cells = {} if labels is None else cells_by_cluster(labels)
    return _View(stats, ev, evaluations, annotation, cells)


# ---- labels as refinement sees them --------------------------------------------------------


def _label_node(view: _View, state: _State, cluster: str) -> CellType | None:
    forced = state.forced.get(cluster)
    if forced is not None:
        return forced.node
    d = view.decision(cluster)
    return d.path[-1] if d.path and d.stop_reason != "ambiguous_root" else None


def _label(view: _View, state: _State, cluster: str) -> str:
    forced = state.forced.get(cluster)
    return forced.label if forced is not None else view.decision(cluster).label


def _label_score(view: _View, state: _State, cluster: str) -> float:
    forced = state.forced.get(cluster)
    if forced is not None:
        return view.score(cluster, forced.node) if forced.node is not None else math.nan
    row = view.annotation.clusters.set_index("cluster").loc[cluster]
    return float(row["score"])


def _n_cells(view: _View, cluster: str) -> int:
    return int(view.ev.n_cells[view.index(cluster)])


def _record(state: _State, iteration: int, cluster: str, action: str, code: str, detail: dict, before: str,
            after: str, before_score: float, after_score: float, h: float, n: int, source: str) -> None:
    state.log.append({
        "iteration": iteration, "cluster": cluster, "action": action, "reason_code": code, "before_label": before,
        "after_label": after, "before_score": before_score, "after_score": after_score, "heterogeneity": h,
        "n_cells": n, "source": source, "detail": detail,
    })


def _step(run: _Run, cluster: str, node: CellType | None, gate: str, statistic: str, observed: float, op: str,
          threshold: float, passed: bool, key: str) -> Step:
    """A trace row of kind ``refine``; ``key`` is the parameter that set the threshold, "plan" for
    a plan operation, "" for an outcome row."""
    step = Step(cluster, node.level if node is not None else -1, node.path_str if node is not None else "",
                node.name if node is not None else "", "refine", gate, statistic=statistic, observed=float(observed),
                comparison=op, threshold=float(threshold), passed=bool(passed))
    if key.startswith("refinement."):
        return step.locate(param_provenance(key, run.params, run.ruleset))
    step.layer = key  # "plan" for an operation of the refinement plan
    return step


# ---- the automatic policy -----------------------------------------------------------------


def _policy(run: _Run, state: _State, view: _View, cluster: str, iteration: int) -> list[str]:
    """Decide relabel / subcluster / skip for one cluster; returns the clusters that changed."""
    rp = run.params.refinement
    node = _label_node(view, state, cluster)
    before, before_score, n = _label(view, state, cluster), _label_score(view, state, cluster), _n_cells(view, cluster)
    fv = frontier_votes(view.cells[cluster], run.matrix, view.ev, view.evaluations, frontier(node, run.ruleset),
                        run.params.scoring.per_cell_gap)
    h = fv.heterogeneity
    votes = {"candidates": [c.name for c in fv.candidates], "shares": [[k, v] for k, v in fv.shares if v > 0]}

    why_not: list[dict] = []  # the checks that kept the cluster from a relabel, as values
    if node is not None and node.children:
        child, share = fv.best()
        need = 1.0 - rp.heterogeneity_gap
        if child is None:
            why_not.append({"check": "no_subtype_votes", "parent": node.name})
        else:
            score = view.score(cluster, child)
            share_ok, score_ok = share >= need, score >= rp.subtype_signal_threshold
            state.steps.append(_step(run, cluster, child, "relabel", "vote_share", share, ">=", need, share_ok,
                                     "refinement.heterogeneity_gap"))
            state.steps.append(_step(run, cluster, child, "relabel", "score", score, ">=",
                                     rp.subtype_signal_threshold, score_ok, "refinement.subtype_signal_threshold"))
            if share_ok and score_ok:
                detail = {"parent": node.name, "subtype": child.name, "vote_share": share, "needed_share": need,
                          "heterogeneity_gap": rp.heterogeneity_gap,
                          "subtype_signal_threshold": rp.subtype_signal_threshold}
                state.forced[cluster] = _Forced(child.name, child, "refined_relabel", "relabel")
                state.action[cluster] = "relabel"
                state.steps.append(_step(run, cluster, child, "relabel", "action", share, ">=", need, True,
                                         "refinement.heterogeneity_gap"))
                _record(state, iteration, cluster, "relabel", "relabel_votes", detail, before, child.name, before_score,
                        score, h, n, "auto")
                # a leaf's frontier is the one these votes were taken over: looking again would
                # undo the relabel with a subcluster; a parent's children are a new question
                return [cluster] if child.children else []
            if not share_ok:
                why_not.append({"check": "vote_share_low", "subtype": child.name, "vote_share": share, "needed": need})
            else:
                why_not.append({"check": "score_low", "subtype": child.name, "score": score,
                                "threshold": rp.subtype_signal_threshold})
    else:
        why_not.append({"check": "no_subtypes", "label": before})

    # a cluster mixed between the subtypes of its type may split below 500 cells in a small sample;
    # a leaf (no subtypes) keeps the absolute limit, so noise in pure clusters does not fragment them
    mixed = node is not None and bool(node.children)
    min_cells = rp.effective_min_cells(run.matrix.shape[0] if mixed else None)
    # min_cells was not set and scales with the sample: the sample size says by how much
    limit = {"min_cells": min_cells,
             "sample": run.matrix.shape[0] if rp.min_cells is None and mixed else None}
    flagged, big = h >= rp.score_threshold, n >= min_cells
    state.steps.append(_step(run, cluster, node, "subcluster", "heterogeneity", h, ">=", rp.score_threshold, flagged,
                             "refinement.score_threshold"))
    state.steps.append(_step(run, cluster, node, "subcluster", "n_cells", n, ">=", min_cells, big, "refinement.min_cells"))
    if flagged and big:
        why = {"trigger": "heterogeneity", "score_threshold": rp.score_threshold, **limit, "checks": why_not}
        return _subcluster(run, state, view, cluster, rp.resolution, why, iteration, "auto", h)
    if not flagged:
        why_not.append({"check": "heterogeneity_low", "threshold": rp.score_threshold})
    if not big:
        why_not.append({"check": "too_few_cells", **limit})
    state.action.setdefault(cluster, "skip")
    state.steps.append(_step(run, cluster, node, "skip", "action", h, "", math.nan, True, ""))
    _record(state, iteration, cluster, "skip", "kept", {"checks": why_not, "votes": votes}, before, before,
            before_score, before_score, h, n, "auto")
    return []


def _subcluster(run: _Run, state: _State, view: _View, cluster: str, resolution: float, why: dict, iteration: int,
                source: str, h: float) -> list[str]:
    """Leiden on the cluster's cells; the pieces get ids ``<cluster>.<k>``, are annotated again with
    the round and then settled (pooled by outcome) by ``_settle``."""
    cells = view.cells[cluster]
    before, before_score, n = _label(view, state, cluster), _label_score(view, state, cluster), len(cells)
    pieces = run.split(cells, resolution)
    node = _label_node(view, state, cluster)
    if len(set(pieces)) < 2:
        state.action.setdefault(cluster, "skip")
        state.steps.append(_step(run, cluster, node, "subcluster", "pieces", 1, ">=", 2, False,
                                 "refinement.resolution" if source == "auto" else "plan"))
        state.steps.append(_step(run, cluster, node, "skip", "action", h, "", math.nan, True, ""))
        _record(state, iteration, cluster, "skip", "single_piece", {**why, "resolution": resolution}, before, before,
                before_score, before_score, h, n, source)
        return []
    new_ids = np.array([f"{cluster}.{p}" for p in pieces], dtype=object)
    labels = state.labels.astype(object)
    labels[cells] = new_ids
    state.labels = labels.astype(str)
    forced = state.forced.pop(cluster, None)
    ids, sizes = np.unique(new_ids.astype(str), return_counts=True)
    size = dict(zip(ids.tolist(), sizes.tolist()))
    ids = sorted(size, key=natural_key)
    lineage = {} if node is None else {node.path[:k]: view.score(cluster, run.ruleset.node(node.path[:k]))
                                       for k in range(1, len(node.path) + 1)}
    split = _Split(cluster, cells, ids, size, before, before_score, forced, node, why, resolution, h, iteration, source,
                   at=len(state.log), step=len(state.steps), lineage=lineage)
    state.splits.append(split)
    state.steps.append(_split_step(run, split))  # replaced once the pieces are settled
    _record(state, iteration, cluster, "subcluster", "split", {}, before, "", before_score, math.nan, h, n, source)
    return ids


def _split_step(run: _Run, split: _Split) -> Step:
    if split.source == "auto":
        return _step(run, split.cluster, split.node, "subcluster", "action", split.h, ">=",
                     run.params.refinement.score_threshold, True, "refinement.score_threshold")
    return _step(run, split.cluster, split.node, "subcluster", "plan", math.nan, "", math.nan, True, "plan")


def _settle(run: _Run, state: _State, view: _View) -> tuple[_View, dict[str, str | None]]:
    """Pool the pieces of this round's splits that reached the same label and path, number the
    pools by size, undo a split whose pieces all agree, annotate again when cells moved, and write
    the splits' log rows and trace steps. Returns the new view and each Leiden piece's final id
    (None for the pieces of an undone split)."""
    if not state.splits:
        return view, {}
    old, labels = state.labels, state.labels.astype(object)
    renamed: dict[str, str | None] = {}
    for s in state.splits:
        outcome: dict[tuple[str, str], list[str]] = {}
        for p in s.pieces:
            outcome.setdefault(_piece_outcome(view, s, p), []).append(p)
        if len(outcome) == 1:
            s.agreed = next(iter(outcome))[0]
            labels[s.cells] = s.cluster
            if s.forced is not None:
                state.forced[s.cluster] = s.forced
            renamed.update(dict.fromkeys(s.pieces))
            continue
        pools = sorted(outcome.values(), key=lambda ps: (-sum(s.sizes[p] for p in ps), natural_key(ps[0])))
        for k, ps in enumerate(pools):
            s.pools.append((f"{s.cluster}.{k}", ps))
            for p in ps:
                renamed[p] = f"{s.cluster}.{k}"
                labels[old == p] = f"{s.cluster}.{k}"
    state.labels = labels.astype(str)
    if any(new != p for p, new in renamed.items()):
        view = run.view(state.labels)  # the pooled pieces, or the restored clusters, annotated once
    # from the last split back, so that inserted rows do not shift the positions still to fill
    for s in sorted(state.splits, key=lambda s: s.at, reverse=True):
        if s.pools:
            _write_pooled(run, state, view, s)
        else:
            _write_undone(run, state, s)
    state.splits = []
    return view, renamed


def _piece_outcome(view: _View, s: _Split, piece: str) -> tuple[str, str]:
    """A piece's (label, path), for pooling. A split refines a label; it never takes one away nor
    trades it for weaker evidence. A piece keeps the cluster's label unless it reaches that label
    or a subtype of it, or a type of another branch whose score on the piece beats the score the
    cluster's own type had on the whole cluster, compared where the two paths part. A piece on
    which no root passes, that is ambiguous, or that stops above the cluster's label (fewer cells,
    noisier statistics) has no stronger evidence than the cluster had."""
    d = view.decision(piece)
    if s.node is None:  # the cluster had no single label to keep
        return d.label, d.annotation_path
    own = (s.before, s.node.path_str)
    if d.stop_reason == "ambiguous_root" or not d.path:
        return own
    theirs = [n.path for n in d.path]
    ours = list(s.lineage)
    k = 0
    while k < min(len(theirs), len(ours)) and theirs[k] == ours[k]:
        k += 1
    if k == len(ours):  # the cluster's label, or a subtype of it
        return d.label, d.annotation_path
    if k == len(theirs):  # stops above the cluster's label
        return own
    if view.score(piece, d.path[k]) > s.lineage[ours[k]]:
        return d.label, d.annotation_path
    return own


def _write_pooled(run: _Run, state: _State, view: _View, s: _Split) -> None:
    pools = [[new, _label(view, state, new), _n_cells(view, new)] for new, _ in s.pools]
    outcome = "; ".join(f"{new} {label} ({size} cells)" for new, label, size in pools)
    detail = {**s.why, "resolution": s.resolution, "pieces": len(s.pieces), "pools": pools}
    key = "refinement.resolution" if s.source == "auto" else "plan"
    state.steps[s.step:s.step + 1] = [
        _step(run, s.cluster, s.node, "subcluster", "distinct_outcomes", len(s.pools), ">=", 2, True, key),
        _split_step(run, s),
    ]
    state.log[s.at].update(detail=detail, after_label=outcome)
    rows = []
    for new, ps in s.pools:
        size = _n_cells(view, new)
        rows.append({
            "iteration": s.iteration, "cluster": new, "action": "subcluster", "reason_code": "piece",
            "before_label": s.before, "after_label": _label(view, state, new), "before_score": s.before_score,
            "after_score": _label_score(view, state, new), "heterogeneity": math.nan, "n_cells": size,
            "source": s.source, "detail": {"parent": s.cluster, "leiden_pieces": ps},
        })
        state.action[new] = "subcluster"
        if s.source == "plan":
            state.manual.add(new)
    state.log[s.at + 1:s.at + 1] = rows


def _write_undone(run: _Run, state: _State, s: _Split) -> None:
    detail = {**s.why, "resolution": s.resolution, "pieces": len(s.pieces), "agreed": s.agreed}
    key, outcome_key = ("refinement.resolution", "") if s.source == "auto" else ("plan", "plan")
    state.steps[s.step:s.step + 1] = [
        _step(run, s.cluster, s.node, "subcluster", "distinct_outcomes", 1, ">=", 2, False, key),
        _step(run, s.cluster, s.node, "skip", "action", s.h, "", math.nan, True, outcome_key),
    ]
    state.log[s.at].update(action="skip", reason_code="split_undone", detail=detail, after_label=s.before,
                           after_score=s.before_score)
    state.action.setdefault(s.cluster, "skip")


# ---- the manual plan ----------------------------------------------------------------------


def _apply_plan(run: _Run, state: _State, view: _View, plan: RefinementPlan, has_cells: bool) -> _View:
    present = set(view.ev.clusters)

    def gone(cluster: str, op: str) -> None:
        if cluster not in present:
            raise ParameterError(f"refinement plan: {op} names cluster '{cluster}', which an earlier merge or subcluster "
                                 f"of the plan removed; name one of: {', '.join(sorted(present, key=natural_key))}")

    for op in plan.override:
        n, before, score = _n_cells(view, op.cluster), _label(view, state, op.cluster), _label_score(view, state, op.cluster)
        state.forced[op.cluster] = _Forced(op.label, None, "manual_override", "override")
        state.action[op.cluster] = "override"
        state.manual.add(op.cluster)
        state.steps.append(_step(run, op.cluster, None, "override", "plan", math.nan, "", math.nan, True, "plan"))
        _record(state, 0, op.cluster, "override", "manual_override", {"note": op.reason}, before, op.label, score,
                math.nan, math.nan, n, "plan")

    if plan.merge:
        if not has_cells:
            raise ParameterError("refinement plan: merge needs the per-cell data (cell matrix and cluster labels)")
        for op in plan.merge:
            for c in op.clusters:
                gone(c, "merge")
            into = op.into if op.into is not None else op.clusters[0]
            before = "; ".join(f"{c} {_label(view, state, c)}" for c in op.clusters)
            n = sum(_n_cells(view, c) for c in op.clusters)
            labels = state.labels.astype(object)
            labels[np.isin(state.labels, op.clusters)] = into
            state.labels = labels.astype(str)
            for c in op.clusters:
                state.forced.pop(c, None)
                state.action.pop(c, None)
                present.discard(c)
            present.add(into)
            state.action[into], state.manual = "merge", state.manual | {into}
            view = run.view(state.labels)
            if op.label is not None:  # the reference tool's merge names the pooled cluster's label
                state.forced[into] = _Forced(op.label, None, "manual_override", "merge")
            after = _label(view, state, into)
            detail = {"clusters": list(op.clusters), "into": into, "label_given": op.label is not None, "note": op.reason}
            state.steps.append(_step(run, into, _label_node(view, state, into), "merge", "plan", math.nan, "", math.nan, True, "plan"))
            _record(state, 0, into, "merge", "manual_merge", detail, before, after, math.nan,
                    _label_score(view, state, into), math.nan, n, "plan")

    for op in plan.subcluster:
        if not has_cells:
            raise ParameterError("refinement plan: subcluster needs the per-cell data (cell matrix and cluster labels)")
        gone(op.cluster, "subcluster")
        resolution = op.resolution if op.resolution is not None else run.params.refinement.resolution
        state.manual.add(op.cluster)
        ids = _subcluster(run, state, view, op.cluster, resolution, {"trigger": "plan", "note": op.reason}, 0, "plan",
                          math.nan)
        if ids:
            present.discard(op.cluster)
            present.update(ids)
    if state.splits:  # the pieces of all planned splits are annotated and settled together
        view, _ = _settle(run, state, run.view(state.labels))
        present = set(view.ev.clusters)

    for op in plan.relabel:
        gone(op.cluster, "relabel")
        node = resolve_target(run.ruleset, op.to)
        before, score_before = _label(view, state, op.cluster), _label_score(view, state, op.cluster)
        score = view.score(op.cluster, node)
        state.forced[op.cluster] = _Forced(node.name, node, "manual_relabel", "relabel")
        state.action[op.cluster] = "relabel"
        state.manual.add(op.cluster)
        state.steps.append(_step(run, op.cluster, node, "relabel", "plan", score, "", math.nan, True, "plan"))
        _record(state, 0, op.cluster, "relabel", "manual_relabel", {"path": node.path_str, "note": op.reason}, before,
                node.name, score_before, score, math.nan, _n_cells(view, op.cluster), "plan")
    return view


# ---- the final tables ---------------------------------------------------------------------


def _finalise(view: _View, state: _State, ruleset) -> Annotation:
    """The engine's annotation of the final clusters, with forced labels, actions and refine steps."""
    ann = view.annotation
    clusters = ann.clusters.copy()
    clusters["refinement_action"] = [state.action.get(c, "") for c in clusters["cluster"].astype(str)]
    for c, forced in state.forced.items():
        hit = clusters["cluster"].astype(str) == c
        if not hit.any():
            continue
        node = forced.node
        values = {
            "final_annotation": forced.label,
            "annotation_path": node.path_str if node is not None else forced.label,
            "level": node.level if node is not None else -1,
            "root": node.path[0] if node is not None else "",
            "score": view.score(c, node) if node is not None else math.nan,
            "confidence": math.nan, "uncontested": False, "stop_reason": forced.stop_reason,
            "runner_up": "", "runner_up_score": math.nan, "margin": math.nan,
        }
        for key, value in values.items():
            clusters.loc[hit, key] = value
    trace = ann.trace
    if state.steps:
        extra = trace_frame(cite_stored_copy(state.steps, ruleset))
        trace = pd.concat([trace, extra], ignore_index=True) if len(trace) else extra
        trace["step"] = trace.groupby("cluster", sort=False).cumcount() + 1
    return replace(ann, clusters=clusters, trace=trace)
