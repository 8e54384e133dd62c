"""Wall time and peak memory of ``ctr.data.cluster.cluster_cells`` on synthetic cytometry-like data.

    .venv/bin/python benchmarks/bench_cluster.py                  # 100k and 1M cells x 30 markers
    .venv/bin/python benchmarks/bench_cluster.py --sizes 20000 100000 --markers 40 --umap

Each size runs in a fresh process, so peak RSS is that size's own (compilation of pynndescent
and umap by numba is included in the first call and shown separately as 'warm-up' when --warmup).
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time


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


def run_one(n_cells: int, n_markers: int, use_gpu: bool | None, umap: bool, seed: int) -> None:
    from sklearn.metrics import adjusted_rand_score

    from ctr.data.cluster import cluster_cells

    x, truth = synthetic(n_cells, n_markers, seed=seed)
    t0 = time.perf_counter()
    result = cluster_cells(x, random_seed=seed, use_gpu=use_gpu, compute_umap=umap)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = "  ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    print(f"{n_cells:>9,} cells x {n_markers} markers  backend {result.backend}  wall {wall:7.1f} s  "
          f"peak RSS {peak_mib:7.0f} MiB  clusters {len(set(result.labels)):>3}  "
          f"ARI vs truth {adjusted_rand_score(truth, result.labels):.2f}  [{steps}]", flush=True)
    for warning in result.warnings:
        print(f"    warning: {warning}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="numbers of cells")
    parser.add_argument("--markers", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--umap", action="store_true", help="also compute the UMAP embedding")
    parser.add_argument("--no-gpu", action="store_true", help="CPU only (default: GPU when available)")
    parser.add_argument("--warmup", action="store_true", help="cluster 60k cells first, untimed (numba compilation)")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_gpu = False if args.no_gpu else None
    if args.single is not None:
        if args.warmup:
            from ctr.data.cluster import cluster_cells

            cluster_cells(synthetic(60_000, args.markers)[0], use_gpu=use_gpu, compute_umap=args.umap)
        run_one(args.single, args.markers, use_gpu, args.umap, args.seed)
        return
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--single", str(n), "--markers", str(args.markers), "--seed", str(args.seed)]
        cmd += ["--umap"] * args.umap + ["--no-gpu"] * args.no_gpu + ["--warmup"] * args.warmup
        subprocess.run(cmd, check=False)


if __name__ == "__main__":
    main()
