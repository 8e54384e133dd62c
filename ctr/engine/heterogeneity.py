"""How mixed a cluster is (semantics §8): per-cell votes over its decision frontier, and
H = exp(entropy of the vote shares) - 1, ``Uncertain`` counting as a population of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.engine.decide import NodeEvaluation
from ctr.engine.scoring import ClusterEvidence
from ctr.engine.votes import UNCERTAIN, candidate_votes, composition
from ctr.rules.model import CellType, Ruleset


def frontier(label: CellType | None, ruleset: Ruleset) -> list[CellType]:
    """The cell types a cluster's cells are voted over: the children of its label; its siblings
    (itself included) when it is a leaf, the roots for a leaf root; the roots when it has no
    node label (Unassigned, ambiguous root)."""
    if label is None:
        return list(ruleset.roots)
    if label.children:
        return list(label.children)
    if len(label.path) == 1:
        return list(ruleset.roots)
    return list(ruleset.node(label.path[:-1]).children)


def heterogeneity(shares: list[tuple[str, float]]) -> float:
    """exp(Shannon entropy, natural log) - 1 of the shares: the effective number of populations
    minus one (0 for one population, 1 for two equal ones, 2 for three)."""
    p = np.array([s for _, s in shares if s > 0], dtype=np.float64)
    if p.size == 0:
        return 0.0
    return float(np.exp(-np.sum(p * np.log(p))) - 1.0)


@dataclass
class FrontierVotes:
    candidates: list[CellType]
    votes: np.ndarray  # one candidate name or "Uncertain" per cell
    shares: list[tuple[str, float]]  # every candidate and Uncertain, largest first
    heterogeneity: float

    def best(self) -> tuple[CellType | None, float]:
        """The candidate with the largest vote share (never Uncertain), and that share."""
        by_name = {c.name: c for c in self.candidates}
        for name, share in self.shares:
            if name != UNCERTAIN and share > 0:
                return by_name[name], share
        return None, 0.0


def frontier_votes(
    cells: np.ndarray, cell_matrix, ev: ClusterEvidence, evaluations: dict[tuple, NodeEvaluation],
    candidates: list[CellType], per_cell_gap: float,
) -> FrontierVotes:
    """Vote the cells (row positions in ``cell_matrix``) over ``candidates`` with the engine's
    per-cell scores (semantics §7.5) and measure the heterogeneity of the votes."""
    names = [n.name for n in candidates]
    votes = candidate_votes(cell_matrix[cells], candidates, evaluations, ev, per_cell_gap)
    shares = composition(votes, names)
    return FrontierVotes(candidates, votes, shares, heterogeneity(shares))
