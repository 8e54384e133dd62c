"""Shared fixtures: small real data written once per session, and the shared/ data folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

warnings.filterwarnings("ignore", category=FutureWarning)


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test when the folder is not there."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is absent)")
    return path


@pytest.fixture(scope="session")
def pbmc_h5ad(tmp_path_factory) -> Path:
    """scanpy's pbmc68k_reduced with log-normalised genes as X and the louvain clusters."""
    import scanpy as sc

    from ctr.pipeline import demo_adata

    adata = demo_adata()
    adata.obs["louvain"] = sc.datasets.pbmc68k_reduced().obs["louvain"].to_numpy()
    path = tmp_path_factory.mktemp("pbmc") / "pbmc.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Path:
    """A run directory of the real engine on ``real_run.real_adata()`` (tissue profile fallopian_tube)."""
    from real_run import write_real_run

    return write_real_run(tmp_path_factory.mktemp("real") / "run", tissue="fallopian_tube")


@pytest.fixture(scope="session")
def real_run_lower_coverage(tmp_path_factory) -> Path:
    """``real_run`` with level-0 min_coverage 0.4 given on the command line (0.6 in the ruleset)."""
    from real_run import write_real_run

    return write_real_run(tmp_path_factory.mktemp("real_v2") / "run", tissue="fallopian_tube",
                          gating_params={"level_defaults": {"0": {"min_coverage": 0.4}}})
