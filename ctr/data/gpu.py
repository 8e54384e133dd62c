"""The GPU clustering path (rapids-singlecell): same steps as the CPU path, on the GPU.

Optional: ``pip install 'ctr[gpu]'`` on a machine with CUDA. Results are close to but not
bit-identical with the CPU path, and may vary slightly between runs (use ``--no-gpu`` for
reproducible clusters).
"""

from __future__ import annotations

import importlib.util
import time
from functools import lru_cache

import numpy as np
import scipy.sparse as sp


@lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when rapids-singlecell and cupy are installed and a CUDA device is visible. Never raises."""
    try:
        if importlib.util.find_spec("rapids_singlecell") is None or importlib.util.find_spec("cupy") is None:
            return False
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # broken CUDA installs raise all sorts of errors; any of them means "no GPU"
        return False


def cluster_on_gpu(matrix, *, resolution: float, n_pcs: int, neighbors_k: int, random_seed: int,
                   compute_umap: bool) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
    """Scale (clip 10), PCA (``n_pcs`` already capped; 0 = cluster on the scaled values), kNN,
    Leiden and optionally UMAP with rapids-singlecell. Returns (labels, umap or None, timings)."""
    import anndata as ad
    import rapids_singlecell as rsc

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    adata = ad.AnnData(X=np.ascontiguousarray(x, dtype=np.float32))
    rsc.get.anndata_to_GPU(adata)
    rsc.pp.scale(adata, max_value=10)
    timings["scale"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if n_pcs >= 1:
        rsc.pp.pca(adata, n_comps=n_pcs)
        rep = "X_pca"
    else:
        rep = "X"
    timings["pca"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rsc.pp.neighbors(adata, n_neighbors=neighbors_k, use_rep=rep, random_state=random_seed)
    timings["neighbors"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rsc.tl.leiden(adata, resolution=resolution, random_state=random_seed, key_added="leiden")
    labels = adata.obs["leiden"].astype(str).to_numpy()
    timings["leiden"] = time.perf_counter() - t0

    embedding = None
    if compute_umap:
        t0 = time.perf_counter()
        rsc.tl.umap(adata, random_state=random_seed)
        embedding = np.asarray(_to_host(adata.obsm["X_umap"]), dtype=np.float32)
        timings["umap"] = time.perf_counter() - t0
    return labels, embedding, timings


def _to_host(array):
    return array.get() if hasattr(array, "get") else array
