"""A run directory made by the real engine on a small synthetic input, for the views' tests.

Seven clusters of ``REAL_RULESET`` (``REAL_CLUSTERS`` lists the markers each expresses): a ciliated
leaf, a requirement failure, a veto, an immune cluster, an ambiguity between two subtypes, a
coverage failure and a secretory leaf. Tests read the expected numbers from the run's own tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REAL_RULESET = """ruleset tiny "explain-why test ruleset"
level 0 { min_coverage 0.6  min_enrichment -2 }

type Epithelium {
  markers EPCAM, KRT8, CDH1, KRT18
  require EPCAM pos_frac >= 0.5
  veto PTPRC pos_frac > 0.25
  type Ciliated { markers FOXJ1, CAPS }
  type Secretory { markers PAX8, OVGP1 }
}
type Immune {
  markers PTPRC, CD3E
}
"""
REAL_REQUIRE_LINE = 6
REAL_VETO_LINE = 7
REAL_MARKERS = ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS", "PAX8", "OVGP1", "PTPRC", "CD3E"]
# cluster -> the markers its cells express (everything else is background noise)
REAL_CLUSTERS = {
    "0": ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS"],  # Ciliated
    "1": ["KRT8", "CDH1", "KRT18"],  # epithelial but no EPCAM: the requirement (line 6) fails
    "2": ["EPCAM", "KRT8", "CDH1", "KRT18", "PTPRC", "CD3E"],  # PTPRC+: the veto (line 7) fails
    "3": ["PTPRC", "CD3E"],  # Immune
    "4": ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS", "PAX8", "OVGP1"],  # ciliated or secretory?
    "5": ["EPCAM", "KRT8"],  # 2 of 4 epithelial markers: coverage 0.5 < 0.6
    "6": ["EPCAM", "KRT8", "CDH1", "KRT18", "PAX8", "OVGP1"],  # Secretory
}


def real_adata(cells_per_cluster: int = 60, seed: int = 0):
    """Synthetic arcsinh-like intensities: expressed markers ~ N(3, 0.3), others mostly 0 (10 % low
    noise), plus a UMAP. With positive_quantile 0.1 (set below) an expressing cell is positive."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    blocks, centres = [], rng.normal(scale=5.0, size=(len(REAL_CLUSTERS), 2))
    for on in REAL_CLUSTERS.values():
        shape = (cells_per_cluster, len(REAL_MARKERS))
        x = np.where(rng.random(shape) < 0.1, rng.gamma(1.0, 0.2, size=shape), 0.0)
        for marker in on:
            x[:, REAL_MARKERS.index(marker)] += rng.normal(3.0, 0.3, cells_per_cluster)
        blocks.append(x)
    clusters = np.repeat(list(REAL_CLUSTERS), cells_per_cluster)
    obs = pd.DataFrame({"cluster": clusters}, index=[f"cell{i}" for i in range(clusters.size)])
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=REAL_MARKERS))
    where = np.repeat(np.arange(len(REAL_CLUSTERS)), cells_per_cluster)
    adata.obsm["X_umap"] = (centres[where] + rng.normal(size=(clusters.size, 2))).astype(np.float32)
    return adata


def write_real_run(out: Path, *, gating_params: dict | None = None, tissue: str | None = None,
                   with_h5ad: bool = True) -> Path:
    """Annotate ``real_adata()`` with ``REAL_RULESET`` (written to ``out.parent/tiny.ctr``) and write the run.

    ``tissue`` adds a tissue profile (its expected composition; the fallopian tube's sets no
    parameters, so the labels stay those of the ruleset alone)."""
    from ctr.api import annotate

    out = Path(out)
    ruleset = out.parent / "tiny.ctr"
    out.parent.mkdir(parents=True, exist_ok=True)
    ruleset.write_text(REAL_RULESET)
    adata = real_adata()
    result = annotate(adata, str(ruleset), cluster_key="cluster", gating_params=gating_params, tissue=tissue,
                      scoring_params={"positive_quantile": 0.1}, skip_refinement=True)
    return result.write(out, adata=adata if with_h5ad else None)
