"""output.h5ad written as a copy of the input plus the run's obs columns and uns entry (the cell
names left on disk while annotating) reads back exactly as anndata's own writer would have made it,
and the input file is never changed."""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata.tests.helpers import assert_equal

from ctr.cli import main
from ctr.data.anndata_io import names_left_on_disk, read_input
from ctr.io.atomic import write_h5ad_atomic
from ctr.io.h5ad_copy import write_h5ad_over_copy

pytestmark = pytest.mark.filterwarnings("ignore")

MARKERS = ["CD3", "CD4", "CD8", "CD19", "CD14", "KI67"]
RULESET = """ruleset small
type "T cell" { markers CD3 anti CD19
  type "CD4 T" { markers CD4 anti CD8 }
  type "CD8 T" { markers CD8 anti CD4 } }
type "B cell" { markers CD19 anti CD3 }
type Monocyte { markers CD14 anti CD3 }
state Cycling { markers KI67 applies_to "T cell" }
"""


def rich_adata(n: int = 600, seed: int = 0) -> ad.AnnData:
    """Clustered cells with every kind of element an input may carry."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 6, n)
    profile = np.zeros((6, len(MARKERS)), dtype=np.float32)
    for c, on in enumerate([(0, 1), (0, 2), (3,), (4,), (0, 1, 5), ()]):
        profile[c, list(on)] = 3.0
    x = (profile[cluster] + rng.normal(0, 0.4, (n, len(MARKERS)))).clip(0).astype(np.float32)
    obs = pd.DataFrame({"cluster": pd.Categorical([f"c{c}" for c in cluster]),
                        "sample": pd.Categorical(rng.choice(["s1", "s2"], n)),
                        "area": rng.random(n), "note": np.array([f"n{i % 7}" for i in range(n)], dtype=object),
                        "count": rng.integers(0, 100, n)},
                       index=pd.Index([f"cell-{i:05d}" for i in range(n)], name="cell_id"))
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame({"channel": [f"ch{i}" for i in range(len(MARKERS))]},
                                                     index=MARKERS))
    adata.layers["counts"] = np.round(x * 10)
    adata.layers["sparse"] = sp.csr_matrix(x * (x > 1))
    adata.obsm["X_umap"] = rng.random((n, 2))
    adata.obsm["spatial"] = rng.random((n, 2)) * 1000
    adata.varm["loadings"] = rng.random((len(MARKERS), 3))
    adata.obsp["distances"] = sp.random(n, n, density=0.01, format="csr", random_state=seed)
    adata.uns["sample_colors"] = np.array(["#ff0000", "#00ff00"], dtype=object)
    adata.uns["meta"] = {"panel": "test", "version": 3, "thresholds": np.arange(3.0)}
    adata.raw = adata.copy()
    return adata


@pytest.fixture
def rich_h5ad(tmp_path):
    import h5py

    path = tmp_path / "input.h5ad"
    rich_adata().write_h5ad(path)
    with h5py.File(path, "r+") as f:  # an attribute anndata neither reads nor writes: kept only by a copy
        f["X"].attrs[COPY_MARK] = 1
    return path


COPY_MARK = "kept-by-a-copy"


def copied_from_input(path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return COPY_MARK in f["X"].attrs


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def change(adata) -> None:
    """What a run does to the AnnData: new obs columns, one replaced, an uns entry new and one replaced."""
    n = adata.n_obs
    adata.obs["ctr_label"] = pd.Categorical(np.where(np.arange(n) % 3, "T cell", "B cell"))
    adata.obs["ctr_confidence"] = np.linspace(0, 1, n)
    adata.obs["ctr_flag"] = np.arange(n) % 2 == 0
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(n) % 2, "s3", "s4"))
    adata.uns["ctr"] = {"version": "x", "obs_keys": ["ctr_label", "ctr_confidence"], "params": json.dumps({"a": 1}),
                        "ruleset": {"name": "r", "source_text": "type A { markers X }"}}
    adata.uns["meta"] = {"panel": "changed"}


CHANGED_OBS = ["ctr_label", "ctr_confidence", "ctr_flag", "sample"]
CHANGED_UNS = ["ctr", "meta"]


def test_the_copy_reads_back_as_anndatas_own_write(rich_h5ad, tmp_path):
    before = digest(rich_h5ad)
    lean, whole = read_input(rich_h5ad, cell_names=False), read_input(rich_h5ad)
    assert names_left_on_disk(lean) and not names_left_on_disk(whole)
    assert lean.n_obs == whole.n_obs and list(lean.obs.columns) == list(whole.obs.columns)
    assert np.array_equal(lean.X, whole.X)
    change(lean)
    change(whole)
    write_h5ad_over_copy(tmp_path / "copy.h5ad", rich_h5ad, lean, obs_columns=CHANGED_OBS, uns_keys=CHANGED_UNS)
    write_h5ad_atomic(tmp_path / "anndata.h5ad", whole)
    copied, written = ad.read_h5ad(tmp_path / "copy.h5ad"), ad.read_h5ad(tmp_path / "anndata.h5ad")
    assert copied_from_input(tmp_path / "copy.h5ad")
    assert_equal(copied, written, exact=True)  # X, obs with its index, var, layers, obsm, varm, obsp, uns, raw
    assert list(copied.obs_names[:2]) == ["cell-00000", "cell-00001"] and copied.obs_names.name == "cell_id"
    assert list(copied.obs.columns) == list(written.obs.columns)
    assert digest(rich_h5ad) == before  # the input is only read
    assert not list(tmp_path.glob(".*.tmp-*"))  # no temporary file left behind


def test_a_change_the_copy_would_lose_falls_back_to_anndatas_writer(rich_h5ad, tmp_path):
    lean, whole = read_input(rich_h5ad, cell_names=False), read_input(rich_h5ad)
    for adata in (lean, whole):
        change(adata)
        adata.obsm["X_new"] = np.ones((adata.n_obs, 2))  # not among the named elements
    write_h5ad_over_copy(tmp_path / "copy.h5ad", rich_h5ad, lean, obs_columns=CHANGED_OBS, uns_keys=CHANGED_UNS)
    write_h5ad_atomic(tmp_path / "anndata.h5ad", whole)
    copied = ad.read_h5ad(tmp_path / "copy.h5ad")
    assert "X_new" in copied.obsm
    assert_equal(copied, ad.read_h5ad(tmp_path / "anndata.h5ad"), exact=True)
    assert list(copied.obs_names[:1]) == ["cell-00000"]  # the names, read back from the input


def test_files_anndata_reads_whole_keep_their_names(tmp_path):
    """A data frame in obsm is indexed by the cell names: such a file is read with them."""
    adata = rich_adata(50)
    adata.obsm["table"] = pd.DataFrame({"a": np.arange(50)}, index=adata.obs_names)
    adata.write_h5ad(tmp_path / "framed.h5ad")
    read = read_input(tmp_path / "framed.h5ad", cell_names=False)
    assert not names_left_on_disk(read) and read.obs_names[0] == "cell-00000"


def annotate(source, out, *extra) -> None:
    assert main(["annotate", str(source), "--ruleset", str(out.parent / "small.ctr"), "--annotation-only",
                 "--cluster-key", "cluster", "--output-dir", str(out), "--no-report", *map(str, extra)]) == 0


def comparable(path) -> ad.AnnData:
    """output.h5ad without the moment it was made (the only thing two runs may differ in)."""
    adata = ad.read_h5ad(path)
    provenance = json.loads(adata.uns["ctr"]["provenance"])
    provenance.pop("created")
    adata.uns["ctr"]["provenance"] = json.dumps(provenance)
    return adata


@pytest.mark.parametrize("extra", [(), ("--unit", "cell")])
def test_annotate_writes_the_same_output_as_anndatas_writer(rich_h5ad, tmp_path, monkeypatch, extra):
    """The whole command, on an input and again on its own output (the earlier run's columns and
    uns entry replaced): output.h5ad as a copy equals what anndata's writer makes of the run."""
    import ctr.pipeline

    (tmp_path / "small.ctr").write_text(RULESET)
    before = digest(rich_h5ad)
    annotate(rich_h5ad, tmp_path / "copy", *extra)
    annotate(tmp_path / "copy" / "output.h5ad", tmp_path / "copy_again", *extra)
    with monkeypatch.context() as m:  # today's other path: the names read, anndata writes the file
        m.setattr(ctr.pipeline, "_copies_input", lambda opts: False)
        annotate(rich_h5ad, tmp_path / "whole", *extra)
        annotate(tmp_path / "whole" / "output.h5ad", tmp_path / "whole_again", *extra)
    assert digest(rich_h5ad) == before
    for copy, whole in (("copy", "whole"), ("copy_again", "whole_again")):
        assert copied_from_input(tmp_path / copy / "output.h5ad")
        assert not copied_from_input(tmp_path / whole / "output.h5ad")
        copied = comparable(tmp_path / copy / "output.h5ad")
        assert_equal(copied, comparable(tmp_path / whole / "output.h5ad"), exact=True)
        assert copied.obs_names.equals(rich_adata().obs_names)
        assert {"ctr_label", "ctr_state_Cycling", "ctr_states"} <= set(copied.obs.columns)
        assert copied.uns["meta"]["panel"] == "test" and "counts" in copied.layers and copied.raw is not None
