"""Speed and memory of statistics + annotation (no clustering) on synthetic data.

Usage: python benchmarks/bench_annotate.py [--cells 100000 1000000] [--markers 30] [--clusters 60] [--sparse]
                                           [--labels text|categorical]
Prints one line per size: wall seconds for statistics and for the engine, the CPU seconds of
both (every thread: the figure other work on a shared machine stretches least), and peak RSS.
``--labels``: the cluster labels as an array of text (the default, one string per cell) or as a
categorical, as anndata reads a cluster column from an .h5ad and as ``ctr annotate`` passes them.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def synthetic(n_cells: int, n_markers: int, n_clusters: int, sparse: bool, seed: int = 0, labels: str = "text"):
    from synthetic_h5ad import synthetic_matrix  # this folder is on sys.path when run as a script

    base, clusters = synthetic_matrix(n_cells, n_markers, n_clusters, seed)
    if sparse:
        import scipy.sparse as sp

        base = sp.csr_matrix(base)
    if labels == "categorical":
        import pandas as pd

        return base, pd.Categorical.from_codes(clusters, categories=[str(k) for k in range(n_clusters)])
    return base, clusters.astype(str)


def synthetic_ruleset(markers: list[str]):
    from ctr.lang import compile_ruleset

    lines = ["ruleset bench"]
    for i in range(0, len(markers) - 3, 3):
        lines.append(f'type "Type {i}" {{ markers {markers[i]}, {markers[i + 1]}, {markers[i + 2]}  anti {markers[i + 3]}')
        lines.append(f'  type "Sub {i}a" {{ markers {markers[i]} }}  type "Sub {i}b" {{ markers {markers[i + 1]} }} }}')
    return compile_ruleset("bench.ctr", text="\n".join(lines)).ruleset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cells", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--markers", type=int, default=30)
    ap.add_argument("--clusters", type=int, default=60)
    ap.add_argument("--sparse", action="store_true")
    ap.add_argument("--labels", choices=("text", "categorical"), default="text")
    args = ap.parse_args()

    from ctr.engine import annotate_clusters
    from ctr.rules.params import resolve_params
    from ctr.stats import compute_statistics

    markers = [f"M{i}" for i in range(args.markers)]
    ruleset = synthetic_ruleset(markers)
    params = resolve_params([])
    mapping = {m: m for m in markers}
    for n in args.cells:
        matrix, clusters = synthetic(n, args.markers, args.clusters, args.sparse, labels=args.labels)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = compute_statistics(matrix, clusters, markers, params.scoring)
        t1 = time.perf_counter()
        annotate_clusters(stats, ruleset, mapping, params, cell_matrix=matrix, cell_clusters=clusters)
        t2, c2 = time.perf_counter(), time.process_time()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"cells={n:>9} markers={args.markers} clusters={args.clusters} sparse={args.sparse} labels={args.labels}: "
              f"statistics {t1 - t0:6.2f} s, engine {t2 - t1:6.2f} s, CPU {c2 - c0:6.2f} s, peak RSS {peak:7.0f} MiB",
              flush=True)


if __name__ == "__main__":
    main()
