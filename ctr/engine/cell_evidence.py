"""Evidence of single cells in the shape of cluster evidence: each cell a cluster of one.

The gate functions of :mod:`ctr.engine.gates` then evaluate requirements, vetoes, conditions and
coverage on one cell's own values, the same way they do on a cluster: ``pos_frac`` is 1 or 0
(the cell is positive or not by the marker's threshold), ``median`` and ``mean`` are the value,
``enrichment`` is ``(x - enrichment_reference) / global_std``; ``de_z`` and ``de_rank`` have no meaning
for one cell and are missing. Used by ``--unit cell`` and by cell-state calling per cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ctr.engine.scoring import ClusterEvidence
from ctr.stats.global_stats import positive_values


def cell_evidence(matrix, markers: list[str], global_: pd.DataFrame, rows: np.ndarray | None = None) -> ClusterEvidence:
    """The evidence of the cells ``rows`` (all when None) of ``matrix`` (cells x ``markers``);
    ``global_`` is the statistics' global table (marker, global_median, global_std, threshold,
    threshold_source, threshold_op, flat)."""
    block = matrix if rows is None else matrix[rows]
    x = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
    g = global_.set_index("marker").loc[markers]
    median = g["global_median"].to_numpy(dtype=float)
    reference = g["enrichment_reference"].to_numpy(dtype=float) if "enrichment_reference" in g else median
    std = g["global_std"].to_numpy(dtype=float)
    threshold = g["threshold"].to_numpy(dtype=float)
    # only the quantile rule also asks for x > 0 (an absolute or data-driven split is the whole rule)
    quantile = (g["threshold_source"] == "quantile").to_numpy() if "threshold_source" in g else np.ones(len(markers), bool)
    strict = (g["threshold_op"] == ">").to_numpy() if "threshold_op" in g else np.zeros(len(markers), bool)
    flat = g["flat"].to_numpy(dtype=bool)
    positive = positive_values(x, threshold, strict, quantile, flat)
    with np.errstate(invalid="ignore"):
        enrichment = np.where(std > 0, (x - reference) / np.where(std > 0, std, 1.0), 0.0)
    missing = np.isnan(x)
    pos_frac = np.where(missing, np.nan, positive.astype(float))
    n = x.shape[0]
    none = np.full_like(x, np.nan)
    return ClusterEvidence(
        clusters=[str(i) for i in range(n)], n_cells=np.ones(n, dtype=np.int64), markers=list(markers),
        column={m: j for j, m in enumerate(markers)}, pos_frac=pos_frac, enrichment=np.where(missing, np.nan, enrichment),
        median=x, mean=x, de_z=none, de_rank=none, threshold=threshold, reference=reference, global_std=std, flat=flat,
        strict=strict, nonzero=quantile,
    )
