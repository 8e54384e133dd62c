"""Per-marker statistics over all cells: centre, spread, flatness and the positivity threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.rules.params import ScoringParams

# The quantile rule of numpy (method="linear", i.e. Hyndman & Fan type 7), used everywhere.
QUANTILE_METHOD = "linear"


@dataclass(frozen=True)
class MarkerSummary:
    marker: str
    global_median: float
    global_mean: float
    global_std: float
    threshold: float
    threshold_source: str  # "quantile" | "absolute"
    threshold_op: str  # ">=" | ">"
    flat: bool
    n_nonzero: int
    n_nan: int


def summarise_marker(
    marker: str, values: np.ndarray, scoring: ScoringParams, absolute: tuple[str, float] | None = None
) -> MarkerSummary:
    """Global statistics of one marker column (NaN = missing, excluded and counted)."""
    nan = np.isnan(values)
    valid = values[~nan]
    nonzero = valid[valid != 0]
    if valid.size:
        median, mean, std = float(np.median(valid)), float(valid.mean()), float(valid.std())
    else:
        median = mean = std = float("nan")
    flat = not (std > 0)
    if absolute is not None:
        op, threshold, source = absolute[0], float(absolute[1]), "absolute"
    else:
        op, source = ">=", "quantile"
        threshold = float(np.quantile(nonzero, scoring.positive_quantile, method=QUANTILE_METHOD)) if nonzero.size else float("nan")
    return MarkerSummary(marker, median, mean, std, threshold, source, op, flat, int(nonzero.size), int(nan.sum()))


def positive(values: np.ndarray, summary: MarkerSummary) -> np.ndarray:
    """Which cells are positive: value >= t and > 0 (quantile), or ``value op t`` (absolute).
    Missing values and flat markers are never positive."""
    if summary.flat or np.isnan(summary.threshold):
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if summary.threshold_source == "absolute":
            return values > summary.threshold if summary.threshold_op == ">" else values >= summary.threshold
        return (values >= summary.threshold) & (values > 0)


def absolute_thresholds(ruleset, mapping: dict[str, str]) -> dict[str, tuple[str, float]]:
    """The ruleset's ``threshold M > x`` cuts keyed by panel name (unresolved markers dropped),
    ready for :func:`ctr.stats.compute_statistics`."""
    return {mapping[t.marker]: (t.op, t.value) for t in ruleset.thresholds if t.marker in mapping}
