"""The report's figures: the confidence histogram and the marker dot plot as inline SVG
(:mod:`ctr.report.svg`), the UMAP and the spatial map as PNG data URIs drawn by matplotlib (Agg).

The SVG figures are a few hundred shapes and labels written as text: milliseconds, where
matplotlib took about half a second for the dot plot (laying out and drawing its hundred tick
labels twice, once to find the figure's bounds) and its import another 0.2 s. Only a plot of
cells, tens of thousands of points, is left to matplotlib, which is imported when one is drawn.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from ctr.report.style import INK, MUTED, UNASSIGNED
from ctr.report.svg import axis_ticks, figure, spines, text, text_width, ticks


def palette(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (Unassigned grey), shared by every figure and the HTML legend."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    colours, i = {}, 0
    for label in labels:
        if label == "Unassigned":
            colours[label] = UNASSIGNED
        else:
            colours[label] = to_hex(cmap(i % cmap.N))
            i += 1
    return colours


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=8)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)


CONFIDENCE_BARS = "#3e7cb1"


def confidence_plot(confidence: pd.Series) -> str:
    """Histogram of finite cluster confidences (an ``<svg>``); uncontested (inf) clusters are
    counted in the title."""
    values = pd.to_numeric(confidence, errors="coerce")
    finite = values[np.isfinite(values)].to_numpy(float)
    n_inf = int(np.isinf(values).sum())
    counts, edges = np.histogram(finite, bins=min(20, max(5, len(finite))))
    width, height = 302.4, 172.8  # 4.2 x 2.4 inches
    left, right, top, bottom = 34.0, width - 8.0, 16.0 if n_inf else 8.0, height - 30.0
    span = edges[-1] - edges[0]
    x_lo, x_hi = edges[0] - 0.05 * span, edges[-1] + 0.05 * span  # matplotlib's 5% margins
    y_hi = max(float(counts.max()), 1.0) * 1.05
    sx = lambda v: left + (np.asarray(v, float) - x_lo) / (x_hi - x_lo) * (right - left)  # noqa: E731
    sy = lambda v: bottom - np.asarray(v, float) / y_hi * (bottom - top)  # noqa: E731
    xs, heights = sx(edges), sy(counts)
    bars = "".join(f"<rect x=\"{a:.2f}\" y=\"{h:.2f}\" width=\"{b - a:.2f}\" height=\"{bottom - h:.2f}\"/>"
                   for a, b, h, n in zip(xs[:-1], xs[1:], heights, counts) if n)
    x_ticks, x_labels = ticks(x_lo, x_hi, nbins=5)
    y_ticks, y_labels = ticks(0.0, y_hi, nbins=4)
    body = (f"<g fill=\"{CONFIDENCE_BARS}\" stroke=\"white\" stroke-width=\"0.8\">{bars}</g>"
            + spines(left, top, right, bottom)
            + axis_ticks(sx(x_ticks), x_labels, bottom, 8.0) + axis_ticks(sy(y_ticks), y_labels, left, 8.0, vertical=True)
            + text((left + right) / 2, height - 4.0, "confidence (smallest winning margin)", 8.0)
            + text(9.0, (top + bottom) / 2, "clusters", 8.0, rotate=90))
    if n_inf:
        body += text((left + right) / 2, 10.0, f"+ {n_inf} uncontested cluster(s) not shown", 8.0, colour=MUTED)
    return figure(width, height, body, "confidence distribution")


FIGURE_MAX_WIDTH = 9.0  # inches: 990 px at 110 dpi, within the report's column
ENRICHMENT_LIMITS = (0.5, 3.0)  # the colour scale's half-range never goes beyond these


def enrichment_limit(values) -> float:
    """Half-range of the dot plot's colour scale: the 95th percentile of |enrichment|, kept within
    :data:`ENRICHMENT_LIMITS`, so one extreme marker does not wash every other dot out to white."""
    magnitude = np.abs(pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float))
    magnitude = magnitude[np.isfinite(magnitude)]
    if magnitude.size == 0:
        return 1.0
    low, high = ENRICHMENT_LIMITS
    return float(np.clip(np.quantile(magnitude, 0.95), low, high))


DOT_EDGE = "#52606d"
GRID = "#eef0f3"


def _diverging(values: np.ndarray, lim: float) -> list[str]:
    """Colours of enrichment ``values`` on matplotlib's RdBu_r scale from ``-lim`` to ``lim``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["RdBu_r"]
    return [to_hex(c) for c in cmap(np.clip((np.asarray(values, float) + lim) / (2 * lim), 0.0, 1.0))]


def dot_plot(evidence: pd.DataFrame, rows: list[str], markers: list[str]) -> str:
    """Rows x markers (an ``<svg>``): dot size = fraction positive, colour = enrichment
    (diverging, centred at 0).

    The figure keeps within the report's column (columns narrow as markers multiply) and its
    legends sit above the plot, so neither hides behind a scroll bar."""
    table = evidence.loc[evidence["row"].isin(rows) & evidence["marker"].isin(markers)]
    table = table.groupby(["row", "marker"], as_index=False)[["pos_frac", "enrichment"]].mean()
    many = len(markers) > 20
    x_size = 6.0 if len(markers) > 36 else 7.0 if many else 8.0
    angle = 90.0 if many else 60.0
    column = 72 * min(0.38, (FIGURE_MAX_WIDTH - 2.8) / max(len(markers), 1))  # points per marker
    biggest = min(280.0, (0.85 * column) ** 2)  # a dot's area in square points, as matplotlib's scatter
    column, pitch = 1.1 * column, 72 * 0.23  # the spacing the matplotlib figure had (points per marker, per row)
    radius = lambda frac: np.sqrt(4 + (biggest - 4) * np.clip(frac, 0, 1)) / 2  # noqa: E731
    lim = enrichment_limit(table["enrichment"]) if len(table) else 1.0
    left = 8.0 + max((text_width(r, 8.0) for r in rows), default=0.0)
    top = 48.0  # the colour scale and the size legend
    plot_w, plot_h = (len(markers) + 0.4) * column, max(len(rows), 1) * pitch
    right, bottom = left + plot_w, top + plot_h
    label_room = max((text_width(m, x_size) for m in markers), default=0.0) * np.sin(np.radians(angle))
    width = max(right, left + 230.0) + 8.0
    height = bottom + 6.0 + label_room + 6.0
    x = {m: left + (i + 0.7) * column for i, m in enumerate(markers)}
    y = {r: top + (i + 0.5) * pitch for i, r in enumerate(rows)}
    grid = "".join(f"M{x[m]:.2f},{top:.2f}V{bottom:.2f}" for m in markers) + "".join(
        f"M{left:.2f},{y[r]:.2f}H{right:.2f}" for r in rows)
    drawn = table.dropna(subset=["pos_frac"])
    fills = _diverging(drawn["enrichment"].fillna(0.0), lim)
    dots = "".join(
        f"<circle cx=\"{x[m]:.2f}\" cy=\"{y[r]:.2f}\" r=\"{radius(f):.2f}\" fill=\"{'none' if np.isnan(e) else c}\"/>"
        for m, r, f, e, c in zip(drawn["marker"], drawn["row"], drawn["pos_frac"], drawn["enrichment"], fills))
    x_labels = "".join(text(x[m] + (x_size * 0.35 if angle == 90 else 0.0), bottom + 5.0, m, x_size, anchor="end",
                            rotate=angle) for m in markers)
    body = (f"<path d=\"{grid}\" stroke=\"{GRID}\" stroke-width=\"0.6\"/>"
            f"<g stroke=\"{DOT_EDGE}\" stroke-width=\"0.4\">{dots}</g>{spines(left, top - 6.0, right, bottom)}"
            + axis_ticks(np.array([y[r] for r in rows]), rows, left, 8.0, vertical=True)
            + f"<path d=\"{''.join(f'M{x[m]:.2f},{bottom:.2f}v2' for m in markers)}\" stroke=\"{MUTED}\" stroke-width=\"0.8\"/>"
            + x_labels + _colour_scale(left, lim) + _size_legend(width - 8.0, radius))
    return figure(width, height, body, "marker dot plot")


def _colour_scale(left: float, lim: float) -> str:
    """The enrichment colour bar above the plot, its ends pointed (values beyond are capped)."""
    bar_w, bar_h, y0 = 150.0, 7.0, 30.0
    steps = np.linspace(-lim, lim, 11)
    stops = "".join(f"<stop offset=\"{i / 10:.1f}\" stop-color=\"{c}\"/>" for i, c in enumerate(_diverging(steps, lim)))
    x0, x1 = left + bar_h, left + bar_h + bar_w
    low, high = _diverging([-lim, lim], lim)
    positions, labels = ticks(-lim, lim, nbins=5)
    tick_x = x0 + (positions + lim) / (2 * lim) * bar_w
    marks = "".join(f"M{t:.2f},{y0:.2f}v-2" for t in tick_x)
    return (f"<defs><linearGradient id=\"enrichment-scale\">{stops}</linearGradient></defs>"
            + text(x0 + bar_w / 2, 9.0, f"enrichment (colour capped at ±{lim:.2g})", 7.0)
            + "".join(text(t, y0 - 3.5, lab, 7.0) for t, lab in zip(tick_x, labels))
            + f"<path d=\"{marks}\" stroke=\"{INK}\" stroke-width=\"0.6\"/>"
            f"<rect x=\"{x0:.2f}\" y=\"{y0:.2f}\" width=\"{bar_w:.2f}\" height=\"{bar_h:.2f}\" fill=\"url(#enrichment-scale)\"/>"
            f"<path d=\"M{x0:.2f},{y0:.2f}L{left:.2f},{y0 + bar_h / 2:.2f}L{x0:.2f},{y0 + bar_h:.2f}Z\" fill=\"{low}\"/>"
            f"<path d=\"M{x1:.2f},{y0:.2f}L{x1 + bar_h:.2f},{y0 + bar_h / 2:.2f}L{x1:.2f},{y0 + bar_h:.2f}Z\" fill=\"{high}\"/>")


def _size_legend(right: float, radius) -> str:
    """What the dot sizes mean: 25%, 50% and 100% of the cluster's cells positive."""
    entries, x = [], right
    for frac in (1.0, 0.5, 0.25):  # laid out from the right
        label = f"{frac:.0%}"
        x -= text_width(label, 7.0)
        entries.append(text(x, 37.0, label, 7.0, anchor="start"))
        r = float(radius(frac))
        x -= r + 3.0
        entries.append(f"<circle cx=\"{x:.2f}\" cy=\"{34.5:.2f}\" r=\"{r:.2f}\" fill=\"#9aa5b1\" stroke=\"{DOT_EDGE}\" "
                       f"stroke-width=\"0.4\"/>")
        x -= r + 8.0
    return "".join(entries) + text((x + right) / 2, 9.0, "cells positive", 7.0)


def scatter_plot(coords: np.ndarray, labels: pd.Series, colours: dict[str, str], *,
                 axis_names: tuple[str, str] = ("UMAP 1", "UMAP 2"), tissue: bool = False) -> str:
    """Cells at ``coords`` coloured by final label, with a legend outside the axes. ``tissue``: a
    spatial map (equal axes, image orientation: y grows downwards, as in the slide)."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.6))
    labels = labels.astype(str).to_numpy()
    size = max(1.0, min(12.0, 6000 / max(len(labels), 1)))
    order = np.random.default_rng(0).permutation(len(labels))  # no label painted over the others
    ax.scatter(coords[order, 0], coords[order, 1], s=size, c=[colours.get(lab, UNASSIGNED) for lab in labels[order]],
               linewidths=0, rasterized=True)
    for label, colour in colours.items():
        ax.scatter([], [], s=30, c=colour, label=label)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=1.0)
    if tissue:
        ax.set_aspect("equal", adjustable="datalim")
        ax.invert_yaxis()
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel(axis_names[0], fontsize=8, color=MUTED)
    ax.set_ylabel(axis_names[1], fontsize=8, color=MUTED)
    _style(ax)
    return to_data_uri(fig)

