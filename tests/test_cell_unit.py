"""``unit="cell"``: cells of a cluster that stopped at a parent descend on their own votes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

import ctr
from ctr.lang import compile_ruleset

RULESET = """
ruleset cells
level 1 { min_gap 5.0 }        # children never separate at cluster level: the cluster stops at T
type T {
  markers CD3
  type CD4T { markers CD4 }
  type CD8T { markers CD8 }
}
type B { markers CD19 }
"""


def data() -> ad.AnnData:
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(0.1, 0.05, (n, 4)).clip(0)
    # cluster "0": T cells, half CD4+ (rows 0-49), half CD8+ (rows 50-99); cluster "1": B cells
    x[:100, 0] += 3
    x[:50, 1] += 3
    x[50:100, 2] += 3
    x[100:, 3] += 3
    adata = ad.AnnData(x, var=pd.DataFrame(index=["CD3", "CD4", "CD8", "CD19"]))
    adata.obs["cluster"] = np.repeat(["0", "1"], 100)
    return adata


def test_cluster_unit_keeps_the_parent_label():
    adata = data()
    ctr.annotate(adata, compile_ruleset("cells.ctr", text=RULESET).ruleset, cluster_key="cluster", skip_refinement=True)
    assert set(adata.obs["ctr_label"][:100]) == {"T"}
    assert set(adata.obs["ctr_stop_reason"][:100]) == {"ambiguous_siblings"}


def test_cell_unit_descends_by_votes():
    adata = data()
    ctr.annotate(adata, compile_ruleset("cells.ctr", text=RULESET).ruleset, cluster_key="cluster",
                 skip_refinement=True, unit="cell")
    labels = adata.obs["ctr_label"].astype(str).to_numpy()
    assert (labels[:50] == "CD4T").all() and (labels[50:100] == "CD8T").all()
    assert (labels[100:] == "B").all()
    assert set(adata.obs["ctr_stop_reason"].astype(str)[:100]) == {"cell_vote"}
    assert adata.obs["ctr_path"].astype(str).iloc[0] == "T / CD4T"
