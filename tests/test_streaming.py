"""Out-of-core statistics on Dask: the same statistics contract from partial aggregates per chunk,
within the documented bounds of the exact in-memory ones, and the same labels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ctr.engine.annotate import annotate_clusters
from ctr.lang import load_ruleset
from ctr.rules.markers import resolve_markers
from ctr.rules.params import ScoringParams, resolve_params
from ctr.stats import compute_statistics

da = pytest.importorskip("dask.array")
from ctr.stats.streaming import BINS, FINE_BINS  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def synthetic():
    spec = importlib.util.spec_from_file_location("synthetic_h5ad", BENCH / "synthetic_h5ad.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cells(synthetic):
    x, clusters = synthetic.synthetic_matrix(30_000, 16, 40, seed=3)
    x[:50, 2] = np.nan  # missing values count in n_nan and are never positive
    x[60, 3] = np.inf
    x[np.arange(len(x)) % 3 > 0, 5] = 0.0  # two thirds at the floor: medians at the floor
    return x, clusters.astype(str), [f"M{i}" for i in range(16)]


def _both(cells, chunks=(4_000, 16), scoring=None, thresholds=None):
    x, clusters, markers = cells
    scoring = scoring or ScoringParams()
    exact = compute_statistics(x, clusters, markers, scoring, thresholds)
    streamed = compute_statistics(da.from_array(x, chunks=chunks), clusters, markers, scoring, thresholds)
    return exact, streamed


def _column(stats, name):
    return stats.cluster[name].cast(pl.Float64).to_numpy()


def test_counts_means_and_positive_fractions_are_exact(cells):
    exact, streamed = _both(cells)
    assert exact.cluster.select("cluster", "marker").equals(streamed.cluster.select("cluster", "marker"))
    assert exact.clusters.equals(streamed.clusters)
    for name in ("n_cells", "n_nan"):
        assert np.array_equal(_column(exact, name), _column(streamed, name))
    np.testing.assert_allclose(_column(streamed, "mean"), _column(exact, "mean"), rtol=1e-12)
    g_exact, g_streamed = exact.global_, streamed.global_
    for name in ("n_nonzero", "n_nan", "flat", "threshold_method", "threshold_source", "threshold_op"):
        assert g_exact[name].to_list() == g_streamed[name].to_list(), name
    np.testing.assert_allclose(g_streamed["global_std"].to_numpy(), g_exact["global_std"].to_numpy(), rtol=1e-10)
    # pos_frac is counted exactly against the split found; the split itself is within a fine bin,
    # so only cells between the two cuts may count differently
    x = cells[0]
    span = np.nanmax(np.where(np.isinf(x), np.nan, x), axis=0) - np.nanmin(x, axis=0)
    cut_gap = np.abs(g_streamed["threshold"].to_numpy() - g_exact["threshold"].to_numpy())
    assert (cut_gap <= 1e-3 * span).all()
    assert np.nanmax(np.abs(_column(streamed, "pos_frac") - _column(exact, "pos_frac"))) < 0.01


def test_medians_within_one_bin_and_z_close(cells):
    exact, streamed = _both(cells)
    x = np.where(np.isinf(cells[0]), np.nan, cells[0])
    width = (np.nanmax(x, axis=0) - np.nanmin(x, axis=0)) / BINS
    per_row = np.tile(width, len(exact.clusters))
    gap = np.abs(_column(streamed, "median") - _column(exact, "median"))
    assert (gap <= per_row + 1e-12).all()
    assert (gap > 0).any()  # binned, not a copy of the exact path
    # the floor (the zeros of dropouts) is a bin of its own: a median at the floor is exact
    at_floor = _column(exact, "median") == 0
    assert at_floor.any() and (_column(streamed, "median")[at_floor] == 0).all()
    z_exact, z_streamed = _column(exact, "de_z"), _column(streamed, "de_z")
    assert np.max(np.abs(z_streamed - z_exact)) <= 0.01 * np.max(np.abs(z_exact))
    assert np.array_equal(np.sign(z_streamed), np.sign(z_exact))


def test_chunking_does_not_change_the_statistics(cells):
    _, a = _both(cells, chunks=(30_000, 16))
    _, b = _both(cells, chunks=(1_234, 5))
    sums = ["mean", "enrichment"]  # sums of floats: the order of addition moves the last bits
    assert a.cluster.drop(sums).equals(b.cluster.drop(sums))
    for name in sums:
        np.testing.assert_allclose(_column(a, name), _column(b, name), rtol=1e-10)


def test_quantile_rule_and_absolute_thresholds(cells):
    scoring = ScoringParams(positivity="quantile")
    exact, streamed = _both(cells, scoring=scoring, thresholds={"M1": (">", 1.5)})
    row = streamed.global_.filter(pl.col("marker") == "M1").row(0, named=True)
    assert (row["threshold"], row["threshold_source"], row["threshold_op"]) == (1.5, "absolute", ">")
    m1 = (streamed.cluster["marker"] == "M1").to_numpy()
    np.testing.assert_array_equal(_column(streamed, "pos_frac")[m1], _column(exact, "pos_frac")[m1])
    assert np.nanmax(np.abs(_column(streamed, "pos_frac") - _column(exact, "pos_frac"))) < 0.01


def test_engine_gives_the_same_labels(cells, synthetic, tmp_path):
    exact, streamed = _both(cells)
    (tmp_path / "synthetic.ctr").write_text(synthetic.synthetic_ruleset_text(cells[2], 10))
    ruleset = load_ruleset(str(tmp_path / "synthetic.ctr"))
    mapping = resolve_markers(ruleset, cells[2]).mapping
    params = resolve_params([("ruleset", {"scoring": ruleset.scoring, "gating": ruleset.gating})])
    a = annotate_clusters(exact, ruleset, mapping, params).clusters
    b = annotate_clusters(streamed, ruleset, mapping, params).clusters
    assert a["final_annotation"].nunique() > 3  # the test data gives the engine something to decide
    assert a["final_annotation"].tolist() == b["final_annotation"].tolist()


# ---- the command: a chunked .zarr store, on a local dask.distributed cluster ----------------------


@pytest.fixture(scope="module")
def stores(cells, synthetic, tmp_path_factory):
    """The same cells as an .h5ad (read into memory) and as a .zarr store in chunks of 4,000 rows."""
    import anndata as ad
    import pandas as pd

    x, clusters, markers = cells
    folder = tmp_path_factory.mktemp("out_of_core")
    adata = ad.AnnData(X=x, obs=pd.DataFrame({"cluster": pd.Categorical(clusters)}, index=pd.RangeIndex(len(x)).astype(str)),
                       var=pd.DataFrame(index=markers))
    adata.write_h5ad(folder / "cells.h5ad")
    with ad.settings.override(zarr_write_format=3):  # the coming default of anndata
        adata.write_zarr(folder / "cells.zarr", chunks=(4_000, len(markers)))
    (folder / "synthetic.ctr").write_text(synthetic.synthetic_ruleset_text(markers, 10))
    return folder


@pytest.fixture(scope="module")
def local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster


def _annotate(folder, source, out, *extra):
    from ctr.cli import main

    return main(["annotate", str(folder / source), "--ruleset", str(folder / "synthetic.ctr"), "--annotation-only",
                 "--cluster-key", "cluster", "--skip-refinement", "--no-report", "--output-dir", str(out), *extra])


@pytest.fixture(scope="module")
def in_memory(stores, tmp_path_factory):
    """The exact path's run over the .h5ad read into memory."""
    out = tmp_path_factory.mktemp("memory") / "run"
    assert _annotate(stores, "cells.h5ad", out) == 0
    return out


def _labels(run) -> tuple[list[str], list[str]]:
    """Each cluster's label and each cell's, as written."""
    import anndata as ad
    import pandas as pd

    clusters = pd.read_csv(run / "cluster_annotations.csv")["final_annotation"].tolist()
    return clusters, ad.read_h5ad(run / "output.h5ad", backed="r").obs["ctr_label"].astype(str).tolist()


def test_dask_cluster_over_zarr_gives_the_in_memory_labels(stores, in_memory, local_cluster, tmp_path, capsys):
    import anndata as ad

    capsys.readouterr()
    assert _annotate(stores, "cells.zarr", tmp_path / "dask", "--dask-scheduler", local_cluster.scheduler_address) == 0
    assert "read out of core (a .zarr store, on the Dask cluster at tcp://" in capsys.readouterr().out
    memory, streamed = _labels(in_memory), _labels(tmp_path / "dask")
    assert len(set(memory[0])) > 3  # the engine had something to decide
    assert memory == streamed
    # the cells themselves travel into output.h5ad, as from the in-memory path
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "dask" / "output.h5ad").X, ad.read_h5ad(stores / "cells.h5ad").X)


def test_backed_h5ad_on_threads_gives_the_same_labels(stores, in_memory, tmp_path):
    assert _annotate(stores, "cells.h5ad", tmp_path / "backed", "--backed") == 0
    assert _labels(in_memory) == _labels(tmp_path / "backed")


@pytest.mark.parametrize("extra, expected", [
    (["--dask-scheduler", "no-port"], "--dask-scheduler 'no-port' is not a scheduler address"),
    (["--dask-scheduler", "tcp://127.0.0.1:9"], "--dask-scheduler tcp://127.0.0.1:9: cannot reach the scheduler"),
    (["--cluster-key", "nope"], "cluster key 'nope' is not an obs column; columns that look like cluster labels: cluster"),
    (["--unit", "cell"], "--unit cell is not supported on input read out of core"),
])
def test_input_errors_are_messages(stores, tmp_path, capsys, extra, expected):
    code = _annotate(stores, "cells.zarr", tmp_path / "run", *extra)
    err = capsys.readouterr().err
    assert code != 0 and expected in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_out_of_core_needs_given_clusters_and_no_refinement(stores, tmp_path, capsys):
    from ctr.cli import main

    code = main(["annotate", str(stores / "cells.zarr"), "--ruleset", str(stores / "synthetic.ctr"), "--output-dir",
                 str(tmp_path / "a")])
    assert code != 0 and "pass --annotation-only --cluster-key COLUMN" in capsys.readouterr().err
    code = main(["annotate", str(stores / "cells.zarr"), "--ruleset", str(stores / "synthetic.ctr"), "--annotation-only",
                 "--cluster-key", "cluster", "--output-dir", str(tmp_path / "b")])
    assert code != 0 and "pass --skip-refinement" in capsys.readouterr().err


def test_sparse_backed_h5ad_is_read_in_chunks_of_rows(tmp_path):
    """A CSR matrix stays sparse on disk; each chunk of rows is densified on its own."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from ctr.data.anndata_io import read_input_lazy
    from ctr.data.checks import count_values, value_profile

    x = sp.random(6_000, 12, density=0.3, format="csr", dtype=np.float32, random_state=1)
    clusters = np.random.default_rng(1).integers(0, 6, 6_000).astype(str)
    obs = pd.DataFrame({"cluster": pd.Categorical(clusters)}, index=pd.RangeIndex(6_000).astype(str))
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(12)])).write_h5ad(tmp_path / "sparse.h5ad")
    lazy = read_input_lazy(tmp_path / "sparse.h5ad").X[:, [2, 5, 7]]
    assert value_profile(count_values(lazy)) == value_profile(count_values(x[:, [2, 5, 7]]))
    exact = compute_statistics(x[:, [2, 5, 7]], clusters, ["g2", "g5", "g7"], ScoringParams())
    streamed = compute_statistics(lazy, clusters, ["g2", "g5", "g7"], ScoringParams())
    assert np.array_equal(_column(streamed, "n_cells"), _column(exact, "n_cells"))
    np.testing.assert_allclose(_column(streamed, "mean"), _column(exact, "mean"), rtol=1e-12)
    gap = np.abs(streamed.global_["threshold"].to_numpy() - exact.global_["threshold"].to_numpy())
    assert (gap <= 1e-3 * x.max()).all()  # the split found on values moved by a fine bin: pos_frac all but equal
    assert np.max(np.abs(_column(streamed, "pos_frac") - _column(exact, "pos_frac"))) < 0.005
