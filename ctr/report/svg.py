"""Pieces of the report's inline SVG figures: the figure element, text, value ticks.

Figures are measured in points (1/72 inch) and shown at 110 px per inch, the scale of the PNG
figures they sit beside. Tick positions and labels are matplotlib's own (``MaxNLocator``,
``ScalarFormatter``), as its axes would show them; nothing else of matplotlib is needed.
"""

from __future__ import annotations

from html import escape

import numpy as np

from ctr.report.style import INK, MUTED

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"  # matplotlib's default font first
PX_PER_PT = 110 / 72


def figure(width: float, height: float, body: str, label: str) -> str:
    """An ``<svg class="figure">`` of ``width`` x ``height`` points on white, named ``label`` for
    screen readers."""
    return (f"<svg class=\"figure\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{escape(label)}\" "
            f"viewBox=\"0 0 {width:.1f} {height:.1f}\" width=\"{width * PX_PER_PT:.0f}\" height=\"{height * PX_PER_PT:.0f}\" "
            f"font-family=\"{FONT}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>{body}</svg>")


def text(x: float, y: float, words: str, size: float, *, anchor: str = "middle", colour: str = INK,
         rotate: float = 0.0, extra: str = "") -> str:
    """One line of text at (x, y) (its baseline), ``anchor`` start/middle/end, turned ``rotate``
    degrees counter-clockwise about that point."""
    turn = f" transform=\"rotate({-rotate:g} {x:.2f} {y:.2f})\"" if rotate else ""
    return (f"<text x=\"{x:.2f}\" y=\"{y:.2f}\" font-size=\"{size:g}\" fill=\"{colour}\" text-anchor=\"{anchor}\"{turn}"
            f"{extra}>{escape(words)}</text>")


def text_width(words: str, size: float) -> float:
    """Room (points) to keep for ``words`` at ``size`` points: an estimate on the generous side
    (widths in em a little above DejaVu Sans's: capitals, digits and signs 0.75, lower case 0.6,
    spaces 0.35), not a measurement."""
    lower = sum(c.islower() for c in words)
    spaces = sum(c.isspace() for c in words)
    return size * (0.75 * (len(words) - lower - spaces) + 0.6 * lower + 0.35 * spaces)


def ticks(lo: float, hi: float, nbins: int = 3) -> tuple[np.ndarray, list[str]]:
    """Value ticks between ``lo`` and ``hi`` and their labels, where and as matplotlib's axis
    (``locator_params(nbins=...)``) puts them; plain numbers, no offset or exponent."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    values = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    slack = 1e-10 * (hi - lo)
    values = values[(values >= lo - slack) & (values <= hi + slack)]
    if not values.size:
        return values, []
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    formatter.create_dummy_axis()
    formatter.axis.set_view_interval(lo, hi)
    return values, formatter.format_ticks(values)


def axis_ticks(positions: np.ndarray, labels: list[str], at: float, size: float, *, vertical: bool = False,
               length: float = 2.0) -> str:
    """Tick marks of ``length`` and their labels along a bottom axis at y = ``at`` (``vertical``:
    along a left axis at x = ``at``, ``positions`` then being y values)."""
    if not len(positions):
        return ""
    if vertical:
        marks = "".join(f"M{at:.2f},{y:.2f}h{-length:g}" for y in positions)
        labels_svg = "".join(text(at - length - 1.5, y + size * 0.35, lab, size, anchor="end") for y, lab in zip(positions, labels))
    else:
        marks = "".join(f"M{x:.2f},{at:.2f}v{length:g}" for x in positions)
        labels_svg = "".join(text(x, at + length + 1 + size, lab, size) for x, lab in zip(positions, labels))
    return f"<path d=\"{marks}\" stroke=\"{MUTED}\" stroke-width=\"0.8\"/>{labels_svg}"


def spines(left: float, top: float, right: float, bottom: float) -> str:
    """The left and bottom axis lines of a plot area (the report's figures draw no top or right)."""
    return (f"<path d=\"M{left:.2f},{top:.2f}V{bottom:.2f}H{right:.2f}\" fill=\"none\" stroke=\"{MUTED}\" "
            f"stroke-width=\"0.8\"/>")
