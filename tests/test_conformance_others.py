"""Conformance against other tools' own results: their marker files, imported as they are, run
end to end by `ctr annotate` on the data they were written for (../shared/data; skipped when absent).

Agreement is per cell against the reference labels; cluster-level runs give each cell its
cluster's label. Every target holds at default parameters.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from conftest import shared_file
from ctr.cli import main


def _annotate(tmp_path, adata, ruleset, *args) -> np.ndarray:
    """Run `ctr annotate` on ``adata`` and return the per-cell labels it wrote."""
    src = tmp_path / "input.h5ad"
    adata.write_h5ad(src)
    out = tmp_path / "run"
    assert main(["annotate", str(src), "--ruleset", str(ruleset), "--output-dir", str(out), "--no-report", *args]) == 0
    return ad.read_h5ad(out / "output.h5ad").obs["ctr_label"].astype(str).to_numpy()


def test_scimap_workflow_reproduces_scimaps_own_labels(tmp_path):
    adata = ad.read_h5ad(shared_file("scimap_cycif.h5ad"))
    workflow = shared_file("rulesets-by-others/scimap_phenotype_workflow.csv")
    adata.obs["cell_id"] = pd.Categorical(adata.obs_names.astype(str))  # scimap labels single cells
    labels = _annotate(tmp_path, adata, workflow, "--annotation-only", "--cluster-key", "cell_id", "--unit", "cell")
    agreement = float(np.mean(labels == adata.obs["phenotype"].astype(str).to_numpy()))
    assert agreement >= 0.99, f"agreement with scimap's phenotype {agreement:.4f}"


# CELESTA's names for the expert classes (the expert annotation has no counterpart for its
# parents "immune cells", "CD3+ T cells", "CD4+ T cells", nor for "NK cells", "CD11c+ DCs", "Unknown")
CELESTA_TO_EXPERT = {
    "vasculature": "vasculature", "tumor cells": "tumor cells", "aSMA+ stroma": "smooth muscle",
    "lymphatics": "lymphatics", "CD15+ granulocytes": "granulocytes", "B cells": "B cells",
    "CD68+CD163+ macrophages": "CD68+CD163+ macrophages", "plasma cells": "plasma cells",
    "CD8+ T cells": "CD8+ T cells", "CD4+ T cells CD45RO+": "CD4+ T cells CD45RO+", "Tregs": "Tregs",
}


def _celesta_agreement(labels, expert) -> float:
    mapped = np.array([CELESTA_TO_EXPERT.get(str(label), "") for label in labels])
    return float(np.mean(mapped == expert))


def test_celesta_prior_agrees_with_the_experts_at_least_as_well_as_celesta(tmp_path):
    adata = ad.read_h5ad(shared_file("celesta_codex_crc.h5ad"))
    prior = shared_file("rulesets-by-others/celesta_prior_marker_info.csv")
    expert = adata.obs["cell_type"].astype(str).to_numpy()
    theirs = _celesta_agreement(adata.obs["celesta_pred"], expert)
    ours = _celesta_agreement(_annotate(tmp_path, adata, prior, "--transform", "arcsinh:150"), expert)
    print(f"CELESTA CRC agreement: ctr {ours:.3f}, CELESTA {theirs:.3f}")
    assert ours >= theirs, f"ctr {ours:.3f} vs CELESTA {theirs:.3f}"


def test_scyan_table_agrees_with_the_manual_gating(tmp_path):
    adata = ad.read_h5ad(shared_file("scyan_aml_short.h5ad"))
    table = shared_file("rulesets-by-others/scyan_aml_default.csv")
    # scyan labels single cells, as scimap does: each cell is its own cluster (ctr's own clusters of
    # these 280 cells, 20 per class, mix classes: their fine-level oracle is 0.57)
    adata.obs["cell_id"] = pd.Categorical(adata.obs_names.astype(str))
    labels = _annotate(tmp_path, adata, table, "--annotation-only", "--cluster-key", "cell_id", "--skip-refinement")
    agreement = float(np.mean(labels == adata.obs["cell_type"].astype(str).to_numpy()))
    print(f"scyan AML agreement {agreement:.3f}")
    assert agreement >= 0.80, f"agreement {agreement:.3f}"


def test_garnett_markers_separate_b_from_t_cells(tmp_path):
    adata = ad.read_h5ad(shared_file("garnett_pbmc_facs.h5ad"))  # raw UMI counts
    markers = shared_file("rulesets-by-others/garnett_pbmc_test.txt")
    labels = _annotate(tmp_path, adata, markers, "--normalize", "total")  # normalised per cell, then log1p
    facs = adata.obs["cell_type"].astype(str).to_numpy()
    lineage = lambda names: np.array(["B" if n == "B cells" else "T" if "T cells" in n else "?" for n in names])  # noqa: E731
    b_vs_t = float(np.mean(lineage(labels) == lineage(facs)))
    t_cells = np.isin(facs, ["CD4 T cells", "CD8 T cells"])
    cd4_vs_cd8 = float(np.mean(labels[t_cells] == facs[t_cells]))
    print(f"Garnett PBMC: B vs T {b_vs_t:.3f}, CD4 vs CD8 {cd4_vs_cd8:.3f}")
    assert b_vs_t >= 0.95, f"B vs T {b_vs_t:.3f} (CD4 vs CD8 {cd4_vs_cd8:.3f})"
