"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

INK = "#1f2933"
MUTED = "#7b8794"
UNASSIGNED = "#c4c9d0"


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


def dot_plot(evidence: pd.DataFrame, rows: list[str], markers: list[str]) -> str:
    """Rows x markers: dot size = fraction positive, colour = enrichment (diverging, centred at 0)."""
    table = evidence.loc[evidence["row"].isin(rows) & evidence["marker"].isin(markers)]
    table = table.groupby(["row", "marker"], as_index=False)[["pos_frac", "enrichment"]].mean()
    y = {r: i for i, r in enumerate(rows)}
    x = {m: i for i, m in enumerate(markers)}
    # Columns narrow as markers multiply so the figure keeps a page's width (~1000 px at 110 dpi);
    # the largest dot fits its column.
    column = min(0.38, max(0.22, 6.5 / max(len(markers), 1)))
    biggest = min(280.0, (0.85 * column * 72) ** 2)
    size = lambda frac: 8 + (biggest - 8) * frac  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(3.5, column * len(markers) + 2.8), max(2.0, 0.3 * len(rows) + 1.2)))
    lim = float(np.nanmax(np.abs(table["enrichment"]))) if len(table) else 1.0
    lim = lim if np.isfinite(lim) and lim > 0 else 1.0
    sc = ax.scatter(table["marker"].map(x), table["row"].map(y), s=size(table["pos_frac"].clip(0, 1)),
                    c=table["enrichment"], cmap="RdBu_r", vmin=-lim, vmax=lim, edgecolors="#52606d", linewidths=0.4)
    ax.set_xticks(range(len(markers)), markers, rotation=90 if len(markers) > 20 else 60,
                  ha="center" if len(markers) > 20 else "right", fontsize=7 if len(markers) > 20 else 8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlim(-0.7, len(markers) - 0.3)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(color="#eef0f3", linewidth=0.6)
    ax.set_axisbelow(True)
    _style(ax)
    cbar = fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label("enrichment", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    for frac in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=size(frac), c="#9aa5b1", label=f"{frac:.0%}")
    ax.legend(title="positive", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.2, 1.0),
              frameon=False, labelspacing=1.2)
    return to_data_uri(fig)


def umap_plot(coords: np.ndarray, labels: pd.Series, colours: dict[str, str]) -> str:
    """The embedding coloured by final label, with a legend outside the axes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    labels = labels.astype(str).to_numpy()
    size = max(1.0, min(12.0, 6000 / max(len(labels), 1)))
    order = np.random.default_rng(0).permutation(len(labels))  # no label painted over the others
    ax.scatter(coords[order, 0], coords[order, 1], s=size, c=[colours.get(lab, UNASSIGNED) for lab in labels[order]],
               linewidths=0, rasterized=True)
    for label, colour in colours.items():
        ax.scatter([], [], s=30, c=colour, label=label)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1", fontsize=8, color=MUTED)
    ax.set_ylabel("UMAP 2", fontsize=8, color=MUTED)
    _style(ax)
    return to_data_uri(fig)
