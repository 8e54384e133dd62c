"""Per-marker statistics over all cells: centre, spread, flatness, the positivity split and the
reference that enrichment is measured from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.rules.params import ScoringParams
from ctr.stats.ordered import ascending, sorted_histogram, sorted_median
from ctr.stats.positivity import Split, find_split

# The quantile rule of numpy (method="linear", i.e. Hyndman & Fan type 7), used everywhere.
QUANTILE_METHOD = "linear"


@dataclass(frozen=True)
class MarkerSummary:
    marker: str
    global_median: float
    global_mean: float
    global_std: float
    threshold: float
    threshold_source: str  # "auto" | "quantile" | "absolute"
    threshold_op: str  # ">=" | ">"
    threshold_method: str  # how the split was found: mixture | log_mixture | floor | tail | rescaled | gate | quantile | absolute | none
    threshold_quality: float  # Ashman's D of the two-population fit (NaN when none was fitted)
    negative_median: float  # median of the values that are not positive (NaN when every value is)
    enrichment_reference: float  # the value enrichment is measured from
    positive_share: float  # share of the non-missing values that are positive
    flat: bool
    n_nonzero: int
    n_nan: int


def summarise_marker(
    marker: str, values: np.ndarray, scoring: ScoringParams, absolute: tuple[str, float] | None = None,
    sorted_valid: np.ndarray | None = None, rescale_gate: float | None = None,
    moments: tuple[float, float] | None = None,
) -> MarkerSummary:
    """Global statistics of one marker column (NaN = missing, excluded and counted).

    ``rescale_gate``: the value the layer's rescale put every manual gate at (its data profile
    ``gate_rescaled``, :func:`ctr.data.checks.rescaled_gate`); positivity ``auto`` then cuts there,
    since a gate placed inside one population cannot be found from the distribution.

    ``sorted_valid``: the column's non-missing values in ascending order, when the caller has them;
    medians and quantiles (which depend only on the values, not their order) are then taken from
    it, which is cheaper. Sums (mean, spread) always run over ``values`` in cell order, in float64:
    ``moments`` is their (mean, standard deviation) when the caller has taken them already."""
    nan = np.isnan(values)
    valid = values[~nan] if nan.any() else values
    ordered = ascending(valid) if sorted_valid is None else sorted_valid
    zeros = slice(int(np.searchsorted(ordered, 0.0, side="left")), int(np.searchsorted(ordered, 0.0, side="right")))
    n_nonzero = ordered.size - (zeros.stop - zeros.start)
    if valid.size:
        mean, std = moments if moments is not None else column_moments(valid)
        median = sorted_median(ordered)
    else:
        median = mean = std = float("nan")
    flat = not (std > 0)
    if absolute is not None:
        split, source = Split(float(absolute[1]), absolute[0], "absolute", float("nan")), "absolute"
    elif scoring.positivity == "auto" and rescale_gate is not None:
        split, source = Split(float(rescale_gate), ">=", "rescaled", float("nan")), "auto"
    elif scoring.positivity == "auto":
        split, source = find_split(ordered, scoring.split_separation, scoring.split_tail_mads), "auto"
    elif scoring.positivity == "gate":
        split, source = Split(float(scoring.gate), ">=", "gate", float("nan")), "gate"
    else:
        # the user guide's rule: a quantile of the non-zero values; a positive cell is also > 0
        nonzero = np.concatenate([ordered[: zeros.start], ordered[zeros.stop :]])
        t = float(np.quantile(nonzero, scoring.positive_quantile, method=QUANTILE_METHOD)) if nonzero.size else float("nan")
        split, source = Split(t, ">=", "quantile", float("nan")), "quantile"
    pos = _positive(ordered, split.threshold, split.op, source, flat)
    n_pos = int(np.count_nonzero(pos))
    # every positivity rule is a cut on the value: the negatives are the first values in order
    negative_median = sorted_median(ordered[: ordered.size - n_pos]) if n_pos < ordered.size else float("nan")
    reference = median if scoring.enrichment_reference == "median" or np.isnan(negative_median) else negative_median
    share = n_pos / ordered.size if valid.size else float("nan")
    return MarkerSummary(marker, median, mean, std, split.threshold, source, split.op, split.method, split.quality,
                         negative_median, reference, share, flat, int(n_nonzero), int(nan.sum()))


def column_moments(valid: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of non-missing values, summed in float64 in the order given."""
    valid = np.asarray(valid, dtype=np.float64)
    return float(valid.mean()), float(valid.std())


def positive_values(x: np.ndarray, threshold, strict, nonzero, flat) -> np.ndarray:
    """The positivity rule, for one marker (scalar arguments) or for the columns of ``x`` (one
    value per column): ``x > threshold`` where ``strict``, else ``x >= threshold``; where ``nonzero``
    (the quantile rule) also ``x > 0``. A flat marker, a missing threshold and a missing value are
    never positive."""
    with np.errstate(invalid="ignore"):
        if np.ndim(strict) == 0:  # one marker (the statistics' hot path): only the passes it needs
            if flat or np.isnan(threshold):
                return np.zeros(np.shape(x), dtype=bool)
            above = x > threshold if strict else x >= threshold
            return above & (x > 0) if nonzero else above
        above = np.where(strict, x > threshold, x >= threshold)
        return above & (~np.asarray(nonzero) | (x > 0)) & ~np.asarray(flat) & ~np.isnan(threshold)


def _positive(values: np.ndarray, threshold: float, op: str, source: str, flat: bool) -> np.ndarray:
    return positive_values(values, threshold, op == ">", source == "quantile", flat)


def positive(values: np.ndarray, summary: MarkerSummary) -> np.ndarray:
    """Which cells are positive: ``value op threshold`` (the quantile rule also needs value > 0).
    Missing values and flat markers are never positive."""
    return _positive(values, summary.threshold, summary.threshold_op, summary.threshold_source, summary.flat)


HISTOGRAM_BINS = 48


def marker_histogram(marker: str, values: np.ndarray) -> dict[str, list]:
    """The distribution of one marker as ``HISTOGRAM_BINS`` bins between its 0.1% and 99.9%
    quantiles (long format: marker, lower, upper, count), for drawing the split on it.
    ``values`` in any order (the caller may pass them sorted)."""
    missing = np.isnan(values)
    valid = ascending(values[~missing] if missing.any() else values)
    if not valid.size:
        return {"marker": [], "lower": [], "upper": [], "count": []}
    lo, hi = np.quantile(valid, [0.001, 0.999])
    if not hi > lo:
        lo, hi = float(valid[0]), float(valid[-1]) + (0.0 if valid[-1] > valid[0] else 1.0)
    counts, edges = sorted_histogram(valid, lo, hi, HISTOGRAM_BINS, clip=True)
    return {"marker": [marker] * HISTOGRAM_BINS, "lower": edges[:-1].tolist(), "upper": edges[1:].tolist(),
            "count": counts.tolist()}


def absolute_thresholds(ruleset, mapping: dict[str, str]) -> dict[str, tuple[str, float]]:
    """The ruleset's ``threshold M > x`` cuts keyed by panel name (unresolved markers dropped),
    ready for :func:`ctr.stats.compute_statistics`."""
    return {mapping[t.marker]: (t.op, t.value) for t in ruleset.thresholds if t.marker in mapping}
