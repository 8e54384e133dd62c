"""Marker groups (``any(FAP, ACTA2, CD36)``): one derived column per group, positive in a cell
that is positive for at least one member.

Members are measured on their own scales, so each member's value is first put on a common one:
its distance from its own split in units of its spread, ``(x - threshold) / global_std``, held at
or above 0 where the cell is positive for the member (by that member's own rule) and below 0 where
it is not. The group's value is the largest of its members' and its split is 0: positive for the
group exactly when positive for any member. From there the group is read like any marker
(positive fraction, enrichment, scores, per-cell votes), which is what lets a type defined by
alternatives (stroma: VIM and one of FAP / SMA / CD36; scimap's ``anypos``) pass coverage in a
cluster where each alternative alone is a minority.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from ctr.rules.params import ScoringParams
from ctr.stats.cluster_stats import column_values
from ctr.stats.global_stats import MarkerSummary, positive, summarise_marker

# the group's split: a cell at or above 0 is positive for a member
GROUP_SPLIT = (">=", 0.0)
# how far below the split a negative member value is held at the least (a value equal to a strict
# split, ``x > t``, is not positive and must not read as 0)
_BELOW = 1e-6


def member_scale(values: np.ndarray, summary: MarkerSummary) -> np.ndarray:
    """One member's values as signed distances from its split in units of its spread: >= 0 exactly
    where the cell is positive for it. A flat member has no split: NaN (it leaves the group's max)."""
    if summary.flat or not summary.global_std > 0 or np.isnan(summary.threshold):
        return np.full(values.shape, np.nan)
    z = (values - summary.threshold) / summary.global_std
    return np.where(positive(values, summary), np.maximum(z, 0.0), np.minimum(z, -_BELOW))


def group_values(matrix, panel_names: Sequence[str], groups: dict[str, list[str]], scoring: ScoringParams,
                 thresholds: dict[str, tuple[str, float]], rescale_gate: float | None = None) -> np.ndarray:
    """(cells x groups) values of the groups (``groups``: group name -> member panel names, in the
    order given), from the members' columns of ``matrix`` (cells x ``panel_names``). Each member's
    split is the one the statistics find for it (``thresholds``: the ruleset's absolute cuts by
    panel name; ``rescale_gate``: the data profile's gate)."""
    column = {name: j for j, name in enumerate(panel_names)}
    members = list(dict.fromkeys(m for ms in groups.values() for m in ms))
    scaled: dict[str, np.ndarray] = {}
    for m in members:
        values = column_values(matrix, column[m])  # as the statistics read it (infinite -> missing)
        summary = summarise_marker(m, values, scoring, thresholds.get(m), rescale_gate=rescale_gate)
        scaled[m] = member_scale(values, summary)
    out = np.full((matrix.shape[0], len(groups)), np.nan)
    with np.errstate(invalid="ignore"):
        for k, ms in enumerate(groups.values()):
            for m in ms:
                out[:, k] = np.fmax(out[:, k], scaled[m])  # fmax: a missing member value leaves the others
    return out


def with_groups(matrix, panel_names: Sequence[str], groups: dict[str, list[str]], scoring: ScoringParams,
                thresholds: dict[str, tuple[str, float]], rescale_gate: float | None = None):
    """``matrix`` with one column per group appended (named by the group), the names, and
    ``thresholds`` with each group's split: what the statistics then read as markers."""
    values = group_values(matrix, panel_names, groups, scoring, thresholds, rescale_gate).astype(np.float32)
    if sp.issparse(matrix):
        wider = sp.hstack([matrix, sp.csr_matrix(values)], format="csr")
    else:
        wider = np.hstack([np.asarray(matrix), values])
    return wider, [*panel_names, *groups], {**thresholds, **dict.fromkeys(groups, GROUP_SPLIT)}


def mark_groups(global_: pl.DataFrame, groups) -> pl.DataFrame:
    """The global table with each group's split method named ``any`` (its cut is the group rule,
    not a threshold line of the ruleset)."""
    is_group = pl.col("marker").is_in(list(groups))
    return global_.with_columns(pl.when(is_group).then(pl.lit("any")).otherwise(pl.col("threshold_method"))
                                .alias("threshold_method"))


__all__ = ["GROUP_SPLIT", "group_values", "mark_groups", "member_scale", "with_groups"]
