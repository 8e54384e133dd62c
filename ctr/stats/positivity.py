"""Where a marker turns positive, found from the marker's own distribution (``positivity: auto``).

Gating practice splits a marker's transformed values into a negative and a positive population.
We fit a two-component Gaussian mixture to the values (on a fine histogram: the split is a
property of the distribution, not of each cell) and cut where the two components are equally
likely. The fit counts as two populations when Ashman's D, the separation of the components in
units of their pooled spread, reaches ``scoring.split_separation`` (2, the usual bar) and the
fitted density dips between the two means (a single population that the fit cuts in halves has
one mode, whatever D says), or when one component (a narrow noise peak next to a wide stained tail, as imaging data show) lies at
least 3 of its own standard deviations from the cut.

One rule serves three shapes of data:
- values with a mass at their floor (true zeros of MIBI/IMC counts or of log-normalised RNA):
  the floor is negative by definition, and the mixture is fitted to the values above it;
- continuous values with negatives (flow or mass cytometry after logicle/arcsinh): the mixture is
  fitted to all values;
- counts or intensities on a linear scale (size-normalised MIBI counts), whose stained populations
  are lognormal: when the values show one population on their own scale, the mixture is fitted
  again to their logarithm (values above the floor are positive), as a gating axis would show them;
- one population only (no second one to split off): the larger of the floor mass and that
  population is the negative one. A floor holding most cells leaves "above the floor" (detected)
  as positive; otherwise positives are the population's upper tail, beyond
  ``scoring.split_tail_mads`` robust standard deviations above its median.

Every split records its method and a fit-quality figure, so a user can judge it by eye.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.stats.ordered import ascending, median_abs_deviation, sorted_histogram, sorted_median

# A mass at the floor holding at least this share of the values is a negative population of its own.
FLOOR_MASS = 0.05
# Ashman's D at or above which two mixture components are two populations.
MIN_SEPARATION = 2.0
# ... or one component (a narrow noise peak) lies this many of its standard deviations from the cut.
ONE_SIDED = 3.0
# The smaller component must hold at least this share of the fitted values.
MIN_WEIGHT = 0.005
# Robust standard deviations above the median where a unimodal marker's positive tail starts.
TAIL_MADS = 2.0
# Counts: the smallest value above the floor is at least this share of the median above it.
DETECTION_GAP = 0.25
# Fitted on the logarithm, two populations' centres must lie at least this many fold apart: on a
# linear scale a stained population sits many times above the background (MIBI-like counts: 4 to
# 25-fold), while neighbouring count levels (1, 2, 3 counts) and values already on a log scale
# (log1p RNA: 1.2 to 2.8-fold between its detection levels) lie closer.
MIN_FOLD = 4.0
# Histogram bins the mixture is fitted on; EM steps from each start; the starting splits.
BINS = 512
_EM_STEPS = 60
_STARTS = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Split:
    """A marker's positive/negative split: a cell is positive when ``value op threshold``."""

    threshold: float
    op: str  # ">=" | ">"
    method: str  # mixture | log_mixture | floor | tail | quantile | absolute | none
    quality: float  # Ashman's D of the two-component fit (NaN when no mixture was fitted)


def ashman_d(means: np.ndarray, variances: np.ndarray) -> float:
    """Separation of two Gaussian components: |m1 - m2| * sqrt(2 / (v1 + v2))."""
    return float(abs(means[1] - means[0]) * np.sqrt(2.0 / max(variances[0] + variances[1], 1e-300)))


def _fit_mixture(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and variances (sorted by mean) of the best two-component 1-D Gaussian
    mixture, by EM on a fine histogram of the ``values`` (in ascending order).

    EM on ``BINS`` bin centres weighted by their counts costs the same for 10^3 or 10^7 cells, and
    starting it from several splits of the sorted values (2% to 98%) finds a small population
    that a single start misses. The highest likelihood wins (the first start on a tie).
    """
    lo, hi = np.quantile(values, [0.0005, 0.9995])
    if not hi > lo:
        lo, hi = float(values[0]), float(values[-1])
    # the extreme 0.1% are left out: a few outliers would otherwise stretch the bins
    counts, edges = sorted_histogram(values, lo, hi, BINS)
    keep = counts > 0
    x, w = ((edges[:-1] + edges[1:]) / 2)[keep], counts[keep].astype(np.float64)
    floor_var = ((hi - lo) / BINS) ** 2  # a component narrower than a bin is not resolved
    cum = np.cumsum(w) / w.sum()
    upper = cum > np.array(_STARTS)[:, None]  # (starts, bins): the bins above each starting split
    upper = upper[upper.any(axis=1) & ~upper.all(axis=1)]
    if not upper.shape[0]:
        return np.array([1.0, 0.0]), np.array([lo, hi]), np.array([floor_var, floor_var])
    # every start runs at once, each row the same arithmetic as a start of its own
    resp = np.where(upper, 1.0, 0.0)
    previous = None
    for _ in range(_EM_STEPS):
        params = _m_step(x, w, resp, floor_var)
        resp, ll = _e_step(x, w, *params)
        if previous is not None and all(np.array_equal(a, b) for a, b in zip(params, previous)):
            break  # a fixed point: every further step would repeat this one exactly
        previous = params
    ll = np.where(np.isnan(ll), -np.inf, ll)  # a start wins only by a likelihood above -inf
    if not (ll > -np.inf).any():
        return np.array([1.0, 0.0]), np.array([lo, hi]), np.array([floor_var, floor_var])
    best = int(np.argmax(ll))
    weights, means, variances = (p[best] for p in params)
    order = np.argsort(means)
    return weights[order], means[order], variances[order]


def _m_step(x, w, resp, floor_var):
    """(starts, 2) weights, means and variances from (starts, bins) responsibilities of the upper component."""
    r = np.stack([1.0 - resp, resp], axis=-2)  # (starts, 2, bins)
    mass = (r * w).sum(axis=-1) + 1e-300
    means = (r * w * x).sum(axis=-1) / mass
    variances = np.maximum((r * w * (x - means[..., None]) ** 2).sum(axis=-1) / mass, floor_var)
    return mass / mass.sum(axis=-1, keepdims=True), means, variances


def _log_components(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """(..., 2, len(x)): each component's weighted log density at ``x`` (log space: a narrow noise
    peak's density underflows to 0 a few bins away, and comparisons must still be made)."""
    return (np.log(np.maximum(weights, 1e-300))[..., None] - 0.5 * np.log(2 * np.pi * variances)[..., None]
            - 0.5 * (x - means[..., None]) ** 2 / variances[..., None])


def _e_step(x, w, weights, means, variances):
    log_p = _log_components(x, weights, means, variances)
    total = np.logaddexp(log_p[..., 0, :], log_p[..., 1, :])
    return np.exp(log_p[..., 1, :] - total), (w * total).sum(axis=-1)


def has_valley(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> bool:
    """Whether the fitted density dips between the two means: two populations make two modes.
    A single population split in two by the fit (a Gaussian's halves, a skewed tail) has one
    mode however far apart the halves' means are, so Ashman's D alone can mistake it."""
    grid = np.linspace(means[0], means[1], 257)
    density = np.exp(np.logaddexp(*_log_components(grid, weights, means, variances)))
    return bool(density.min() < (1.0 - 1e-3) * min(density[0], density[-1]))


def resolved_side(cut: float, means: np.ndarray, variances: np.ndarray) -> float:
    """How far the better-resolved component lies from ``cut``, in its own standard deviations.

    Imaging data (CODEX, IMC) after background subtraction often hold a narrow noise peak just
    above zero and a wide, skewed tail of stained cells: the two components overlap by Ashman's D
    (the wide one's spread dominates), yet the noise peak ends well before the cut.
    """
    sd = np.sqrt(variances)
    return float(max((cut - means[0]) / sd[0], (means[1] - cut) / sd[1]))


def mixture_cut(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> float:
    """The value between the two means where both components are equally likely (Bayes' cut)."""
    grid = np.linspace(means[0], means[1], 1025)
    log_density = _log_components(grid, weights, means, variances)
    upper_wins = np.nonzero(log_density[1] >= log_density[0])[0]
    return float(grid[upper_wins[0]]) if upper_wins.size else float(means[1])


def _detection_levels(above: np.ndarray, floor: float) -> bool:
    """Counts (scRNA-seq UMIs, normalised and log-transformed) jump from the floor to their first
    detection level: nothing lies between zero and one count. Such values above the floor (in
    ascending order) are detections, whatever their level; splitting them would cut one count from two."""
    if above.size == 0:
        return False
    return float(above[0] - floor) >= DETECTION_GAP * (sorted_median(above) - floor)


def _mixture_split(values: np.ndarray, separation: float, min_distance: float = 0.0) -> tuple[Split | None, float]:
    """The mixture's split of ``values`` (ascending) when the fit finds two populations whose means
    lie at least ``min_distance`` apart, else None; and the fit's Ashman's D either way."""
    weights, means, variances = _fit_mixture(values)
    quality = ashman_d(means, variances)
    cut = mixture_cut(weights, means, variances)
    two = quality >= separation and has_valley(weights, means, variances)
    if (weights.min() >= MIN_WEIGHT and means[1] - means[0] >= min_distance
            and (two or resolved_side(cut, means, variances) >= ONE_SIDED)):
        return Split(cut, ">=", "mixture", quality), quality
    return None, quality


def _log_mixture_split(values: np.ndarray, separation: float) -> Split | None:
    """The mixture's split of the logarithm of ``values`` (ascending, positive), taken back to the
    values' scale, when it finds two populations at least ``MIN_FOLD`` apart; else None."""
    logged, _ = _mixture_split(np.log(values), separation, float(np.log(MIN_FOLD)))
    return None if logged is None else Split(float(np.exp(logged.threshold)), ">=", "log_mixture", logged.quality)


def find_split(values: np.ndarray, separation: float = MIN_SEPARATION, tail_mads: float = TAIL_MADS) -> Split:
    """The positive/negative split of one marker from its non-missing ``values``: two populations
    when the fit separates them by Ashman's D >= ``separation`` with a valley between them (or
    resolves one side), else the rule for one population, whose tail starts ``tail_mads`` robust
    SDs above its median.

    ``values`` in any order; values already in ascending order (the statistics pass each marker's
    one sort) are not sorted again, and every median and histogram is then read off the order."""
    missing = np.isnan(values)
    values = ascending(values[~missing] if missing.any() else values)
    if values.size < 2 or not values[-1] - values[0] > 0:
        return Split(float("nan"), ">=", "none", float("nan"))
    floor = float(values[0])
    above = values[np.searchsorted(values, floor, side="right"):]
    at_floor = values.size - above.size
    floored = at_floor >= 2 and at_floor / values.size >= FLOOR_MASS  # one lowest value is no mass
    fitted = above if floored else values
    quality = float("nan")
    # detection levels are never split on their own scale (one count from two); on the log scale
    # only a population many times brighter than the detected rest is split off (background counts)
    detected = floored and _detection_levels(above, floor)
    if fitted.size >= 10 and fitted[-1] - fitted[0] > 0:
        split = None
        if not detected:
            split, quality = _mixture_split(fitted, separation)
        if split is None and fitted[0] > 0:
            # Counts and untransformed intensities: a stained population spreads in proportion to
            # its level (lognormal), so on the linear scale its long right tail swamps the fit;
            # gating reads such values on a log axis, where each population is about symmetric
            logged = _log_mixture_split(fitted, separation)
            if logged is not None:
                return logged
        if split is not None:
            return split
    if detected:
        return Split(floor, ">", "floor", quality)
    # One population above the floor. The larger of the floor mass and that population is the
    # negative one: a floor holding most cells (a gene most cells do not detect) leaves "detected"
    # as positive; a population holding most cells (background staining above a few zeros) is
    # itself negative, and only its upper tail is positive.
    if floored and above.size <= values.size / 2:
        return Split(floor, ">", "floor", quality)
    median = sorted_median(fitted)
    mad = median_abs_deviation(fitted, median) * _MAD_TO_SD
    return Split(median + tail_mads * mad if mad > 0 else median, ">", "tail", quality)
