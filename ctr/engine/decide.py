"""The hierarchical decision of one cluster (semantics §7): gate roots, pick the best, descend.

Selections compare passing candidates by score (ties: declaration order). The gap a winner
needs is ``min_gap`` of the candidates' level, unless the best candidate overrides ``min_gap``
itself (a node-level ``min_gap`` is the margin that node needs to win).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ctr.engine.gates import GateOutcome
from ctr.engine.scoring import NodeScores
from ctr.engine.trace import Provenance, threshold_provenance
from ctr.rules.model import PATH_SEP, CellType, Ruleset
from ctr.rules.params import ResolvedParams

UNASSIGNED = "Unassigned"
AMBIGUITY_SEP = "~"
# Stop reasons that leave a cluster without any label.
UNASSIGNED_STOPS = ("no_root_passed", "not_assessable_root")


@dataclass
class NodeEvaluation:
    """A cell type scored and gated over all clusters."""

    scores: NodeScores
    gates: list[GateOutcome]
    passed: np.ndarray
    order: int  # declaration order (depth-first walk index)


@dataclass
class Selection:
    """One choice among sibling candidates (roots, or the children of the current node)."""

    level: int
    parent: CellType | None
    candidates: list[CellType]  # every sibling evaluated, declaration order
    ranked: list[CellType]  # the passing ones, best first
    scores: list[float]  # their scores
    outcome: str  # winner | ambiguous | none_passed
    margin: float  # best - second (inf for a lone candidate, NaN when none passed)
    min_gap: float
    provenance: Provenance | None
    ambiguous: list[CellType] = field(default_factory=list)
    # a near-tie settled by the evidence: the rule that settled it ("coverage" | "anti_penalty" | "distinct_coverage"),
    # the candidates it set aside, and the winner's advantage on that rule's statistic
    tie_break: str = ""
    set_aside: list[CellType] = field(default_factory=list)
    advantage: float = math.nan


@dataclass
class Decision:
    cluster: str
    index: int  # row in the evidence arrays
    path: list[CellType]
    stop_reason: str
    selections: list[Selection]

    @property
    def ambiguous(self) -> list[CellType]:
        last = self.selections[-1]
        return last.ambiguous if last.outcome == "ambiguous" else []

    @property
    def label(self) -> str:
        if self.stop_reason in UNASSIGNED_STOPS:
            return UNASSIGNED
        if self.stop_reason == "ambiguous_root":
            return AMBIGUITY_SEP.join(n.name for n in self.ambiguous)
        return self.path[-1].name

    @property
    def annotation_path(self) -> str:
        if not self.path:
            return self.label
        return PATH_SEP.join(n.name for n in self.path)

    @property
    def margins(self) -> list[float]:
        return [s.margin for s in self.selections if s.outcome == "winner"]

    @property
    def confidence(self) -> float:
        """The smallest winning margin on the path; for an ambiguous root the (short) gap
        between the two best roots; 0 when unassigned."""
        if self.stop_reason in UNASSIGNED_STOPS:
            return 0.0
        if self.stop_reason == "ambiguous_root":
            return self.selections[-1].margin
        return min(self.margins)

    @property
    def deciding(self) -> Selection | None:
        """The selection that set the label (the ambiguous one for an ambiguous root)."""
        if self.stop_reason == "ambiguous_root":
            return self.selections[-1]
        winners = [s for s in self.selections if s.outcome == "winner"]
        return winners[-1] if winners else None


def min_gap_for(node: CellType, params: ResolvedParams, ruleset: Ruleset) -> tuple[float, Provenance]:
    """The margin ``node`` needs to win among its siblings, and where that number came from."""
    prov = threshold_provenance(node, "min_gap", params, ruleset)
    return prov.setting.value, prov


def select(
    i: int, candidates: list[CellType], parent: CellType | None, evaluations: dict[tuple, NodeEvaluation],
    params: ResolvedParams, ruleset: Ruleset,
) -> Selection:
    """Rank the passing candidates of cluster ``i`` and decide winner / ambiguous / none_passed."""
    level = candidates[0].level if candidates else 0
    passing = [c for c in candidates if evaluations[c.path].passed[i]]
    # stable sort on score alone keeps declaration order among ties
    ranked = sorted(passing, key=lambda c: -float(evaluations[c.path].scores.score[i]))
    scores = [float(evaluations[c.path].scores.score[i]) for c in ranked]
    if not ranked:
        return Selection(level, parent, candidates, [], [], "none_passed", math.nan, math.nan, None)
    gap, prov = min_gap_for(ranked[0], params, ruleset)
    if len(ranked) == 1:
        return Selection(level, parent, candidates, ranked, scores, "winner", math.inf, gap, prov)
    margin = scores[0] - scores[1]
    if margin < gap:
        close = [c for c, s in zip(ranked, scores) if scores[0] - s < gap][: params.gating.max_ambiguity]
        settled = break_tie(i, close, evaluations, params)
        if settled is None:
            return Selection(level, parent, candidates, ranked, scores, "ambiguous", margin, gap, prov, close)
        winner, rule, advantage = settled
        order = [winner] + [c for c in ranked if c is not winner]
        return Selection(level, parent, candidates, order, [float(evaluations[c.path].scores.score[i]) for c in order],
                         "winner", margin, gap, prov, tie_break=rule,
                         set_aside=[c for c in close if c is not winner], advantage=advantage)
    return Selection(level, parent, candidates, ranked, scores, "winner", margin, gap, prov)


def break_tie(i: int, close: list[CellType], evaluations: dict[tuple, NodeEvaluation], params: ResolvedParams):
    """Settle a near-tie when the evidence is one-sided although the scores are close: one
    candidate's coverage beats every other's by ``tie_coverage_gap``, or every other candidate
    carries an anti-marker penalty ``tie_anti_gap`` above the lowest, or, on the markers that tell
    the candidates apart (those no other candidate of the tie lists), one candidate's coverage beats
    every other's by ``tie_coverage_gap``. Returns (winner, rule, advantage) or None when the tie
    stands."""
    gating = params.gating
    scores = [evaluations[c.path].scores for c in close]
    rules = (("coverage", gating.tie_coverage_gap, [float(s.coverage[i]) for s in scores]),
             ("anti_penalty", gating.tie_anti_gap, [-float(s.anti_penalty[i]) for s in scores]),
             ("distinct_coverage", gating.tie_coverage_gap, distinct_coverage(i, scores)))
    for rule, needed, values in rules:
        if needed is None:
            continue
        best = int(np.argmax(values))
        advantage = float(values[best] - max(v for k, v in enumerate(values) if k != best))
        if advantage >= needed:
            return close[best], rule, advantage
    return None


def distinct_coverage(i: int, scores: list[NodeScores]) -> list[float]:
    """Each candidate's coverage in cluster ``i`` over its own distinct markers: the measured
    positive markers that no other candidate lists. Two types that share a marker (endothelium and
    fibroblasts both list vimentin) can tie on it alone; the markers only one of them lists say
    which it is. A candidate with no distinct marker has nothing of its own on: 0."""
    values = []
    for k, s in enumerate(scores):
        others = {m for j, o in enumerate(scores) if j != k for m in o.positive}
        own = [col for col, marker in enumerate(s.positive) if marker not in others]
        values.append(float(np.mean(s.on[i, own])) if own else 0.0)
    return values


def _none_passed_stop(candidates: list[CellType], parent: CellType | None, evaluations) -> str:
    """``not_assessable_*`` when no candidate has enough measured markers to be judged on this
    panel (a fact about the panel, not the cluster), else ``no_root_passed`` / ``no_child_passed``."""
    judged = any(evaluations[c.path].scores.assessable for c in candidates)
    if parent is None:
        return "no_root_passed" if judged else "not_assessable_root"
    return "no_child_passed" if judged else "not_assessable_children"


def decide_cluster(
    i: int, cluster: str, ruleset: Ruleset, evaluations: dict[tuple, NodeEvaluation], params: ResolvedParams
) -> Decision:
    """Walk the hierarchy for cluster ``i`` from the roots down."""
    path: list[CellType] = []
    selections: list[Selection] = []
    candidates, parent = list(ruleset.roots), None
    while True:
        sel = select(i, candidates, parent, evaluations, params, ruleset)
        selections.append(sel)
        if sel.outcome == "none_passed":
            return Decision(cluster, i, path, _none_passed_stop(candidates, parent, evaluations), selections)
        if sel.outcome == "ambiguous":
            return Decision(cluster, i, path, "ambiguous_root" if parent is None else "ambiguous_siblings", selections)
        best = sel.ranked[0]
        path.append(best)
        if not best.children:
            return Decision(cluster, i, path, "leaf_reached", selections)
        candidates, parent = list(best.children), best
