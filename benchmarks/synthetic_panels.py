"""Synthetic panels of known truth that imitate MIBI-TOF, flow cytometry and imaging mass cytometry.

Real labelled sets tell us how ctr does on the data we have; these tell us how its **defaults** do
on kinds of data we do not have, where the truth is known by construction. Each generator draws
cells from named populations, each population expressing each marker at a stated level in a
stated share of its cells, through a noise model of the technology, and then transforms the
values the way users of that technology do. Every parameter below carries a comment saying which
property of real data it imitates. Everything is seeded: the same call gives the same cells.

The marker maps the panels are annotated with were written from textbook immunophenotypes
**before** any of this data existed (benchmarks/rulesets_synthetic/, with the mappings of truth
lineages to their types), and are not tuned on results.

Clusters come two ways, as the real-data benchmark does:

- ``given``: the truth populations, each split into pieces of at most ``cluster_cells`` cells
  (clusterings split large populations; each piece has its own brightness per marker, as the
  regions or states of a population do), and then 5-15% of each cluster's cells (a share drawn
  per cluster) moved to other clusters, chosen in proportion to their size: impure clusters, as
  real clusterings make them;
- ``ctr``: ctr's own clustering of the values (``ctr.data.cluster``, the settings of
  benchmarks/accuracy.py).

Usage::

    python benchmarks/synthetic_panels.py [--panels mibi,flow,imc] [--clusters given,ctr] [--cells N]
                                          [--seed S] [--params JSON|@file.json] [--refine] [--csv OUT.csv]
    python benchmarks/accuracy.py --synthetic          # the same table

From Python::

    from synthetic_panels import PANELS, generate
    adata = generate("mibi", n_cells=3000, seed=0)      # X, obs["truth"] (lineage), obs["population"], obs["cluster"]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RULESETS = HERE / "rulesets_synthetic"
CLUSTER_KEY = "cluster"
TRUTH_KEY = "truth"
# ctr's clustering with the fixed settings of benchmarks/accuracy.py
CLUSTERING = {"resolution": 1.0, "n_pcs": 30, "neighbors_k": 15, "random_seed": 0, "use_gpu": False}
COLUMNS = ["panel", "clusters", "n_cells", "accuracy", "oracle", "gap", "unassigned", "ambiguous",
           "ancestor", "macro_f1", "seconds"]


@dataclass(frozen=True)
class Population:
    """One population of cells: its truth lineage, its share of all cells, and for each marker it
    expresses the level (in the technology's units, see each panel) and the share of its cells
    that express it (the rest show background only)."""

    name: str
    lineage: str
    share: float
    expresses: dict[str, tuple[float, float]]  # marker -> (level, share of the population's cells)
    compartment: str = "stroma"  # where its cells sit; a cell's neighbour is drawn from its compartment


@dataclass(frozen=True)
class Panel:
    """A technology's panel: markers, populations and the function that turns them into values."""

    name: str
    describe: str
    markers: tuple[str, ...]
    populations: tuple[Population, ...]
    values: Callable[[np.random.Generator, "Panel", np.ndarray, np.ndarray], np.ndarray]  # (rng, panel, population, piece) -> cells x markers
    ruleset: str  # file under benchmarks/rulesets_synthetic/
    mapping: str
    default_cells: int
    technical: tuple[str, ...] = ()  # channels that are not markers (DNA): in the data, in no ruleset
    immune_in_nests: float = 0.0  # share of immune cells that sit among tumour cells (their neighbours are tumour)
    piece_sd: float = 0.3  # log-scale spread of brightness between the pieces (clusters) of one population


# --- shared pieces -------------------------------------------------------------------------------


def draw_populations(rng: np.random.Generator, panel: Panel, n_cells: int) -> np.ndarray:
    """Each cell's population index: exact shares (rounded), in a shuffled order."""
    shares = np.array([p.share for p in panel.populations])
    counts = np.floor(shares / shares.sum() * n_cells).astype(int)
    counts[np.argmax(shares)] += n_cells - counts.sum()
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def split_populations(rng: np.random.Generator, pop: np.ndarray, cluster_cells: int) -> np.ndarray:
    """Every population split into pieces of at most ``cluster_cells`` cells: the pieces a
    clustering would make of it. Each piece is later given its own expression factors, so that a
    large population's clusters differ as real ones do (tumour regions, activation states)."""
    piece = np.empty(len(pop), dtype=np.int64)
    next_piece = 0
    for p in np.unique(pop):
        members = rng.permutation(np.nonzero(pop == p)[0])
        for chunk in np.array_split(members, max(1, int(np.ceil(members.size / cluster_cells)))):
            piece[chunk] = next_piece
            next_piece += 1
    return piece


def expected_levels(rng: np.random.Generator, panel: Panel, pop: np.ndarray, piece: np.ndarray,
                    background: np.ndarray) -> np.ndarray:
    """cells x markers: the level each cell expresses, before the technology's noise: the marker's
    background everywhere, plus the population's level in the share of its cells that express it
    (a population is never uniformly positive: Ki67 in a quarter of tumour cells, CK5 in some),
    times a factor per piece and marker (lognormal, ``panel.piece_sd``: the regions or states a
    population is made of differ in how bright they are)."""
    index = {m: j for j, m in enumerate(panel.markers)}
    level = np.zeros((len(panel.populations), len(panel.markers)))
    share = np.zeros_like(level)
    for i, p in enumerate(panel.populations):
        for marker, (lvl, frac) in p.expresses.items():
            level[i, index[marker]], share[i, index[marker]] = lvl, frac
    factor = rng.lognormal(0.0, panel.piece_sd, size=(int(piece.max()) + 1, len(panel.markers)))
    expressing = rng.random((len(pop), len(panel.markers))) < share[pop]
    return background[None, :] + np.where(expressing, level[pop] * factor[piece], 0.0)


def neighbours(rng: np.random.Generator, panel: Panel, pop: np.ndarray) -> np.ndarray:
    """For every cell, one neighbouring cell (its index): a random cell of the same compartment.

    Tissue is not mixed at random: tumour cells sit in nests with some infiltrating immune cells,
    fibroblasts, vessels and most immune cells in the stroma. A cell's segmentation spill-over
    comes from such a neighbour, so an immune cell inside a nest carries tumour keratin."""
    compartment = np.array([p.compartment for p in panel.populations])[pop].astype(object)
    immune = np.array([p.compartment == "immune" for p in panel.populations])[pop]
    in_nest = immune & (rng.random(len(pop)) < panel.immune_in_nests)
    compartment[immune] = "stroma"
    compartment[in_nest] = "tumour"
    out = np.empty(len(pop), dtype=np.int64)
    for c in np.unique(compartment):
        members = np.nonzero(compartment == c)[0]
        out[members] = rng.choice(members, size=members.size)
    return out


def impure_clusters(rng: np.random.Generator, piece: np.ndarray, swap: tuple[float, float] = (0.05, 0.15)) -> np.ndarray:
    """Cluster labels from the truth's pieces (:func:`split_populations`): a share of each
    cluster's cells (drawn per cluster from ``swap``) moved to other clusters, chosen in proportion
    to their size: the impurity of real clusterings."""
    n_clusters = int(piece.max()) + 1
    sizes = np.bincount(piece, minlength=n_clusters).astype(float)
    moving = rng.random(len(piece)) < rng.uniform(*swap, size=n_clusters)[piece]
    out = piece.copy()
    todo = np.nonzero(moving)[0] if n_clusters > 1 else np.array([], dtype=np.int64)
    while todo.size:  # a draw of the cell's own cluster is drawn again
        out[todo] = rng.choice(n_clusters, size=todo.size, p=sizes / sizes.sum())
        todo = todo[out[todo] == piece[todo]]
    return out


# --- MIBI-TOF: zero-inflated counts, size-normalised -----------------------------------------------

MIBI_MARKERS = ("PanCK", "ECAD", "CK7", "CK5", "VIM", "SMA", "FAP", "CD36", "CD31", "CD45", "CD3", "CD4",
                "CD8", "CD20", "CD68", "CD14", "CD11c", "HLA-DR", "MPO", "Tryptase", "Ki67", "FOXP3")

# Levels are expected ion counts of a cell of average size. MIBI counts are low (single digits to a
# few tens per cell and marker), so a dim marker is often 0 in a cell that expresses it.
MIBI_POPULATIONS = (
    # tumour cells are the majority (65%), keratin-high; a basal-like subset is CK5+, loses some
    # CK7/E-cadherin and expresses vimentin in a quarter of its cells (partial EMT)
    Population("Luminal tumour", "Tumour", 0.48, {
        "PanCK": (25, 0.97), "ECAD": (15, 0.90), "CK7": (12, 0.85), "Ki67": (8, 0.20), "HLA-DR": (3, 0.10)}, "tumour"),
    Population("Basal-like tumour", "Tumour", 0.17, {
        "PanCK": (20, 0.95), "ECAD": (8, 0.70), "CK7": (4, 0.40), "CK5": (12, 0.80), "VIM": (4, 0.25),
        "Ki67": (8, 0.35)}, "tumour"),
    # stroma: vimentin plus exactly one of FAP / SMA / CD36 per subpopulation (Risom et al. 2022)
    Population("FAP+ CAF", "Fibroblast", 0.06, {"VIM": (15, 0.95), "FAP": (8, 0.85), "SMA": (3, 0.30)}),
    Population("Myofibroblast", "Fibroblast", 0.05, {"VIM": (12, 0.90), "SMA": (15, 0.90), "FAP": (2, 0.20)}),
    Population("CD36+ fibroblast", "Fibroblast", 0.04, {"VIM": (12, 0.90), "CD36": (8, 0.85)}),
    # microvascular endothelium is CD31+ vimentin+ and partly CD36+
    Population("Endothelium", "Endothelium", 0.04, {
        "CD31": (10, 0.90), "VIM": (10, 0.85), "CD36": (4, 0.40), "HLA-DR": (2, 0.20)}),
    # immune minority (16%): CD45 plus lineage markers; macrophages are CD4-dim and partly CD36+
    Population("CD4 T", "T cell", 0.035, {"CD45": (10, 0.95), "CD3": (8, 0.90), "CD4": (5, 0.80)}, "immune"),
    Population("Treg", "T cell", 0.005, {
        "CD45": (10, 0.95), "CD3": (8, 0.90), "CD4": (5, 0.80), "FOXP3": (5, 0.80)}, "immune"),
    Population("CD8 T", "T cell", 0.03, {"CD45": (10, 0.95), "CD3": (8, 0.90), "CD8": (6, 0.85)}, "immune"),
    Population("B", "B cell", 0.02, {"CD45": (12, 0.95), "CD20": (10, 0.90), "HLA-DR": (8, 0.80)}, "immune"),
    Population("Macrophage", "Macrophage", 0.04, {
        "CD45": (8, 0.90), "CD68": (12, 0.90), "CD14": (6, 0.70), "HLA-DR": (8, 0.80), "CD11c": (4, 0.50),
        "CD4": (2, 0.40), "CD36": (4, 0.40)}, "immune"),
    Population("Dendritic", "Dendritic cell", 0.01, {
        "CD45": (8, 0.90), "CD11c": (10, 0.90), "HLA-DR": (12, 0.95), "CD68": (2, 0.20)}, "immune"),
    Population("Neutrophil", "Neutrophil", 0.015, {"CD45": (6, 0.85), "MPO": (15, 0.90), "CD14": (1, 0.20)}, "immune"),
    Population("Mast", "Mast cell", 0.005, {"CD45": (6, 0.90), "Tryptase": (20, 0.95)}, "immune"),
)

MIBI_BACKGROUND = (0.05, 0.40)  # expected background counts per marker (low: most cells read 0)
MIBI_CELL_SD = 0.5  # log-scale spread of a cell's expression around its population's level (biology)
MIBI_AREA_SD = 0.35  # log-scale spread of cell areas (segmented cells differ in size ~1.4-fold)
MIBI_SPILL = (0.02, 0.06)  # share of a neighbour's counts a cell carries (segmentation spill-over)
MIBI_PERCENTILE = 99.9  # each marker divided by its 99.9th percentile (ark-analysis / pixie normalisation)


def mibi_values(rng: np.random.Generator, panel: Panel, pop: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Poisson-lognormal counts (per cell and marker: lognormal expression x cell area, then a
    Poisson draw), spill-over counts from a neighbour, size normalisation (counts / area x mean
    area) and each marker divided by its 99.9th percentile: many exact zeros, values about 0..1."""
    n = len(pop)
    background = rng.uniform(*MIBI_BACKGROUND, size=len(panel.markers))
    level = expected_levels(rng, panel, pop, piece, background)
    area = rng.lognormal(0.0, MIBI_AREA_SD, size=n)
    rate = level * np.exp(rng.normal(0.0, MIBI_CELL_SD, size=level.shape)) * area[:, None]
    counts = rng.poisson(rate)
    spill = rng.uniform(*MIBI_SPILL, size=n)
    counts = counts + rng.binomial(counts[neighbours(rng, panel, pop)], spill[:, None])
    normalised = counts / area[:, None]
    scale = np.percentile(normalised, MIBI_PERCENTILE, axis=0)
    return (normalised / np.where(scale > 0, scale, 1.0)).astype(np.float32)


# --- flow cytometry: compensated fluorescence, arcsinh(x/150) --------------------------------------

FLOW_MARKERS = ("CD45", "CD3", "CD4", "CD8", "CD19", "CD56", "CD16", "CD14", "HLA-DR", "CD11c")

# Levels are linear fluorescence (median of the positive cells, arbitrary units as a cytometer
# reports them): dim 500-2000, bright 8000-20000. Rare populations (2-5%): non-classical
# monocytes 3%, myeloid DCs 2%, CD56-bright NK 1%. Dim: CD4 on monocytes and DCs, CD8 on a third
# of NK cells, CD56 on CD56-dim NK, CD14 on non-classical monocytes.
FLOW_POPULATIONS = (
    Population("CD4 T", "T cell", 0.36, {
        "CD45": (20000, 1.0), "CD3": (8000, 0.99), "CD4": (6000, 0.98), "HLA-DR": (1500, 0.05)}),
    Population("CD8 T", "T cell", 0.19, {
        "CD45": (20000, 1.0), "CD3": (8000, 0.99), "CD8": (12000, 0.97), "CD56": (1000, 0.10),
        "HLA-DR": (1500, 0.08)}),
    Population("B", "B cell", 0.10, {
        "CD45": (15000, 1.0), "CD19": (5000, 0.98), "HLA-DR": (15000, 0.98), "CD11c": (800, 0.15)}),
    Population("CD56dim NK", "NK cell", 0.10, {
        "CD45": (15000, 1.0), "CD56": (2000, 0.95), "CD16": (15000, 0.95), "CD8": (1000, 0.30),
        "CD11c": (800, 0.30)}),
    Population("CD56bright NK", "NK cell", 0.01, {"CD45": (15000, 1.0), "CD56": (15000, 0.98), "CD16": (600, 0.20)}),
    Population("Classical monocyte", "Monocyte", 0.19, {
        "CD45": (12000, 1.0), "CD14": (20000, 0.99), "HLA-DR": (8000, 0.95), "CD11c": (10000, 0.97),
        "CD4": (1500, 0.90)}),
    Population("Non-classical monocyte", "Monocyte", 0.03, {
        "CD45": (14000, 1.0), "CD14": (1500, 0.90), "CD16": (12000, 0.97), "HLA-DR": (10000, 0.95),
        "CD11c": (8000, 0.95), "CD4": (1000, 0.70)}),
    Population("Myeloid DC", "Dendritic cell", 0.02, {
        "CD45": (10000, 1.0), "HLA-DR": (20000, 0.98), "CD11c": (15000, 0.97), "CD4": (1200, 0.50)}),
)

FLOW_NEGATIVE_SD = (60.0, 200.0)  # spread of compensated negatives around 0 per channel (spillover spreading)
FLOW_SPREAD_PER_SIGNAL = 0.01  # negatives spread more in cells bright in other channels (spreading error)
FLOW_POSITIVE_SD = 0.45  # log-scale spread of a positive population (a stained population spans ~3-fold)
FLOW_AUTOFLUORESCENCE = 150.0  # monocytes and DCs are larger and autofluorescent: offset in every channel
FLOW_COFACTOR = 150.0  # arcsinh(x / 150), the usual cofactor for fluorescence


def flow_values(rng: np.random.Generator, panel: Panel, pop: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Compensated intensities: negatives spread around 0 (so many are negative, none exactly 0),
    positives lognormal around their level, myeloid autofluorescence, then arcsinh(x / 150)."""
    n = len(pop)
    level = expected_levels(rng, panel, pop, piece, np.zeros(len(panel.markers)))
    positive = level > 0
    signal = np.where(positive, level * rng.lognormal(0.0, FLOW_POSITIVE_SD, size=level.shape), 0.0)
    base_sd = rng.uniform(*FLOW_NEGATIVE_SD, size=len(panel.markers))
    spread = base_sd[None, :] + FLOW_SPREAD_PER_SIGNAL * signal.sum(axis=1, keepdims=True) ** 0.75
    myeloid = np.array([p.lineage in ("Monocyte", "Dendritic cell") for p in panel.populations])[pop]
    x = signal + rng.normal(0.0, 1.0, size=(n, len(panel.markers))) * spread + FLOW_AUTOFLUORESCENCE * myeloid[:, None]
    return np.arcsinh(x / FLOW_COFACTOR).astype(np.float32)


# --- imaging mass cytometry: mean ion counts per pixel, spill-over, arcsinh(x/1) -------------------

IMC_MARKERS = ("PanCK", "ECAD", "VIM", "SMA", "Collagen1", "CD31", "CD45", "CD3", "CD4", "CD8", "CD20",
               "CD68", "CD163", "CD11c", "HLA-DR", "CD15", "MPO", "FOXP3", "Ki67")
IMC_TECHNICAL = ("DNA1", "DNA2")  # iridium intercalator channels every IMC table carries

# Levels are mean ion counts per pixel. T cells' CD3 is dim (1.2 over a background of ~0.5: the
# lineage marker that stains weakly); everything else is clearly above background.
IMC_POPULATIONS = (
    Population("Tumour", "Tumour", 0.50, {
        "PanCK": (15, 0.97), "ECAD": (8, 0.90), "Ki67": (5, 0.30), "HLA-DR": (2, 0.10)}, "tumour"),
    Population("Fibroblast", "Fibroblast", 0.15, {"VIM": (8, 0.95), "SMA": (10, 0.70), "Collagen1": (6, 0.80)}),
    Population("Endothelium", "Endothelium", 0.05, {"CD31": (6, 0.90), "VIM": (5, 0.80)}),
    Population("CD4 T", "T cell", 0.07, {"CD45": (6, 0.95), "CD3": (1.2, 0.85), "CD4": (3, 0.80)}, "immune"),
    Population("Treg", "T cell", 0.01, {
        "CD45": (6, 0.95), "CD3": (1.2, 0.85), "CD4": (3, 0.80), "FOXP3": (4, 0.80)}, "immune"),
    Population("CD8 T", "T cell", 0.06, {"CD45": (6, 0.95), "CD3": (1.2, 0.85), "CD8": (5, 0.85)}, "immune"),
    Population("B", "B cell", 0.04, {"CD45": (8, 0.95), "CD20": (8, 0.90), "HLA-DR": (6, 0.85)}, "immune"),
    Population("Macrophage", "Macrophage", 0.08, {
        "CD45": (5, 0.90), "CD68": (8, 0.90), "CD163": (6, 0.70), "HLA-DR": (6, 0.80), "CD11c": (3, 0.50),
        "CD4": (1.5, 0.50)}, "immune"),
    Population("Dendritic", "Dendritic cell", 0.01, {"CD45": (5, 0.90), "CD11c": (8, 0.90), "HLA-DR": (10, 0.95)}, "immune"),
    Population("Neutrophil", "Neutrophil", 0.03, {"CD45": (4, 0.85), "CD15": (10, 0.90), "MPO": (8, 0.90)}, "immune"),
)

IMC_BACKGROUND = (0.2, 0.8)  # mean background ion counts per pixel per marker (non-specific binding)
IMC_CELL_SD = 0.4  # log-scale spread of a cell's expression around its population's level
IMC_PIXELS = (60.0, 0.4)  # cell size in pixels at 1 um/pixel: median and log-scale spread
IMC_SPILL = (0.05, 0.15)  # each cell carries 5-15% of a neighbour's signal (segmentation spill-over)
IMC_DNA = 20.0  # mean DNA intercalator counts per pixel in a nucleus


def imc_values(rng: np.random.Generator, panel: Panel, pop: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Mean counts per pixel (a Poisson count over the cell's pixels, divided by its pixels), 5-15%
    of a neighbour's signal added (spill-over), two DNA channels, then arcsinh(x / 1)."""
    n = len(pop)
    background = rng.uniform(*IMC_BACKGROUND, size=len(panel.markers))
    level = expected_levels(rng, panel, pop, piece, background)
    pixels = np.maximum(rng.lognormal(np.log(IMC_PIXELS[0]), IMC_PIXELS[1], size=n), 5.0)
    rate = level * np.exp(rng.normal(0.0, IMC_CELL_SD, size=level.shape))
    mean = rng.poisson(rate * pixels[:, None]) / pixels[:, None]
    spill = rng.uniform(*IMC_SPILL, size=n)
    mean = mean + spill[:, None] * mean[neighbours(rng, panel, pop)]
    dna = rng.poisson(IMC_DNA * np.exp(rng.normal(0.0, 0.2, size=(n, 1))) * pixels[:, None], size=(n, 2)) / pixels[:, None]
    return np.arcsinh(np.hstack([mean, dna])).astype(np.float32)


PANELS: dict[str, Panel] = {p.name: p for p in (
    Panel("mibi", "MIBI-TOF-like breast tumour: Poisson-lognormal counts, 2-6% spill-over, size-normalised, "
          "/ 99.9th percentile", MIBI_MARKERS, MIBI_POPULATIONS, mibi_values, "mibi_breast.ctr",
          "mibi_breast.mapping.yaml", 20000, immune_in_nests=0.3,
          piece_sd=0.4),  # several fields of view / patients: regions of one population differ ~1.5-fold
    Panel("flow", "flow-like PBMC: compensated fluorescence, negatives spread around 0, arcsinh(x/150)",
          FLOW_MARKERS, FLOW_POPULATIONS, flow_values, "flow_pbmc.ctr", "flow_pbmc.mapping.yaml", 19000,
          piece_sd=0.15),  # one donor stained at once: states of a population differ little
    Panel("imc", "IMC-like carcinoma: mean counts per pixel, 5-15% spill-over, dim CD3, arcsinh(x/1)",
          IMC_MARKERS, IMC_POPULATIONS, imc_values, "imc_tumour.json", "imc_tumour.mapping.yaml", 20000,
          technical=IMC_TECHNICAL, immune_in_nests=0.3, piece_sd=0.4),  # regions of the tissue differ ~1.5-fold
)}


def generate(panel: str, n_cells: int | None = None, seed: int = 0, *, cluster_cells: int | None = None):
    """An AnnData of the panel: values in X, ``obs['truth']`` (lineage, what is evaluated),
    ``obs['population']`` and ``obs['cluster']`` (the impure ``given`` clusters).
    ``cluster_cells``: the largest cluster before swaps (default: n_cells / 15, at least 50)."""
    import anndata as ad

    spec = PANELS[panel]
    n = int(n_cells or spec.default_cells)
    rng = np.random.default_rng(seed)
    pop = draw_populations(rng, spec, n)
    piece = split_populations(rng, pop, cluster_cells or max(50, n // 15))
    x = spec.values(rng, spec, pop, piece)
    clusters = impure_clusters(rng, piece)
    obs = pd.DataFrame({
        TRUTH_KEY: pd.Categorical([spec.populations[i].lineage for i in pop]),
        "population": pd.Categorical([spec.populations[i].name for i in pop]),
        CLUSTER_KEY: pd.Categorical(clusters.astype(str)),
    }, index=pd.Index([f"cell{i}" for i in range(n)]))
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=list(spec.markers) + list(spec.technical)))


def ctr_clusters(adata) -> np.ndarray:
    """ctr's own clustering of the values (the code path of ``ctr annotate`` and accuracy.py)."""
    from ctr.data.cluster import cluster_cells
    from ctr.data.preprocess import prepare_for_clustering
    from ctr.pipeline import technical_patterns

    scratch = adata.copy()
    prepared = prepare_for_clustering(scratch, scratch.X, list(scratch.var_names), technical=technical_patterns(None))
    return np.asarray(cluster_cells(prepared.matrix, compute_umap=False, **CLUSTERING).labels, dtype=str)


def evaluate_panel(panel: str, adata, cluster_key: str = CLUSTER_KEY, *, params: dict | None = None,
                   refine: bool = False):
    """Annotate ``adata`` with the panel's textbook map and default parameters (plus ``params``
    overrides, the JSON shape of ``--*-params``): (AnnotationResult, Evaluation)."""
    import ctr

    spec = PANELS[panel]
    params = params or {}
    result = ctr.annotate(
        adata, str(RULESETS / spec.ruleset), cluster_key=cluster_key, layer="X",
        scoring_params=params.get("scoring"), gating_params=params.get("gating"),
        refinement_params=params.get("refinement"), skip_refinement=not refine, write_obs=False,
    )
    evaluation = ctr.evaluate(result, adata.obs[TRUTH_KEY].astype(str).to_numpy(), mapping=RULESETS / spec.mapping,
                              clusters=adata.obs[cluster_key].astype(str).to_numpy())
    return result, evaluation


def run(panels: Sequence[str] = tuple(PANELS), clusters: Sequence[str] = ("given", "ctr"), *,
        n_cells: int | None = None, seed: int = 0, params: dict | None = None, refine: bool = False) -> pd.DataFrame:
    """One row per (panel, clusters): accuracy, cluster oracle, gap, unassigned and ambiguous shares."""
    rows = []
    for panel in panels:
        adata = generate(panel, n_cells, seed)
        for kind in clusters:
            t0 = time.perf_counter()
            key = CLUSTER_KEY
            if kind == "ctr":
                key = "ctr_clusters"
                adata.obs[key] = pd.Categorical(ctr_clusters(adata))
            elif kind != "given":
                raise ValueError(f"clusters must be 'given' or 'ctr', not {kind!r}")
            _, ev = evaluate_panel(panel, adata, key, params=params, refine=refine)
            o = ev.overall
            rows.append({
                "panel": panel, "clusters": kind, "n_cells": int(o["n_cells"]), "accuracy": o["accuracy"],
                "oracle": o["cluster_oracle"], "gap": o["oracle_gap"], "unassigned": o["unassigned_share"],
                "ambiguous": o["ambiguous_share"], "ancestor": o["ancestor_share"], "macro_f1": o["macro_f1"],
                "seconds": time.perf_counter() - t0,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--panels", metavar="A,B", default=",".join(PANELS), help=f"panels (default all): {', '.join(PANELS)}")
    ap.add_argument("--clusters", metavar="A,B", default="given,ctr",
                    help="given (truth with 5-15%% of cells swapped) and/or ctr (ctr's clustering); default both")
    ap.add_argument("--cells", type=int, metavar="N", help="cells per panel (default: mibi 20000, flow 19000, imc 20000)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--params", metavar="JSON", help='overrides for every panel: {"scoring": {...}, "gating": {...}, '
                    '"refinement": {...}} inline or @file.json')
    ap.add_argument("--refine", action="store_true", help="run ctr's refinement as well (default: annotation only)")
    ap.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    args = ap.parse_args(argv)
    params = None
    if args.params:
        params = json.loads(Path(args.params[1:]).read_text() if args.params.startswith("@") else args.params)
    t0 = time.perf_counter()
    table = run(args.panels.split(","), args.clusters.split(","), n_cells=args.cells, seed=args.seed,
                params=params, refine=args.refine)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"mean accuracy {table['accuracy'].mean():.3f}, mean gap {table['gap'].mean():.3f}, "
          f"worst gap {table['gap'].max():.3f}; {time.perf_counter() - t0:.1f} s")
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.4f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
