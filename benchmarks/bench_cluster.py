"""Clustering at scale: ctr's ``cluster_cells`` against scanpy's own steps, on synthetic data.

    python benchmarks/bench_cluster.py                                   # 100k and 1M cells x 30 markers
    python benchmarks/bench_cluster.py --sizes 100000 --scanpy           # also scanpy, and the ARI between
    python benchmarks/bench_cluster.py --sizes 100000 --source /tmp/ctr-before   # also another checkout

Each run is a fresh process (its peak RSS is its own; numba compilation included, so a first
run after installing is slower). Per run one row: wall time per stage (scale, PCA, neighbours,
Leiden, UMAP when asked), total, peak resident memory, clusters found and the adjusted Rand index
against the synthetic truth; with ``--scanpy`` or ``--source`` the ARI of each clustering against
ctr's. scanpy's steps are ``pp.scale(max_value=10)``, ``pp.pca``, ``pp.neighbors`` (its own
pynndescent settings; the transformer is wrapped to return a ``csr_matrix``, as scanpy 1.11 fails
on pynndescent's ``csr_array`` with scipy 1.17) and ``tl.leiden(flavor="igraph", n_iterations=2)``,
the settings scanpy recommends. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_PCS = 30
NEIGHBORS_K = 15


def synthetic(n_cells: int, n_markers: int, n_types: int = 12, seed: int = 0):
    """Cell types with 3-5 positive markers each, log-normal-ish background, ~1% all-zero cells."""
    import numpy as np

    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, size=n_cells)
    positive = np.zeros((n_types, n_markers), dtype=bool)
    for t in range(n_types):
        positive[t, rng.choice(n_markers, size=rng.integers(3, 6), replace=False)] = True
    x = rng.exponential(0.3, size=(n_cells, n_markers)).astype(np.float32)
    x += positive[types] * rng.normal(3.0, 0.5, size=(n_cells, n_markers)).astype(np.float32)
    x[rng.random(n_cells) < 0.01] = 0.0
    return np.clip(x, 0, None), types


def cluster_with_ctr(x, seed: int, umap: bool):
    from ctr.data.cluster import cluster_cells

    result = cluster_cells(x, n_pcs=N_PCS, neighbors_k=NEIGHBORS_K, random_seed=seed, use_gpu=False,
                           compute_umap=umap)
    return result.labels, result.timings


def cluster_with_scanpy(x, seed: int, umap: bool):
    import anndata as ad
    import numpy as np
    import scanpy as sc
    import scipy.sparse as sp
    from pynndescent import PyNNDescentTransformer

    class CsrTransformer(PyNNDescentTransformer):
        """pynndescent's transformer with a csr_matrix result (scanpy 1.11 calls .getnnz on it)."""

        def fit_transform(self, X, y=None, **kwargs):
            return sp.csr_matrix(super().fit_transform(X, y, **kwargs))

        def transform(self, X):
            return sp.csr_matrix(super().transform(X))

    timings = {}
    adata = ad.AnnData(x.copy())
    t0 = time.perf_counter()
    sc.pp.scale(adata, max_value=10)
    timings["scale"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sc.pp.pca(adata, n_comps=min(N_PCS, x.shape[1] - 1), random_state=seed)
    timings["pca"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = adata.n_obs
    transformer = None
    if n >= 4096:  # scanpy's own choice and settings for its pynndescent step (its default transformer)
        transformer = CsrTransformer(n_neighbors=NEIGHBORS_K, metric="euclidean", random_state=seed,
                                     n_trees=min(64, 5 + round(n ** 0.5 / 20.0)), n_iters=max(5, round(np.log2(n))))
    sc.pp.neighbors(adata, n_neighbors=NEIGHBORS_K, random_state=seed, transformer=transformer)
    timings["neighbors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    timings["leiden"] = time.perf_counter() - t0
    if umap:
        t0 = time.perf_counter()
        sc.tl.umap(adata, random_state=seed)
        timings["umap"] = time.perf_counter() - t0
    return adata.obs["leiden"].astype(str).to_numpy(), timings


def run_one(n_cells: int, n_markers: int, tool: str, umap: bool, seed: int, labels_out: str) -> None:
    import numpy as np

    x, _ = synthetic(n_cells, n_markers, seed=seed)
    t0 = time.perf_counter()
    labels, timings = (cluster_with_scanpy if tool == "scanpy" else cluster_with_ctr)(x, seed, umap)
    wall = time.perf_counter() - t0
    np.save(labels_out, np.asarray(labels, dtype=str))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mib": peak_mib, "timings": timings}), flush=True)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def compare(n: int, args, tools: list[tuple[str, str, str | None]]) -> None:
    """Run each (name, tool, source) on the same n cells and print one row per run."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    # the truth is made after the runs: a child's ru_maxrss starts from what its parent held when
    # it was forked, so a parent holding the cells would add them to every child's peak
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, tool, source in tools:
            out = str(Path(tmp) / f"{name}.npy")
            cmd = [sys.executable, __file__, "--single", str(n), "--tool", tool, "--labels-out", out,
                   "--markers", str(args.markers), "--seed", str(args.seed)] + ["--umap"] * args.umap
            env = dict(os.environ)
            if source:
                env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
            load = _load()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            figures = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not figures:
                print(f"{n:>10,}  {name:<10} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}", flush=True)
                continue
            runs.append((name, json.loads(figures[-1]), np.load(out), load))
    _, truth = synthetic(n, args.markers, seed=args.seed)
    reference = None
    for name, row, labels, load in runs:
        reference = labels if reference is None else reference
        stages = "  ".join(f"{k} {v:6.1f}" for k, v in row["timings"].items())
        print(f"{n:>10,}  {name:<10} total {row['wall']:7.1f} s  [{stages}]  peak {row['peak_mib']:6.0f} MiB  "
              f"clusters {len(set(labels)):>4}  ARI truth {adjusted_rand_score(truth, labels):.3f}  "
              f"ARI vs ctr {adjusted_rand_score(reference, labels):.3f}  load {load}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="numbers of cells")
    parser.add_argument("--markers", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--umap", action="store_true", help="also compute the UMAP embedding")
    parser.add_argument("--scanpy", action="store_true", help="also cluster with scanpy's own steps")
    parser.add_argument("--source", metavar="DIR", help="also run the ctr of another checkout (e.g. a worktree "
                        "of the previous commit), imported from DIR")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tool", default="ctr", help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single is not None:
        run_one(args.single, args.markers, args.tool, args.umap, args.seed, args.labels_out)
        return
    tools = [("ctr", "ctr", None)]
    if args.source:
        tools.append(("ctr@source", "ctr", str(Path(args.source).resolve())))
    if args.scanpy:
        tools.append(("scanpy", "scanpy", None))
    print(f"clustering {args.markers} markers, PCA {N_PCS}, k {NEIGHBORS_K}, seconds per stage; load = 1-min load "
          f"average at the start (this machine has {os.cpu_count()} cores)", flush=True)
    for n in args.sizes:
        compare(n, args, tools)


if __name__ == "__main__":
    main()
