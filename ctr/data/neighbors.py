"""The kNN graph of the cells: nearest neighbours and UMAP's fuzzy connectivities.

Exact neighbours (scikit-learn, brute force) up to :data:`EXACT_KNN_MAX_CELLS` cells, pynndescent
beyond. The connectivities are UMAP's fuzzy simplicial set, what scanpy stores as
``obsp["connectivities"]``, computed here with numpy: umap-learn computes them only through
numba functions that it does not cache, so every process paid their compilation (several seconds,
and importing umap-learn first compiles pynndescent: 30-40 s on the first run after install) even
for a few hundred cells. The numpy version follows umap-learn 0.5's ``smooth_knn_dist`` and
``compute_membership_strengths`` step by step in float32 (local connectivity 1, bandwidth 1,
fuzzy union); the two agree to the search tolerance (1e-5 relative), which tests check.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

EXACT_KNN_MAX_CELLS = 50_000
# umap-learn's constants: the binary search stops within this of log2(k); sigma's floor
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
SEARCH_STEPS = 64
_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


def knn(rep: np.ndarray, k: int, random_seed: int, *,
        exact_max_cells: int = EXACT_KNN_MAX_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of each row (itself first, distance 0), euclidean.

    Exact (scikit-learn, brute force) up to ``exact_max_cells`` rows: under a second for 20k cells
    and nothing to compile. pynndescent beyond (deterministic for a seed; its numba code is
    compiled once per installation and cached on disk by numba).
    """
    n = rep.shape[0]
    if n <= exact_max_cells:
        from sklearn.neighbors import NearestNeighbors

        distances, indices = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(rep).kneighbors(rep)
    else:
        from pynndescent import NNDescent

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index = NNDescent(rep, n_neighbors=k, metric="euclidean", random_state=random_seed,
                              low_memory=True, verbose=False)
        indices, distances = index.neighbor_graph
    return _self_first(np.asarray(indices, dtype=np.int64), np.asarray(distances, dtype=np.float32))


def _self_first(indices: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put each row's own index in column 0. Among identical cells (distance 0) a search may list
    a twin before the cell itself, or leave the cell out; the graph code expects it first."""
    n, k = indices.shape
    rows = np.arange(n)
    is_self = indices == rows[:, None]
    has_self = is_self.any(axis=1)
    # where self is missing, it replaces the farthest neighbour
    position = np.where(has_self, is_self.argmax(axis=1), k - 1)
    order = np.tile(np.arange(k), (n, 1))
    # move `position` to the front, keep the others in order
    order = np.where(order <= position[:, None], order - 1, order)
    order[:, 0] = position
    out_idx = np.take_along_axis(indices, order, axis=1)
    out_dist = np.take_along_axis(distances, order, axis=1)
    out_idx[:, 0] = rows
    out_dist[:, 0] = 0.0
    return out_idx, out_dist


def _exp32(x: np.ndarray) -> np.ndarray:
    # exp in double, rounded once to float32: what libm's expf (numba's float32 exp) returns
    return np.exp(x.astype(np.float64)).astype(np.float32)


def smooth_knn_dist(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's kernel width sigma and its distance rho to the nearest other cell (UMAP's
    ``smooth_knn_dist`` with local connectivity 1): sigma is found by bisection so that the
    memberships ``exp(-(d - rho) / sigma)`` of the other k-1 neighbours sum to log2(k).

    ``distances``: cells x k, sorted, the cell itself first. All cells are searched together;
    a cell leaves the search once its sum is within the tolerance.
    """
    d = np.asarray(distances, dtype=np.float32)
    n, k = d.shape
    target = np.log2(k)
    positive = d > 0
    rho = np.where(positive.any(axis=1), d[np.arange(n), positive.argmax(axis=1)], 0).astype(np.float32)
    gap = np.maximum(d[:, 1:] - rho[:, None], np.float32(0))  # exp(-0) = 1: within rho counts fully
    lo = np.zeros(n, np.float32)
    hi = np.full(n, _FLOAT32_MAX, np.float32)
    mid = np.ones(n, np.float32)
    searching = np.arange(n)
    for _ in range(SEARCH_STEPS):
        m = mid[searching]
        terms = _exp32(-(gap[searching] / m[:, None]))
        total = np.zeros(len(searching), np.float32)
        for j in range(terms.shape[1]):  # summed in order, in float32, as umap-learn does
            total += terms[:, j]
        go_on = np.abs(total.astype(np.float64) - target) >= SMOOTH_K_TOLERANCE
        over = total > target
        low, high = lo[searching], hi[searching]
        high = np.where(over, m, high)
        low = np.where(over, low, m)
        nxt = np.where(~over & (high >= _FLOAT32_MAX), m * np.float32(2), (low + high) / np.float32(2))
        searching = searching[go_on]
        lo[searching], hi[searching], mid[searching] = low[go_on], high[go_on], nxt[go_on]
        if not len(searching):
            break
    floor = np.where(rho > 0, MIN_K_DIST_SCALE * d.mean(axis=1), MIN_K_DIST_SCALE * d.mean())
    return np.maximum(mid, floor).astype(np.float32), rho


def fuzzy_connectivities(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """UMAP's fuzzy simplicial set of the kNN graph (scanpy's ``connectivities``): directed
    memberships ``exp(-(d - rho_i) / sigma_i)`` (1 within rho, 0 to the cell itself), combined by
    the fuzzy union ``A + A.T - A * A.T``. Symmetric, float32."""
    n, k = indices.shape
    d = np.asarray(distances, dtype=np.float32)
    sigma, rho = smooth_knn_dist(d)
    gap = np.maximum(d - rho[:, None], np.float32(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.where(sigma[:, None] > 0, _exp32(-(gap / sigma[:, None])), np.float32(1))
    strength[indices == np.arange(n)[:, None]] = 0
    directed = sp.coo_matrix((strength.ravel(), (np.repeat(np.arange(n), k), indices.ravel())), shape=(n, n))
    directed.eliminate_zeros()
    transpose = directed.transpose()
    union = directed + transpose - directed.multiply(transpose)
    union.eliminate_zeros()
    return sp.csr_matrix(union, dtype=np.float32)
