"""Reading the input, choosing layer and cluster column, and the CTR5xx checks on values and labels."""

from __future__ import annotations

import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ctr.data.anndata_io import detect_cluster_key, read_input, select_layer
from ctr.data.checks import check_clusters, check_matrix, profile_values
from ctr.errors import InputError


def _adata(x=None, **layers) -> ad.AnnData:
    x = np.arange(12, dtype=np.float32).reshape(4, 3) if x is None else x
    a = ad.AnnData(X=x, var=pd.DataFrame(index=[f"M{i}" for i in range(x.shape[1])]))
    for name, value in layers.items():
        a.layers[name] = value
    return a


def _codes(diags) -> dict[str, object]:
    return {d.code: d for d in diags}


# --- reading -------------------------------------------------------------------------------------

def test_read_input_leaves_file_bytes_and_mtime_unchanged(tmp_path):
    path = tmp_path / "in.h5ad"
    _adata().write_h5ad(path)
    old = os.stat(path).st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))  # an mtime in the past makes any write visible
    before = path.read_bytes()
    adata = read_input(path)
    adata.X[0, 0] = 99  # in memory only
    assert adata.shape == (4, 3)
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == old


def test_read_input_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"nope\.h5ad.*does not exist"):
        read_input(tmp_path / "nope.h5ad")


def test_read_input_csv_is_not_anndata(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as err:
        read_input(path)
    assert "table.csv" in str(err.value) and "not an HDF5 file" in str(err.value)
    assert ".h5ad" in str(err.value)


@pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")
def test_read_input_hdf5_without_anndata(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["numbers"] = np.arange(3)
    with pytest.raises(InputError, match="HDF5 file that is not an AnnData"):
        read_input(path)


def test_read_input_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_input(tmp_path)


# --- layer -------------------------------------------------------------------------------------

def test_select_layer_preference_batchcorr_then_aligned_then_x():
    x = np.ones((2, 2), dtype=np.float32)
    assert select_layer(_adata(x, aligned=x * 2, batchcorr=x * 3), None)[1] == "batchcorr"
    matrix, name = select_layer(_adata(x, aligned=x * 2), None)
    assert name == "aligned" and matrix[0, 0] == 2
    assert select_layer(_adata(x, other=x), None)[1] == "X"
    assert select_layer(_adata(x, aligned=x * 2), "X")[1] == "X"
    assert select_layer(_adata(x, other=x * 5), "other")[0][0, 0] == 5


def test_select_layer_missing_lists_available():
    x = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(InputError) as err:
        select_layer(_adata(x, counts=x, asinh=x), "batchcorr")
    assert "'batchcorr'" in str(err.value) and "X, counts, asinh" in str(err.value)


def test_select_layer_keeps_sparse():
    x = sp.random(50, 4, density=0.1, format="csr", dtype=np.float32, random_state=0)
    matrix, name = select_layer(_adata(x), None)
    assert sp.issparse(matrix) and name == "X"


# --- cluster key -------------------------------------------------------------------------------

def test_detect_cluster_key_explicit_and_defaults():
    a = _adata()
    a.obs["leiden"] = pd.Categorical(["0", "0", "1", "1"])
    a.obs["cluster"] = ["a", "a", "b", "b"]
    assert detect_cluster_key(a, None, annotation_only=True) == "leiden"
    assert detect_cluster_key(a, "cluster", annotation_only=True) == "cluster"
    assert detect_cluster_key(a, None, annotation_only=False) is None
    a.obs["cluster_lvl0"] = pd.Categorical(["0", "1", "0", "1"])
    assert detect_cluster_key(a, None, annotation_only=True) == "cluster_lvl0"


def test_detect_cluster_key_missing_lists_categorical_candidates():
    a = _adata()
    a.obs["phenograph"] = pd.Categorical(["0", "0", "1", "1"])
    a.obs["area"] = [1.5, 2.5, 3.5, 4.5]
    with pytest.raises(InputError) as err:
        detect_cluster_key(a, "leiden", annotation_only=True)
    assert "'leiden'" in str(err.value) and "phenograph" in str(err.value) and "area" not in str(err.value)
    with pytest.raises(InputError) as err:
        detect_cluster_key(a, None, annotation_only=True)
    assert "--cluster-key" in str(err.value) and "phenograph" in str(err.value)


# --- value checks ------------------------------------------------------------------------------

def test_empty_file_is_an_error():
    diags = check_matrix(np.zeros((0, 3)), ["a", "b", "c"], layer_name="X")
    assert [d.code for d in diags] == ["CTR501"] and diags[0].level == "error"
    assert check_matrix(np.zeros((5, 0)), [], layer_name="X")[0].code == "CTR501"


def test_duplicate_marker_names():
    x = np.random.default_rng(0).random((5, 3))
    d = _codes(check_matrix(x, ["CD3", "CD4", "CD3"], layer_name="X"))["CTR502"]
    assert d.level == "error" and "CD3" in d.message and "CD4" not in d.message
    assert "var_names_make_unique" in d.hint


def test_nan_and_inf_counted_per_marker():
    x = np.random.default_rng(0).random((6, 3))
    x[0, 1] = np.nan
    x[3, 1] = np.inf
    x[2, 2] = np.nan
    d = _codes(check_matrix(x, ["CD3", "CD4", "CD8"], layer_name="X"))["CTR503"]
    assert d.level == "warning"
    assert "3 NaN/infinite values in 2 markers" in d.message
    assert "CD4 (2)" in d.message and "CD8 (1)" in d.message and "CD3" not in d.message


def test_nan_in_sparse_data_counted_without_densifying():
    x = sp.csr_matrix(np.array([[0, 1.0, 0], [np.nan, 0, 0], [0, 0, 2.0]]))
    d = _codes(check_matrix(x, ["a", "b", "c"], layer_name="X"))["CTR503"]
    assert "a (1)" in d.message and "b (" not in d.message


def test_negative_values_warning_small_noise_and_zscored_info():
    rng = np.random.default_rng(1)
    x = rng.random((50, 3)) * 3
    x[4, 0] = -0.5
    d = _codes(check_matrix(x, ["a", "b", "c"], layer_name="X"))["CTR504"]
    assert d.level == "warning" and "1 negative values" in d.message and "-0.5" in d.message
    assert _codes(check_matrix(x, ["a", "b", "c"], layer_name="zscore"))["CTR504"].level == "info"
    z = (x - x.mean(0)) / x.std(0)
    assert _codes(check_matrix(z, ["a", "b", "c"], layer_name="X"))["CTR504"].level == "info"
    x[4, 0] = -0.1  # within 5% of the maximum (~3): noise around zero
    d = _codes(check_matrix(x, ["a", "b", "c"], layer_name="X"))["CTR504"]
    assert d.level == "info" and "small negative" in d.message


def test_raw_counts_suggest_transform():
    x = np.random.default_rng(2).poisson(3, size=(40, 3)).astype(np.float32)
    x[0, 0] = 50
    d = _codes(check_matrix(x, ["a", "b", "c"], layer_name="counts"))["CTR505"]
    assert d.level == "warning" and "50" in d.message and "--normalize total" in d.hint
    small = np.random.default_rng(2).poisson(3, size=(40, 3)).astype(np.float32)  # max <= 20: could be anything
    assert "CTR505" not in _codes(check_matrix(small, ["a", "b", "c"], layer_name="X"))


def test_raw_intensities_suggest_arcsinh_150():
    x = np.random.default_rng(3).random((40, 3)) * 3000.5
    d = _codes(check_matrix(x, ["a", "b", "c"], layer_name="X"))["CTR506"]
    assert d.level == "warning" and "--transform arcsinh:150" in d.hint
    assert "CTR506" not in _codes(check_matrix(np.log1p(x), ["a", "b", "c"], layer_name="X"))


def test_every_marker_flat_is_an_error_one_flat_is_not():
    flat = np.tile([1.0, 2.0, 0.0], (10, 1))
    d = _codes(check_matrix(flat, ["a", "b", "c"], layer_name="X"))["CTR507"]
    assert d.level == "error"
    flat[3, 1] = 2.5
    assert "CTR507" not in _codes(check_matrix(flat, ["a", "b", "c"], layer_name="X"))
    assert "CTR507" in _codes(check_matrix(sp.csr_matrix((10, 3)), ["a", "b", "c"], layer_name="X"))
    assert "CTR507" not in _codes(check_matrix(sp.csr_matrix(flat), ["a", "b", "c"], layer_name="X"))


def test_sparse_column_ranges_match_dense():
    from ctr.data.checks import column_ranges

    dense = np.array([[1.0, 0, -2, 0, 0], [3.0, 0, 4, np.nan, 0], [2.0, 0, 5, 7, 0]])
    dense_full = np.array([[1.0, 1, 1], [3.0, 2, 1]])
    for x in (dense, dense_full):
        lo_d, hi_d = column_ranges(x)
        lo_s, hi_s = column_ranges(sp.csr_matrix(x))
        np.testing.assert_array_equal(lo_s, lo_d)
        np.testing.assert_array_equal(hi_s, hi_d)
    np.testing.assert_array_equal(column_ranges(sp.csr_matrix(dense))[1], [3, 0, 5, 7, 0])


def test_clean_data_has_no_diagnostics():
    x = np.log1p(np.random.default_rng(4).random((30, 4)) * 50)
    assert check_matrix(x, list("abcd"), layer_name="X") == []


@pytest.mark.parametrize(
    "values, kind",
    [
        (np.random.default_rng(0).poisson(0.3, (200, 5)) * 40.0, "sparse_counts"),  # MIBI/IMC counts
        (np.random.default_rng(0).gamma(2.0, 3000.0, (200, 5)), "raw_intensities"),  # untransformed CODEX
        (np.arcsinh((np.random.default_rng(0).gamma(0.5, 40.0, (200, 5))
                     + np.random.default_rng(1).normal(0, 0.5, (200, 5))) / 5), "continuous_with_negatives"),
        (np.log1p(np.random.default_rng(0).poisson(0.5, (200, 5)) * 1.7), "log_normalised"),
        (np.random.default_rng(0).normal(0, 1, (200, 5)), "standardised"),
        # flow after arcsinh/150: each marker's negative cells spread around 0, 30% positive cells
        (np.where(np.random.default_rng(2).random((400, 5)) < 0.3, np.random.default_rng(3).normal(4.0, 0.5, (400, 5)),
                  np.random.default_rng(4).normal(0.0, 0.4, (400, 5))), "continuous_with_negatives"),
    ],
    ids=["counts", "raw", "cytometry", "rna", "zscores", "flow"],
)
def test_data_profile_kinds(values, kind):
    from ctr.data.checks import profile_values

    assert profile_values(values, "X").kind == kind


def test_raw_intensities_get_a_transform_with_a_cofactor():
    codes = _codes(check_matrix(np.random.default_rng(0).gamma(2.0, 3000.0, (200, 5)), list("abcde"), layer_name="X"))
    assert "--transform arcsinh:150" in codes["CTR506"].hint
    cytof = np.random.default_rng(0).gamma(0.3, 200.0, (400, 5)) - 0.5  # mass cytometry: most values near zero
    assert "--transform arcsinh:5" in _codes(check_matrix(cytof, list("abcde"), layer_name="X"))["CTR506"].hint


def test_single_cluster_warning():
    d = _codes(check_clusters(np.array(["3"] * 5)))["CTR508"]
    assert d.level == "warning" and "all 5 cells" in d.message and "'3'" in d.message


def test_empty_categories_are_info():
    labels = pd.Categorical(["a", "a", "b", "b"], categories=["a", "b", "c", "zz"])
    d = _codes(check_clusters(labels))["CTR509"]
    assert d.level == "info" and "2 categories" in d.message and "c, zz" in d.message


def test_one_cell_clusters_named():
    labels = ["0", "0", "0", "7", "1", "1", "12"]
    d = _codes(check_clusters(labels))["CTR510"]
    assert d.level == "warning" and "12, 7" in d.message and "2 clusters" in d.message
    assert check_clusters(["0", "0", "1", "1"]) == []


# --- real data (skipped without ../shared/data) -------------------------------------------------

@pytest.mark.parametrize("name, layer, code, level", [
    ("celesta_codex_crc.h5ad", None, "CTR506", "warning"),   # raw CODEX intensities up to ~33,000
    ("garnett_pbmc_facs.h5ad", None, "CTR505", "warning"),   # sparse raw UMI counts
    ("scyan_aml_short.h5ad", None, "CTR504", "info"),        # X is standardised asinh
    ("scimap_cycif.h5ad", None, "CTR518", "info"),           # scimap's rescale: each gate at 0.5
])
def test_real_files_get_the_expected_advice(name, layer, code, level):
    from conftest import shared_file

    adata = read_input(shared_file(name))
    matrix, layer_name = select_layer(adata, layer)
    found = _codes(check_matrix(matrix, adata.var_names, layer_name=layer_name))
    assert found[code].level == level
    assert not any(d.level == "error" for d in found.values())


def test_real_plain_asinh_layer_has_only_small_negative_noise():
    from conftest import shared_file

    adata = read_input(shared_file("scyan_aml_short.h5ad"))
    matrix, layer_name = select_layer(adata, "asinh")
    diags = check_matrix(matrix, adata.var_names, layer_name=layer_name)
    assert [(d.code, d.level) for d in diags] == [("CTR504", "info")]


def test_missing_cluster_labels_counted():
    d = _codes(check_clusters(pd.Series(["0", None, "1", "1", np.nan, "0"])))["CTR515"]
    assert d.level == "warning" and "2 of 6 cells" in d.message
    assert "the group 'unlabelled'" in d.message
    assert "CTR515" not in _codes(check_clusters(np.array(["0", "nan", "0"])))  # a cluster named "nan" is a label
    assert "CTR515" in _codes(check_clusters(pd.Series(["0", "  ", "0"])))  # an empty one is not


def test_cluster_labels_are_text_categories_of_the_labels_cells_have():
    from ctr.data.checks import cluster_labels

    labels = cluster_labels(pd.Series(["1", 1, None, "  ", "a", "nan"], dtype=object))
    assert isinstance(labels, pd.Categorical)  # a code per cell, the text once per label
    assert list(np.asarray(labels)) == ["1", "1", "unlabelled", "unlabelled", "a", "nan"]
    assert sorted(labels.categories) == ["1", "a", "nan", "unlabelled"]  # the blank label's text has no cell left
    unused = cluster_labels(pd.Categorical(["b", "b"], categories=["a", "b"]))
    assert list(unused.categories) == ["b"] and len(cluster_labels(np.array([], dtype=str))) == 0


def test_read_input_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.h5ad"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_input(fifo)


def test_background_subtracted_cytometry_is_not_called_standardised():
    # arcsinh CyTOF values: about half are tiny negatives around zero, real signal up to ~6
    from ctr.data.checks import check_matrix

    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 0.05, (400, 5))
    values[:100, 0] += 5.0
    (diag,) = [d for d in check_matrix(values, list("ABCDE"), layer_name="asinh") if d.code == "CTR504"]
    assert diag.level == "info" and "noise around zero" in diag.message and "standardised" not in diag.message


def test_a_sample_repeated_three_times_is_reported_with_its_share():
    import io

    from ctr.data.checks import check_duplicate_cells
    from ctr.pipeline import _check_before_clustering
    from ctr.progress import Progress

    rng = np.random.default_rng(0)
    sample = rng.exponential(1.0, (400, 6)).astype(np.float32)
    repeated = np.vstack([sample, sample, sample, np.zeros((50, 6), np.float32)])  # empty cells are no copies
    for matrix in (repeated, sp.csr_matrix(repeated)):
        (diag,) = check_duplicate_cells(matrix, layer_name="X")
        assert diag.code == "CTR516" and "66.7% of the cells" in diag.message
    assert check_duplicate_cells(np.vstack([sample, np.zeros((50, 6))]), layer_name="X") == []
    # said before clustering, in the run's own notes
    stream = io.StringIO()
    said = _check_before_clustering(ad.AnnData(repeated), None, Progress(stream=stream))
    assert "CTR516" in said and "66.7%" in stream.getvalue()


def test_values_rescaled_around_gates_are_recognised_and_min_max_scaling_is_not_taken_for_it():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 1.0, (500, 4))
    rescaled = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
    names = ["CD3", "CD20", "CD68", "CD30"]
    # every marker ends at 1: min-max scaling as much as a rescale; a warning names the option
    hit = [d for d in check_matrix(rescaled, names, layer_name="X") if d.code == "CTR517"]
    assert hit and '"positivity": "gate"' in hit[0].hint
    assert profile_values(rescaled, "X", names).gate is None
    # a marker no cell passes ends at 0.5: only a rescale around gates does that
    gated = rescaled.copy()
    gated[:, 3] *= 0.5
    profile = profile_values(gated, "X", names)
    assert (profile.kind, profile.gate, profile.ungated) == ("gate_rescaled", 0.5, ("CD30",))
    found = {d.code: d for d in check_matrix(gated, names, layer_name="X")}
    assert "CTR517" not in found and found["CTR518"].severity == "info" and "CD30" in found["CTR518"].message
    # 0/1 calls, arcsinh intensities and a layer where one marker ends elsewhere are not a rescale
    calls = (gated > 0.5).astype(float)
    arcsinh = np.arcsinh(np.abs(x) * 20)
    partial = gated.copy()
    partial[:, 0] *= 0.8
    for other in (calls, arcsinh, partial):
        assert not {"CTR517", "CTR518"} & {d.code for d in check_matrix(other, names, layer_name="X")}
        assert profile_values(other, "X", names).gate is None