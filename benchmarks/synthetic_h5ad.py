"""Write a synthetic clustered .h5ad and a ruleset for timing the whole annotate command.

Usage: python benchmarks/synthetic_h5ad.py OUT_DIR [--cells 1000000] [--markers 40] [--clusters 200] [--types 20]
Writes OUT_DIR/synthetic_<cells>.h5ad (obs "cluster" given, dense float32 X) and OUT_DIR/synthetic.ctr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def synthetic_matrix(n_cells: int, n_markers: int, n_clusters: int, seed: int = 0):
    """A cells x markers float32 matrix with a block structure (each cluster expresses a few
    markers strongly, 40% dropouts) and the cluster of every cell (integers)."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, n_clusters, n_cells)
    profile = rng.random((n_clusters, n_markers)) < 0.15
    return expression(rng, clusters, profile), clusters


def expression(rng: np.random.Generator, clusters: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """The cells' values: background everywhere, the cluster's ``profile`` markers strongly, 40% dropouts."""
    n_cells, n_markers = len(clusters), profile.shape[1]
    x = rng.exponential(0.3, (n_cells, n_markers)).astype(np.float32)
    x += profile[clusters] * rng.normal(2.0, 0.5, (n_cells, n_markers)).astype(np.float32).clip(0)
    x[rng.random((n_cells, n_markers)) < 0.4] = 0.0
    return x


def synthetic_ruleset_text(markers: list[str], n_types: int) -> str:
    """A two-level ruleset of ``n_types`` cell types (half roots, half children) over ``markers``."""
    lines = ["ruleset bench"]
    n_roots = max(1, n_types // 2)
    for i in range(n_roots):
        m = [markers[(4 * i + k) % len(markers)] for k in range(4)]
        lines.append(f'type "Type {i}" {{ markers {m[0]}, {m[1]}, {m[2]}  anti {m[3]}')
        lines.append(f'  type "Sub {i}" {{ markers {m[0]}, {m[1]} }} }}')
    return "\n".join(lines) + "\n"


def write(out: Path, n_cells: int, n_markers: int, n_clusters: int, n_types: int) -> tuple[Path, Path]:
    import anndata as ad
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    markers = [f"M{i}" for i in range(n_markers)]
    x, clusters = synthetic_matrix(n_cells, n_markers, n_clusters)
    obs = pd.DataFrame({"cluster": pd.Categorical(clusters.astype(str))}, index=pd.RangeIndex(n_cells).astype(str))
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=markers))
    h5ad = out / f"synthetic_{n_cells}.h5ad"
    adata.write_h5ad(h5ad)
    ruleset = out / "synthetic.ctr"
    ruleset.write_text(synthetic_ruleset_text(markers, n_types))
    return h5ad, ruleset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--markers", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--types", type=int, default=20)
    args = ap.parse_args()
    for path in write(args.out, args.cells, args.markers, args.clusters, args.types):
        print(path)


if __name__ == "__main__":
    main()
