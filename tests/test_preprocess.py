"""Transforms, technical channels and near-constant markers before clustering."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ctr.data.preprocess import apply_transform, prepare_for_clustering, split_technical_markers
from ctr.errors import InputError, ParameterError


def test_arcsinh_cofactor_values():
    x = np.array([[0.0, 150.0], [-150.0, 1500.0]])
    out = apply_transform(x, "arcsinh:150")
    np.testing.assert_allclose(out, [[0.0, np.arcsinh(1.0)], [-np.arcsinh(1.0), np.arcsinh(10.0)]])
    assert x[0, 1] == 150.0  # input untouched


def test_log1p_values_and_integer_input_becomes_float():
    x = np.array([[0, 1], [3, 9]], dtype=np.int64)
    out = apply_transform(x, "log1p")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.log1p(x), rtol=1e-6)


def test_transform_keeps_sparse_sparse():
    x = sp.csr_matrix(np.array([[0, 5.0, 0], [0, 0, 10.0]]))
    out = apply_transform(x, "arcsinh:5")
    assert sp.issparse(out) and out.nnz == 2
    assert out[0, 1] == pytest.approx(np.arcsinh(1.0)) and x[0, 1] == 5.0
    assert sp.issparse(apply_transform(x, "log1p"))


@pytest.mark.parametrize("spec", ["arcsinh", "arcsinh:0", "arcsinh:-5", "asinh:abc", "log", "sqrt", ""])
def test_bad_transform_spec_lists_valid_forms(spec):
    with pytest.raises(ParameterError) as err:
        apply_transform(np.ones((2, 2)), spec)
    assert "arcsinh:COFACTOR" in str(err.value) and "log1p" in str(err.value)


def test_log1p_refuses_negative_values():
    with pytest.raises(InputError, match="arcsinh"):
        apply_transform(np.array([[-2.0, 1.0]]), "log1p")


def test_technical_markers_case_insensitive():
    names = ["CD3", "DAPI", "dapi_2", "Hoechst33342", "DRAQ5", "DNA1", "191Ir_DNA1", "Ir193Di", "Histone H3",
             "H3", "Blank", "empty_1", "Background", "CD45RA", "PD-L1", "H3K27me3", "CD19"]
    kept, moved = split_technical_markers(names)
    assert kept == ["CD3", "CD45RA", "PD-L1", "H3K27me3", "CD19"]
    assert moved == ["DAPI", "dapi_2", "Hoechst33342", "DRAQ5", "DNA1", "191Ir_DNA1", "Ir193Di", "Histone H3",
                     "H3", "Blank", "empty_1", "Background"]
    assert split_technical_markers(["CD3", "MyStain"], ["mystain"]) == (["CD3"], ["MyStain"])


def test_acquisition_parameters_and_mass_first_isotopes_are_technical():
    # what CyTOF, IMC and flow exports record besides the stains (tagged panels: docs/marker-names.md)
    technical = ["191Ir", "193Ir_DNA2", "X191Ir", "140Ce", "Xe131", "134Xe", "Time", "Event_length", "Center",
                 "Offset", "Width", "Residual", "beadDist", "FSC-A", "SSC-H", "SSC-B-A", "FSC"]
    markers = ["141Pr_CD45", "CD3 FITC-A", "Comp-PE-A :: CD19", "CD45(Sm152)Di", "Timp1", "CD140a", "FSCN1",
               "SSC4D", "Width_CD3", "CENTER-1"]
    kept, moved = split_technical_markers(markers + technical)
    assert kept == markers and moved == technical


def _adata(x, names):
    return ad.AnnData(X=x, var=pd.DataFrame(index=names))


def test_prepare_moves_technical_to_obs_and_drops_constant():
    rng = np.random.default_rng(0)
    x = rng.random((20, 4)).astype(np.float32)
    x[:, 2] = 0.7  # constant marker
    adata = _adata(x, ["CD3", "DAPI", "CD4", "CD8"])
    prepared = prepare_for_clustering(adata, adata.X)
    assert prepared.kept == ["CD3", "CD8"]
    assert prepared.moved == ["DAPI"] and prepared.dropped == ["CD4"]
    np.testing.assert_array_equal(prepared.matrix, x[:, [0, 3]])
    np.testing.assert_array_equal(adata.obs["tech_DAPI"].to_numpy(), x[:, 1])
    assert {d.code for d in prepared.diagnostics} == {"CTR511", "CTR512"}


def test_prepare_never_overwrites_existing_obs_column():
    x = np.random.default_rng(0).random((5, 2)).astype(np.float32)
    adata = _adata(x, ["CD3", "DAPI"])
    adata.obs["tech_DAPI"] = "mine"
    prepare_for_clustering(adata, adata.X)
    assert (adata.obs["tech_DAPI"] == "mine").all()


def test_prepare_keeps_sparse_sparse():
    x = sp.random(100, 5, density=0.3, format="csr", dtype=np.float64, random_state=1)
    adata = _adata(x, ["CD3", "CD4", "DNA2", "CD8", "CD19"])
    prepared = prepare_for_clustering(adata, adata.X)
    assert sp.issparse(prepared.matrix) and prepared.matrix.dtype == np.float32
    assert prepared.kept == ["CD3", "CD4", "CD8", "CD19"]
    np.testing.assert_allclose(prepared.matrix.toarray(), x.toarray()[:, [0, 1, 3, 4]], rtol=1e-6)


def test_prepare_fills_nan_with_marker_median_for_clustering_only():
    x = np.array([[1.0, 5.0], [np.nan, 6.0], [3.0, 7.0], [4.0, np.inf]], dtype=np.float32)
    adata = _adata(x, ["a", "b"])
    prepared = prepare_for_clustering(adata, adata.X)
    np.testing.assert_array_equal(prepared.matrix, [[1, 5], [3, 6], [3, 7], [4, 6]])
    assert np.isnan(adata.X[1, 0])
    assert "CTR514" in {d.code for d in prepared.diagnostics}


def test_prepare_nothing_left_is_an_error():
    adata = _adata(np.ones((4, 2), dtype=np.float32), ["CD3", "DAPI"])
    with pytest.raises(InputError, match="no marker left to cluster on"):
        prepare_for_clustering(adata, adata.X)


def test_technical_markers_option():
    from ctr.data.preprocess import split_technical_markers
    from ctr.pipeline import technical_patterns

    names = ["CD3", "DAPI", "Ir191", "NuclearDye", "CD8"]
    assert split_technical_markers(names, technical_patterns(None))[1] == ["DAPI", "Ir191"]
    assert split_technical_markers(names, technical_patterns("nucleardye, cd8"))[1] == ["NuclearDye", "CD8"]
    assert split_technical_markers(names, technical_patterns("none"))[1] == []


def test_normalize_total_then_log1p_scales_every_cell_to_the_target():
    import scipy.sparse as sp

    from ctr.data.preprocess import normalize_log1p

    counts = np.array([[1, 3, 0], [10, 0, 30], [0, 0, 0]], dtype=np.int64)
    for matrix in (counts, sp.csr_matrix(counts)):
        out = normalize_log1p(matrix, "total:100")
        dense = out.toarray() if sp.issparse(out) else out
        assert sp.issparse(out) == sp.issparse(matrix)
        np.testing.assert_allclose(np.expm1(dense).sum(axis=1), [100, 100, 0], rtol=1e-5)
    np.testing.assert_allclose(np.expm1(normalize_log1p(counts, "total"))[0], [2500, 7500, 0], rtol=1e-5)


@pytest.mark.parametrize("spec", ["totl", "total:-5", "total:abc", "cpm"])
def test_normalize_rejects_unknown_forms(spec):
    from ctr.data.preprocess import normalize_target

    with pytest.raises(ParameterError, match="total:TARGET"):
        normalize_target(spec)


def test_gene_dna2_in_a_transcriptome_is_not_a_technical_channel():
    genes = [f"GENE{i}" for i in range(600)] + ["DNA2", "DAPI"]
    kept, moved = split_technical_markers(genes)
    assert "DNA2" in kept and moved == ["DAPI"]
    # with its partner channel, or in a small (cytometry) panel, DNA2 is the DNA intercalator
    assert "DNA2" in split_technical_markers(genes + ["DNA1"])[1]
    assert "DNA2" in split_technical_markers(["CD3", "CD4", "DNA2"])[1]


def test_left_out_markers_are_listed_briefly():
    x = np.ones((20, 2003), dtype=np.float32)
    x[:, :3] = np.random.default_rng(0).normal(size=(20, 3))
    names = ["A", "B", "C"] + [f"FLATGENE{i}" for i in range(2000)]
    prepared = prepare_for_clustering(_adata(x, names), x)
    message = next(d.message for d in prepared.diagnostics if d.code == "CTR512")
    assert len(message) < 400 and "(+1990 more)" in message
