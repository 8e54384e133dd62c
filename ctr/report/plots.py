"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ctr.report.style import INK, MUTED, UNASSIGNED  # noqa: E402


def palette(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (Unassigned grey), shared by every figure and the HTML legend."""
    cmap = plt.get_cmap("tab20")
    colours, i = {}, 0
    for label in labels:
        if label == "Unassigned":
            colours[label] = UNASSIGNED
        else:
            colours[label] = matplotlib.colors.to_hex(cmap(i % cmap.N))
            i += 1
    return colours


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=8)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)


def confidence_plot(confidence: pd.Series) -> str:
    """Histogram of finite cluster confidences; uncontested (inf) clusters are counted in the title."""
    values = pd.to_numeric(confidence, errors="coerce")
    finite = values[np.isfinite(values)]
    n_inf = int(np.isinf(values).sum())
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    ax.hist(finite, bins=min(20, max(5, len(finite))), color="#3e7cb1", edgecolor="white")
    ax.set_xlabel("confidence (smallest winning margin)", fontsize=8, color=INK)
    ax.set_ylabel("clusters", fontsize=8, color=INK)
    if n_inf:
        ax.set_title(f"+ {n_inf} uncontested cluster(s) not shown", fontsize=8, color=MUTED)
    _style(ax)
    return to_data_uri(fig)


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


def dot_plot(evidence: pd.DataFrame, rows: list[str], markers: list[str]) -> str:
    """Rows x markers: dot size = fraction positive, colour = enrichment (diverging, centred at 0).

    The figure keeps within the report's column (columns narrow as markers multiply) and its
    legends sit above the axes, so neither hides behind a scroll bar."""
    table = evidence.loc[evidence["row"].isin(rows) & evidence["marker"].isin(markers)]
    table = table.groupby(["row", "marker"], as_index=False)[["pos_frac", "enrichment"]].mean()
    y = {r: i for i, r in enumerate(rows)}
    x = {m: i for i, m in enumerate(markers)}
    label_room = 2.8  # inches for the row labels
    column = min(0.38, (FIGURE_MAX_WIDTH - label_room) / max(len(markers), 1))
    biggest = min(280.0, (0.85 * column * 72) ** 2)
    size = lambda frac: 4 + (biggest - 4) * frac  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(4.5, column * len(markers) + label_room), max(2.4, 0.3 * len(rows) + 1.8)))
    lim = enrichment_limit(table["enrichment"]) if len(table) else 1.0
    sc = ax.scatter(table["marker"].map(x), table["row"].map(y), s=size(table["pos_frac"].clip(0, 1)),
                    c=table["enrichment"].clip(-lim, lim), cmap="RdBu_r", vmin=-lim, vmax=lim,
                    edgecolors="#52606d", linewidths=0.4)
    many = len(markers) > 20
    ax.set_xticks(range(len(markers)), markers, rotation=90 if many else 60,
                  ha="center" if many else "right", fontsize=6 if len(markers) > 36 else 7 if many else 8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlim(-0.7, len(markers) - 0.3)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(color="#eef0f3", linewidth=0.6)
    ax.set_axisbelow(True)
    _style(ax)
    cbar = fig.colorbar(sc, ax=ax, location="top", fraction=0.05, pad=0.03, shrink=0.35, anchor=(0.0, 0.0),
                        extend="both")
    cbar.set_label(f"enrichment (colour capped at ±{lim:.2g})", fontsize=7)
    cbar.ax.tick_params(labelsize=7)
    for frac in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=size(frac), c="#9aa5b1", label=f"{frac:.0%}")
    ax.legend(title="cells positive", fontsize=7, title_fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.01),
              ncol=3, frameon=False, columnspacing=1.0)
    return to_data_uri(fig)


def scatter_plot(coords: np.ndarray, labels: pd.Series, colours: dict[str, str], *,
                 axis_names: tuple[str, str] = ("UMAP 1", "UMAP 2"), tissue: bool = False) -> str:
    """Cells at ``coords`` coloured by final label, with a legend outside the axes. ``tissue``: a
    spatial map (equal axes, image orientation: y grows downwards, as in the slide)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
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

