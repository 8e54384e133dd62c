"""Each marker's distribution with its positivity split drawn on it: the report's small multiples,
written as inline SVG.

A panel is a histogram (counts on a square-root scale, bins above the split red), the split as a
dashed line, the marker's name, method and positive share above it and a few value ticks below.
matplotlib took about a second for 40 such panels (an axes, its ticks and texts laid out per panel)
where the panels themselves are two paths, a line and a handful of labels; written as SVG text
(:mod:`ctr.report.svg`) they cost milliseconds, stay sharp at any zoom and their labels can be
searched and selected.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from ctr.report.style import INK, MUTED, NEGATIVE, POSITIVE
from ctr.report.svg import axis_ticks, figure, spines, text, ticks

GRID_COLUMNS = 6  # panels per row
PANELS_PER_FIGURE = 36  # a larger panel is paged into several figures of 6 x 6
# Geometry in points (1/72 inch); the figure is drawn 9 inches wide (990 px at 110 px per inch,
# the report column's width, as the PNG figures).
CELL_W, CELL_H = 108.0, 97.2  # one panel with its titles and ticks
PLOT_LEFT, PLOT_RIGHT = 4.0, 104.0  # the plot area inside a cell
PLOT_TOP, PLOT_BOTTOM = 22.0, 84.0
TITLE_SIZE, TICK_SIZE = 7.0, 5.5


def threshold_grids(histograms: pd.DataFrame, splits: list, label: str = "marker distributions with positivity "
                    "thresholds") -> list[str]:
    """Each marker's distribution (``marker_histograms.csv``'s bins) with its positivity split drawn
    as a dashed line, one small panel per marker, in pages (``<svg>`` elements) of at most
    :data:`PANELS_PER_FIGURE` panels.

    ``splits`` are :class:`ctr.report.thresholds.MarkerSplit` records in panel order. Bins above
    the split are coloured as positive; counts are on a square-root scale so that a floor of zeros
    does not flatten the rest of the distribution."""
    bins = {m: g for m, g in histograms.groupby("marker", sort=False)} if not histograms.empty else {}
    pages = [splits[i:i + PANELS_PER_FIGURE] for i in range(0, len(splits), PANELS_PER_FIGURE)]
    part = lambda i: f" (part {i + 1} of {len(pages)})" if len(pages) > 1 else ""  # noqa: E731
    return [_page(page, bins, label + part(i)) for i, page in enumerate(pages)]


def _page(splits: list, bins: dict[str, pd.DataFrame], label: str) -> str:
    cols = min(GRID_COLUMNS, len(splits))
    rows = -(-len(splits) // cols)
    panels = "".join(
        f"<g transform=\"translate({CELL_W * (i % cols):g},{CELL_H * (i // cols):g})\">{_panel(s, bins.get(s.marker))}</g>"
        for i, s in enumerate(splits))
    return figure(CELL_W * GRID_COLUMNS, CELL_H * rows, panels, label)


def _panel(split, hist: pd.DataFrame | None) -> str:
    p = split.positive_share
    share = "" if np.isnan(p) else f" · {p:.1%} pos" if 0 < p < 0.01 else f" · {p:.0%} pos"
    centre_x = (PLOT_LEFT + PLOT_RIGHT) / 2
    title = (text(centre_x, PLOT_TOP - 12.5, split.marker, TITLE_SIZE)
             + text(centre_x, PLOT_TOP - 3.5, split.method + share, TITLE_SIZE))
    hover = f"<title>{escape(split.phrase)}</title>"  # shown on pointing at the panel
    if hist is None or hist.empty:
        return f"{hover}{title}{text(centre_x, (PLOT_TOP + PLOT_BOTTOM) / 2, 'no values', TITLE_SIZE, colour=MUTED)}"
    lower, upper = hist["lower"].to_numpy(float), hist["upper"].to_numpy(float)
    counts = hist["count"].to_numpy(float)
    has_split = not np.isnan(split.threshold) and split.method != "none"
    centre = (lower + upper) / 2
    # splits are ">=" or ">" (docs/semantics.md); with "> floor" the bin that starts at the floor
    # holds the floor's mass, which is negative
    positive = (lower > split.threshold if split.op == ">" else centre >= split.threshold) if has_split \
        else np.zeros(len(centre), bool)
    edges = np.append(lower, upper[-1])
    heights = np.sqrt(counts)
    x_lo, x_hi = float(edges[0]), float(edges[-1])
    if has_split:
        x_lo, x_hi = min(x_lo, split.threshold), max(x_hi, split.threshold)
    if not x_hi > x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    top = max(float(heights.max()), 1.0) * 1.05
    sx = lambda v: PLOT_LEFT + (np.asarray(v, float) - x_lo) / (x_hi - x_lo) * (PLOT_RIGHT - PLOT_LEFT)  # noqa: E731
    sy = lambda h: PLOT_BOTTOM - np.asarray(h, float) / top * (PLOT_BOTTOM - PLOT_TOP)  # noqa: E731
    # every split is a cut on the value: the positive bins are the last ones, and each side is one
    # filled step outline over its contiguous bins
    first = int(np.argmax(positive)) if positive.any() else len(positive)
    sides = ((slice(0, first), NEGATIVE), (slice(first, len(positive)), POSITIVE))
    paths = "".join(f"<path d=\"{_stairs(sx(edges[b.start:b.stop + 1]), sy(heights[b]), float(sy(0.0)))}\" fill=\"{colour}\"/>"
                    for b, colour in sides if b.stop > b.start)
    line = ""
    if has_split:
        x = float(sx(split.threshold))
        line = (f"<line x1=\"{x:.2f}\" x2=\"{x:.2f}\" y1=\"{PLOT_TOP:g}\" y2=\"{PLOT_BOTTOM:g}\" stroke=\"{INK}\" "
                f"stroke-width=\"1\" stroke-dasharray=\"3.7 1.6\"/>")
    positions, labels = ticks(x_lo, x_hi)
    return (f"{hover}{title}{paths}{line}{spines(PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_BOTTOM)}"
            f"{axis_ticks(sx(positions), labels, PLOT_BOTTOM, TICK_SIZE)}")


def _stairs(x: np.ndarray, y: np.ndarray, base: float) -> str:
    """An SVG path filling the steps of heights ``y`` over the edges ``x`` down to ``base``."""
    steps = "".join(f"V{yi:.2f}H{xi:.2f}" for yi, xi in zip(y, x[1:]))
    return f"M{x[0]:.2f},{base:.2f}{steps}V{base:.2f}Z"
