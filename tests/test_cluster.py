"""Clustering: the scanpy/scipy neighbours trap, PC capping, determinism, sparse input, GPU fallback."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from ctr.data import cluster as cluster_module
from ctr.data.cluster import _self_first, capped_n_pcs, cluster_cells, knn, subcluster
from ctr.data.neighbors import fuzzy_connectivities
from ctr.data.gpu import gpu_available


def _trap_matrix() -> np.ndarray:
    """20,000 cells x 22 markers, exponential(0.3) values kept with probability 0.2: ~140 all-zero cells."""
    rng = np.random.default_rng(0)
    return rng.exponential(0.3, size=(20_000, 22)) * (rng.random((20_000, 22)) < 0.2)


def _blobs(n_per: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated groups over 6 markers: group g is high on markers 2g and 2g+1."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for g in range(3):
        x = rng.normal(0.5, 0.2, size=(n_per, 6))
        x[:, 2 * g: 2 * g + 2] += 4.0
        parts.append(x)
        truth += [g] * n_per
    return np.clip(np.vstack(parts), 0, None).astype(np.float32), np.array(truth)


def _pure(truth: np.ndarray, labels: np.ndarray) -> bool:
    """Every cluster holds cells of one group only, and every group is found."""
    pairs = {(str(lab), int(t)) for lab, t in zip(labels, truth)}
    by_label = {lab for lab, _ in pairs}
    return len(pairs) == len(by_label) and {t for _, t in pairs} == set(map(int, truth))


def test_trap_identical_cells_20k_cluster_without_error():
    # scanpy 1.11.5 + scipy 1.17: sc.pp.neighbors raised AttributeError ('csr_array' ... 'getnnz') here
    x = _trap_matrix()
    zero_rows = np.flatnonzero(x.sum(axis=1) == 0)
    assert len(zero_rows) > 100
    result = cluster_cells(x, n_pcs=20, neighbors_k=15, compute_umap=False)
    assert result.backend == "cpu" and len(result.labels) == 20_000
    assert len(set(result.labels)) > 1


def test_self_first_among_identical_cells():
    # cells 0, 1, 2 identical: the search listed a twin first (row 0) or left the cell out (row 1)
    indices = np.array([[1, 0, 2], [0, 2, 3], [2, 0, 1]])
    distances = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    idx, dist = _self_first(indices, distances)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    np.testing.assert_array_equal(dist, [[0, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_n_pcs_capped_for_small_panels():
    assert capped_n_pcs(30, 10_000, 22) == 21
    assert capped_n_pcs(30, 8, 22) == 7
    assert capped_n_pcs(10, 10_000, 22) == 10
    assert capped_n_pcs(30, 100, 1) == 0
    x, _ = _blobs()
    wide = np.hstack([x, x[:, :3] * 0.5 + 0.1, x[:, 3:] * 0.3, np.random.default_rng(1).random((180, 13))])
    assert wide.shape[1] == 25
    result = cluster_cells(wide, n_pcs=30, compute_umap=False)
    assert result.n_pcs_used == 24


def test_recovers_separated_groups():
    x, truth = _blobs()
    result = cluster_cells(x, resolution=0.3, compute_umap=False)
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert set(result.labels) == {"0", "1", "2"}


def test_single_marker_clusters_on_scaled_values():
    x = np.concatenate([np.full(50, 0.1), np.full(50, 5.0)])[:, None] + np.random.default_rng(0).normal(0, 0.05, (100, 1))
    result = cluster_cells(x, resolution=0.2, compute_umap=False)
    assert result.n_pcs_used == 0
    assert _pure(np.repeat([0, 1], 50), result.labels)


def test_cpu_runs_are_bit_identical_with_same_seed():
    x = _trap_matrix()[:3000]
    first = cluster_cells(x, random_seed=7, compute_umap=True)
    second = cluster_cells(x, random_seed=7, compute_umap=True)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.embedding_umap, second.embedding_umap)
    assert first.embedding_umap.shape == (3000, 2)


def test_sparse_input_clusters_like_dense():
    x, truth = _blobs()
    x[x < 0.6] = 0.0
    dense = cluster_cells(x, resolution=0.3, compute_umap=False)
    sparse = cluster_cells(sp.csr_matrix(x), resolution=0.3, compute_umap=False)
    assert _pure(truth, sparse.labels) and _pure(truth, dense.labels)
    assert adjusted_rand_score(dense.labels, sparse.labels) > 0.9


def test_labels_numbered_by_size():
    x, _ = _blobs()
    x = x[:150]  # groups of 60, 60, 30
    labels = cluster_cells(x, resolution=0.3, compute_umap=False).labels
    sizes = [int((labels == str(i)).sum()) for i in range(3)]
    assert sizes == sorted(sizes, reverse=True) and sizes[2] == 30


def test_constant_markers_ignored_and_all_constant_is_one_cluster():
    result = cluster_cells(np.ones((50, 5)))
    assert set(result.labels) == {"0"} and "constant" in result.warnings[0]
    x, truth = _blobs()
    padded = np.hstack([x, np.full((len(x), 3), 2.0, dtype=np.float32)])
    result = cluster_cells(padded, n_pcs=30, resolution=0.3, compute_umap=False)
    assert result.n_pcs_used == 5 and _pure(truth, result.labels)


def test_tiny_inputs():
    assert list(cluster_cells(np.ones((2, 3))).labels) == ["0", "0"]
    assert len(cluster_cells(np.random.default_rng(0).random((5, 3)), compute_umap=False).labels) == 5


def test_subcluster_splits_a_subset():
    x, truth = _blobs()
    mask = truth != 0
    labels = subcluster(x[mask], resolution=0.3, random_seed=0)
    assert len(labels) == mask.sum() and adjusted_rand_score(truth[mask], labels) == 1.0


def test_pbmc_clusters_agree_with_louvain_and_umap_computed():
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    result = cluster_cells(pbmc.X, random_seed=0)
    assert result.embedding_umap.shape == (pbmc.n_obs, 2)
    assert adjusted_rand_score(pbmc.obs["louvain"], result.labels) > 0.5
    assert set(result.timings) == {"scale", "pca", "neighbors", "leiden", "umap"}


# --- GPU choice and fallback (this machine has no GPU) -------------------------------------------

def test_gpu_available_is_false_without_rapids_and_never_raises():
    assert gpu_available() is False


def test_auto_uses_cpu_without_warning():
    x, _ = _blobs()
    result = cluster_cells(x, use_gpu=None, compute_umap=False)
    assert result.backend == "cpu" and result.warnings == []


def test_forced_gpu_failure_falls_back_to_cpu_with_warning():
    x, truth = _blobs()
    result = cluster_cells(x, resolution=0.3, use_gpu=True, compute_umap=False)
    assert result.backend == "cpu"
    assert any("GPU clustering failed" in w and "CPU" in w for w in result.warnings)
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_auto_detected_gpu_that_fails_falls_back(monkeypatch):
    monkeypatch.setattr(cluster_module, "gpu_available", lambda: True)
    x, _ = _blobs()
    result = cluster_cells(x, compute_umap=False)
    assert result.backend == "cpu" and any("GPU clustering failed" in w for w in result.warnings)
    refused = cluster_cells(x, use_gpu=False, compute_umap=False)  # --no-gpu: GPU never tried
    assert refused.backend == "cpu" and refused.warnings == []


@pytest.mark.slow
def test_approximate_knn_path_on_trap_data_is_deterministic():
    # pynndescent (used above 50k cells) on the identical-cells data; first call compiles (~30 s)
    from sklearn.decomposition import PCA

    x = _trap_matrix()
    rep = PCA(20, random_state=0).fit_transform((x - x.mean(0)) / x.std(0)).astype(np.float32)
    idx_a, dist_a = knn(rep, 15, 0, exact_max_cells=0)
    idx_b, dist_b = knn(rep, 15, 0, exact_max_cells=0)
    np.testing.assert_array_equal(idx_a, idx_b)
    assert (idx_a[:, 0] == np.arange(len(rep))).all() and (dist_a[:, 0] == 0).all()
    exact, _ = knn(rep, 15, 0)
    recall = np.mean([len(set(a) & set(e)) / 15 for a, e in zip(idx_a[:2000], exact[:2000])])
    assert recall > 0.9


# --- the kNN graph without numba ----------------------------------------------------------------

def test_connectivities_match_umap_learn_on_real_and_duplicated_cells():
    # ctr computes UMAP's fuzzy simplicial set in numpy; umap-learn's numba version is the reference
    import scanpy as sc
    from umap.umap_ import fuzzy_simplicial_set

    x = np.asarray(sc.datasets.pbmc68k_reduced().obsm["X_pca"], dtype=np.float32)
    x = np.vstack([x, x[:40], np.zeros((5, x.shape[1]), np.float32)])  # twins and identical zero cells
    indices, distances = knn(x, 15, 0)
    ours = fuzzy_connectivities(indices, distances)
    theirs = sp.csr_matrix(fuzzy_simplicial_set(sp.coo_matrix((len(x), 1)), 15, None, None, knn_indices=indices,
                                                knn_dists=distances)[0])
    assert ours.dtype == np.float32 and (ours != ours.T).nnz == 0
    assert (abs(ours - theirs) > 1e-5).nnz == 0
    assert ((ours != 0) != (theirs != 0)).nnz == 0  # the same edges


def test_small_inputs_draw_the_igraph_layout_of_the_leiden_graph():
    x, truth = _blobs()
    result = cluster_cells(x, resolution=0.3, random_seed=3)
    assert result.embedding_method == "igraph_umap" and result.embedding_umap.shape == (len(x), 2)
    np.testing.assert_array_equal(cluster_cells(x, resolution=0.3, random_seed=3).embedding_umap,
                                  result.embedding_umap)
    # the layout keeps the groups apart: each group's centre is far from the others' cells
    centres = np.array([result.embedding_umap[truth == g].mean(axis=0) for g in range(3)])
    spread = max(np.linalg.norm(result.embedding_umap[truth == g] - centres[g], axis=1).max() for g in range(3))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)) > spread
    assert cluster_cells(x, compute_umap=False).embedding_method is None


def test_clipping_matches_scanpys_scale_with_max_value():
    import anndata as ad
    import scanpy as sc

    from ctr.data.cluster import SCALE_MAX, _clip

    rng = np.random.default_rng(0)
    x = (rng.exponential(1.0, size=(3000, 8)) ** 3).astype(np.float32)  # heavy tails: many values clip
    for sparse in (False, True):
        data = sp.csr_matrix(np.where(rng.random(x.shape) < 0.5, 0, x)) if sparse else x
        theirs, ours = ad.AnnData(data.copy()), ad.AnnData(data.copy())
        sc.pp.scale(theirs, max_value=SCALE_MAX, zero_center=not sparse)
        sc.pp.scale(ours, zero_center=not sparse)
        _clip(ours.X, sparse)
        if sparse:
            assert theirs.X.max() == SCALE_MAX and (theirs.X != ours.X).nnz == 0
        else:
            assert theirs.X.max() == SCALE_MAX and np.array_equal(theirs.X, ours.X)


def test_layout_work_is_bounded_on_repeated_cells():
    from ctr.data.cluster import LAYOUT_MIN_EPOCHS, layout_epochs

    x, _ = _blobs(n_per=400)
    indices, distances = knn(x, 15, 0)
    assert layout_epochs(fuzzy_connectivities(indices, distances)) == 500  # umap-learn's epochs, 1,200 cells
    repeated = np.vstack([x[:600]] * 20)  # 12,000 cells, every one with 19 identical twins
    indices, distances = knn(repeated, 15, 0)
    epochs = layout_epochs(fuzzy_connectivities(indices, distances))
    assert LAYOUT_MIN_EPOCHS <= epochs < 200  # fewer than the 200 a typical 12,000-cell panel gets
