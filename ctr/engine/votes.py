"""Per-cell votes among near-tied candidates (semantics §7.5): evidence, never a label change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

UNCERTAIN = "Uncertain"


def cell_scores(block, candidate_columns: Sequence[Sequence[int]], reference: np.ndarray, global_std: np.ndarray) -> np.ndarray:
    """(cells x candidates): each candidate's mean over its resolved markers of
    ``(x - reference) / global_std`` (the reference enrichment is measured from). ``block`` holds the cells' rows (all marker columns);
    flat markers (std 0) and missing values are left out of the mean; no value -> NaN."""
    used = sorted({c for cols in candidate_columns for c in cols})
    dense = block[:, used].toarray() if sp.issparse(block) else np.asarray(block[:, used])
    dense = np.asarray(dense, dtype=np.float64)
    position = {c: i for i, c in enumerate(used)}
    std = global_std[used]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > 0, (dense - reference[used]) / np.where(std > 0, std, 1.0), np.nan)
    out = np.full((dense.shape[0], len(candidate_columns)), np.nan)
    for k, cols in enumerate(candidate_columns):
        sub = z[:, [position[c] for c in cols]] if cols else np.empty((dense.shape[0], 0))
        counts = np.sum(~np.isnan(sub), axis=1)
        out[:, k] = np.divide(np.nansum(sub, axis=1), counts, out=np.full(dense.shape[0], np.nan), where=counts > 0)
    return out


def without_unmet_requirements(scores: np.ndarray, block, required: Sequence[Sequence[int]], ev) -> np.ndarray:
    """``scores`` (cells x candidates) with a candidate left out (NaN) in the cells that are not
    positive for every marker it requires (``required``: per candidate, the columns of its
    `require` markers; ``ev``: the :class:`ctr.engine.scoring.ClusterEvidence` whose splits say
    what positive is). A `require` line is a rule of the ruleset: a CD20-negative cell is no vote
    for a type that requires CD20, however high its other markers read."""
    out = scores.copy()
    for k, cols in enumerate(required):
        if cols:
            out[~ev.positive_cells(block, cols).all(axis=1), k] = np.nan
    return out


def vote(scores: np.ndarray, names: Sequence[str], per_cell_gap: float) -> np.ndarray:
    """Each cell's vote: the best candidate when it leads the second by >= per_cell_gap, else
    ``Uncertain`` (also when the cell has no score). Ties go to the earlier candidate."""
    n_cells, n_cand = scores.shape
    filled = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-filled, axis=1, kind="stable")
    rows = np.arange(n_cells)
    best = filled[rows, order[:, 0]]
    # a lone candidate (the others left out, e.g. by a requirement the cell fails) is measured
    # against no evidence at all (0): a cell is no vote for a type whose markers it lacks
    second = filled[rows, order[:, 1]] if n_cand > 1 else np.full(n_cells, -np.inf)
    second = np.where(np.isfinite(second), second, 0.0)
    with np.errstate(invalid="ignore"):
        decided = np.isfinite(best) & ((best - second) >= per_cell_gap)
    labels = np.asarray(list(names) + [UNCERTAIN], dtype=object)
    return np.where(decided, labels[order[:, 0]], UNCERTAIN)


def composition(votes: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    """Vote shares of every candidate and ``Uncertain``, largest first (ties: candidate order)."""
    total = len(votes)
    options = list(names) + [UNCERTAIN]
    shares = [(name, float(np.sum(votes == name)) / total if total else 0.0) for name in options]
    return sorted(shares, key=lambda item: -item[1])


def composition_text(shares: list[tuple[str, float]]) -> str:
    """``T cells:0.62;B cells:0.30;Uncertain:0.08`` (options nobody voted for are left out)."""
    return ";".join(f"{name}:{share:.2f}" for name, share in shares if share > 0)


def candidate_votes(block, candidates, evaluations, ev, per_cell_gap: float) -> np.ndarray:
    """Each cell's vote among the cell types ``candidates`` (``block``: the cells' rows, every marker
    column): scored on each candidate's resolved, non-flat positive markers, none for a candidate
    whose required markers the cell lacks (``evaluations``: node path -> its NodeEvaluation)."""
    scores = [evaluations[n.path].scores for n in candidates]
    columns = [[c for c in ns.positive_cols if not ev.flat[c]] for ns in scores]
    cells = cell_scores(block, columns, ev.reference, ev.global_std)
    cells = without_unmet_requirements(cells, block, [ns.required_cols for ns in scores], ev)
    return vote(cells, [n.name for n in candidates], per_cell_gap)

