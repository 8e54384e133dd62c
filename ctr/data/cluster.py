"""Clustering cells: scale (clip at 10), PCA, kNN graph, Leiden, optional UMAP.

CPU path: scanpy (scale, PCA), the kNN graph of :mod:`ctr.data.neighbors` (exact up to 50k
cells, pynndescent beyond; UMAP's fuzzy connectivities in numpy), igraph's Leiden, and a UMAP
layout (igraph's up to 50k cells, umap-learn's through scanpy beyond). Up to 50k cells nothing is
compiled by numba, so a first run after installing costs what later runs cost. It is bit-for-bit
reproducible for a given seed. We do not call ``scanpy.pp.neighbors``: with scipy >= 1.17 and
pynndescent returning ``csr_array``, scanpy 1.11's neighbors step fails on every data set of
4,096 cells or more (``'csr_array' object has no attribute 'getnnz'``). Building the graph
ourselves works with any scanpy/scipy/Python combination, and puts each cell first in its own
neighbour list even among identical cells.

GPU path: :mod:`ctr.data.gpu` (rapids-singlecell), chosen automatically when available,
falling back to the CPU with a warning when it fails.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ctr.data.gpu import cluster_on_gpu, gpu_available
from ctr.data.neighbors import EXACT_KNN_MAX_CELLS, _self_first, fuzzy_connectivities, knn  # noqa: F401
from ctr.data.preprocess import column_variance
from ctr.progress import steps

UMAP_MAX_CELLS = 200_000
SCALE_MAX = 10.0
# run to convergence: on the CODEX CRC data two iterations (scanpy's igraph setting) gave visibly
# worse clusters; on 1M synthetic cells convergence takes 66-135 s instead of ~49 s
LEIDEN_ITERATIONS = -1
EDGE_CHUNK = 2_000_000
# the igraph layout's work bound (epochs x total membership): a 30,000-cell panel keeps 200 epochs
LAYOUT_WORK = 40_000_000
LAYOUT_MIN_EPOCHS = 30


@dataclass
class ClusterResult:
    labels: np.ndarray  # one str label per cell; "0" is the largest cluster
    backend: Literal["cpu", "gpu"]
    n_pcs_used: int
    embedding_umap: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # what computed ``embedding_umap`` ("igraph_umap", "umap_learn", "rapids_umap"; the report's
    # ctr.report.html.EMBEDDING_SOURCES words each), None without an embedding
    embedding_method: str | None = None


def capped_n_pcs(n_pcs: int, n_cells: int, n_markers: int) -> int:
    """PCs actually computed: at most ``n_markers - 1`` and ``n_cells - 1`` (0: no PCA)."""
    return max(0, min(int(n_pcs), n_markers - 1, n_cells - 1))


def cluster_cells(matrix, *, resolution: float = 1.0, n_pcs: int = 30, neighbors_k: int = 15,
                  random_seed: int = 0, use_gpu: bool | None = None,
                  progress: Callable[[str], None] | object | None = None,
                  compute_umap: bool | None = None) -> ClusterResult:
    """Leiden clusters of the cells (rows) of ``matrix`` (dense or sparse, finite values).

    ``use_gpu``: None = GPU when :func:`gpu_available`, False = CPU only (``--no-gpu``),
    True = try the GPU. A failing GPU path falls back to the CPU with a warning.
    ``n_pcs`` is capped at ``min(n_markers - 1, n_cells - 1)``; ``neighbors_k`` (self included,
    scanpy's convention) at ``n_cells``. Constant markers are ignored. ``compute_umap`` None =
    when at most 200,000 cells.
    ``progress``: a callable taking a message, or an object with ``.note(message)``.
    """
    notes: list[str] = []
    informative = column_variance(matrix) > 0
    if not informative.all():  # constant markers carry nothing and break PCA when nothing else is left
        matrix = matrix[:, np.flatnonzero(informative)]
    n_cells, n_markers = matrix.shape
    if n_markers == 0:
        labels = np.array(["0"] * n_cells, dtype=object)
        return ClusterResult(labels, "cpu", 0, None, {}, ["every marker is constant: all cells form one cluster"])
    n_pcs_used = capped_n_pcs(n_pcs, n_cells, n_markers)
    k = max(1, min(int(neighbors_k), n_cells))
    if compute_umap is None:
        compute_umap = n_cells <= UMAP_MAX_CELLS
    if n_cells < 3:
        labels = np.array(["0"] * n_cells, dtype=object)
        return ClusterResult(labels, "cpu", 0, None, {}, notes + [f"only {n_cells} cells: one cluster"])

    say = _reporter(progress)
    want_gpu = gpu_available() if use_gpu is None else bool(use_gpu)
    if want_gpu:
        say(f"clustering {n_cells} cells on the GPU (rapids-singlecell)")
        try:
            labels, embedding, timings = cluster_on_gpu(
                matrix, resolution=resolution, n_pcs=n_pcs_used, neighbors_k=k,
                random_seed=random_seed, compute_umap=compute_umap)
            return ClusterResult(np.asarray(labels, dtype=object), "gpu", n_pcs_used, embedding, timings, notes,
                                 None if embedding is None else "rapids_umap")
        except Exception as exc:  # any GPU failure (driver, memory, missing package): the CPU still works
            notes.append(f"GPU clustering failed ({type(exc).__name__}: {exc}); clustered on the CPU instead")
    say(f"clustering {n_cells} cells on the CPU")
    labels, embedding, timings = _cluster_cpu(matrix, resolution=resolution, n_pcs=n_pcs_used, k=k,
                                              random_seed=random_seed, compute_umap=compute_umap, notes=notes,
                                              say=say)
    method = None if embedding is None else ("igraph_umap" if n_cells <= EXACT_KNN_MAX_CELLS else "umap_learn")
    return ClusterResult(labels, "cpu", n_pcs_used, embedding, timings, notes, method)


def subcluster(matrix_subset, resolution: float, random_seed: int = 0, *, n_pcs: int = 30,
               neighbors_k: int = 15) -> np.ndarray:
    """Leiden labels ("0", "1", ...) for a subset of cells, on the CPU (reproducible), without UMAP."""
    return cluster_cells(matrix_subset, resolution=resolution, n_pcs=n_pcs, neighbors_k=neighbors_k,
                         random_seed=random_seed, use_gpu=False, compute_umap=False).labels


def _reporter(progress) -> Callable[[str], None]:
    if progress is None:
        return lambda message: None
    if hasattr(progress, "note"):
        return progress.note
    return progress


_COMPILED = False  # whether this process has compiled the graph code yet


def _cluster_cpu(matrix, *, resolution: float, n_pcs: int, k: int, random_seed: int,
                 compute_umap: bool, notes: list[str],
                 say: Callable[[str], None] = lambda message: None) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
    global _COMPILED
    import anndata as ad
    import scanpy as sc

    with steps(4 + compute_umap, "cluster") as advance:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        sparse = sp.issparse(matrix)
        x = sp.csr_matrix(matrix, dtype=np.float32, copy=True) if sparse else np.array(matrix, dtype=np.float32)
        adata = ad.AnnData(X=x)
        # centring would densify a sparse matrix; PCA centres sparse data implicitly instead
        sc.pp.scale(adata, zero_center=not sparse)
        _clip(adata.X, sparse)
        timings["scale"] = time.perf_counter() - t0
        advance(1)

        t0 = time.perf_counter()
        if n_pcs >= 1:
            # dense: eigendecomposition of the markers' covariance (exact, fast for panels, no random start)
            solver = "arpack" if sparse else "covariance_eigh"
            sc.pp.pca(adata, n_comps=n_pcs, random_state=random_seed, svd_solver=solver)
            rep_key, rep = "X_pca", np.ascontiguousarray(adata.obsm["X_pca"], dtype=np.float32)
        else:
            rep_key = "X"
            rep = np.ascontiguousarray(adata.X.toarray() if sparse else adata.X, dtype=np.float32)
        timings["pca"] = time.perf_counter() - t0
        advance(1)

        if not _COMPILED and adata.n_obs > EXACT_KNN_MAX_CELLS:
            say(f"building the neighbour graph: above {EXACT_KNN_MAX_CELLS:,} cells pynndescent searches it; the "
                "first run after installing ctr spends 30-60 s compiling its numba code (cached for later runs)")
            _COMPILED = True
        t0 = time.perf_counter()
        indices, distances = knn(rep, k, random_seed, exact_max_cells=EXACT_KNN_MAX_CELLS)
        connectivities = fuzzy_connectivities(indices, distances)
        timings["neighbors"] = time.perf_counter() - t0
        advance(1)

        t0 = time.perf_counter()
        labels = leiden(connectivities, resolution, random_seed)
        timings["leiden"] = time.perf_counter() - t0
        advance(1)

        embedding = None
        if compute_umap:
            t0 = time.perf_counter()
            try:
                if adata.n_obs <= EXACT_KNN_MAX_CELLS:
                    embedding = umap_layout(indices, distances, connectivities, random_seed)
                else:
                    _store_neighbors(adata, indices, distances, connectivities, rep_key, n_pcs, random_seed)
                    embedding = umap_embedding(adata, random_seed)
            except Exception as exc:  # the embedding only decorates the report; the clusters stand without it
                notes.append(f"UMAP embedding skipped ({type(exc).__name__}: {exc})")
            timings["umap"] = time.perf_counter() - t0
            advance(1)
        return labels, embedding, timings


def _clip(x, sparse: bool) -> None:
    """Clip scaled values at ``SCALE_MAX`` in place, as ``sc.pp.scale(max_value=...)`` does (both
    sides when centred, above only for sparse data), with numpy: scanpy's clip is a numba
    function that costs 15-20 s to compile on the first run after installing."""
    if sparse:
        np.minimum(x.data, SCALE_MAX, out=x.data)
    else:
        np.clip(x, -SCALE_MAX, SCALE_MAX, out=x)


def umap_layout(indices: np.ndarray, distances: np.ndarray, connectivities: sp.csr_matrix,
                random_seed: int) -> np.ndarray:
    """UMAP layout of the kNN graph by igraph (``Graph.layout_umap``: compiled C, nothing to
    compile at run time), from the same neighbours and distances as the Leiden graph (igraph
    derives UMAP's memberships from the distances itself); scanpy's ``min_dist`` (0.5) and
    umap-learn's number of epochs (500 up to 10,000 cells, 200 beyond), fewer when the graph's
    membership mass exceeds ``LAYOUT_WORK`` (see :func:`layout_epochs`). Seeded through igraph's
    random generator. Used up to 50,000 cells, where umap-learn's numba compilation would cost
    more than the layout itself."""
    import igraph

    n, k = indices.shape
    edges = np.column_stack([np.repeat(np.arange(n), k - 1), indices[:, 1:].ravel()])  # column 0 is the cell
    graph = igraph.Graph(n=n, edges=edges.tolist(), directed=True)
    with _igraph_seeded(random_seed):
        layout = graph.layout_umap(dist=distances[:, 1:].ravel().astype(np.float64).tolist(), dim=2,
                                   min_dist=0.5, epochs=layout_epochs(connectivities))
    return np.asarray(layout.coords, dtype=np.float32)


def layout_epochs(connectivities: sp.csr_matrix) -> int:
    """Epochs of the layout: umap-learn's (500 up to 10,000 cells, 200 beyond), fewer when the
    graph's total membership (what the layout samples each epoch) would make the work exceed
    ``LAYOUT_WORK``. Typical data have 5-6 per cell; near-duplicate cells (every neighbour at
    distance 0, membership 1) up to 4x that, which made a 50,000-cell layout cost minutes."""
    n = connectivities.shape[0]
    epochs = 500 if n <= 10_000 else 200
    mass = float(connectivities.sum())
    return int(max(LAYOUT_MIN_EPOCHS, min(epochs, LAYOUT_WORK // max(mass, 1.0))))


def umap_embedding(adata, random_seed: int) -> np.ndarray:
    """scanpy's UMAP on the stored neighbours, seeded (``rng`` in newer scanpy, ``random_state`` before)."""
    import inspect

    import scanpy as sc

    seed_arg = "rng" if "rng" in inspect.signature(sc.tl.umap).parameters else "random_state"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.umap(adata, **{seed_arg: random_seed})
    return np.asarray(adata.obsm["X_umap"], dtype=np.float32)


def leiden(connectivities: sp.csr_matrix, resolution: float, random_seed: int) -> np.ndarray:
    """Leiden (modularity with ``resolution``, run to convergence) on the weighted undirected graph;
    labels "0", "1", ... with "0" the largest cluster.

    igraph's implementation: the same algorithm as leidenalg, 20x faster on 20k cells, and the one
    scanpy is making its default. Seeded through igraph's random generator, restored afterwards.
    """
    graph = _weighted_graph(connectivities)
    with _igraph_seeded(random_seed):
        membership = np.asarray(graph.community_leiden(objective_function="modularity", weights="weight",
                                                       resolution=float(resolution),
                                                       n_iterations=LEIDEN_ITERATIONS).membership)
    # number clusters by size (largest "0"), ties by first cell, as scanpy/leidenalg do
    ids, first, sizes = np.unique(membership, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return np.asarray([str(r) for r in rank[np.searchsorted(ids, membership)]], dtype=object)


def _weighted_graph(connectivities: sp.csr_matrix):
    """The undirected igraph graph of a symmetric connectivity matrix, weights in ``weight``."""
    import igraph

    upper = sp.triu(connectivities, k=1).tocoo()
    graph = igraph.Graph(n=connectivities.shape[0], directed=False)
    # tuples of Python ints convert ~2x faster than a numpy edge array; chunks bound their memory
    for start in range(0, upper.nnz, EDGE_CHUNK):
        stop = start + EDGE_CHUNK
        graph.add_edges(list(zip(upper.row[start:stop].tolist(), upper.col[start:stop].tolist())))
    graph.es["weight"] = upper.data.astype(np.float64)
    return graph


@contextmanager
def _igraph_seeded(random_seed: int):
    """igraph's random generator seeded for the block, Python's own restored afterwards."""
    import random

    import igraph

    igraph.set_random_number_generator(random.Random(int(random_seed)))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def _store_neighbors(adata, indices, distances, connectivities, rep_key, n_pcs, random_seed) -> None:
    """The neighbours in scanpy's layout, so ``sc.tl.umap`` can run on them."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k - 1)
    dist = sp.csr_matrix((distances[:, 1:].ravel(), (rows, indices[:, 1:].ravel())), shape=(n, n))
    adata.obsp["distances"] = dist
    adata.obsp["connectivities"] = connectivities
    params = {"n_neighbors": k, "method": "umap", "metric": "euclidean", "random_state": random_seed,
              "use_rep": rep_key}
    if n_pcs >= 1:
        params["n_pcs"] = n_pcs
    adata.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances", "params": params}
