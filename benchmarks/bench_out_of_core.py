"""Wall time and peak memory of `ctr annotate --annotation-only` on .zarr stores read out of core.

Usage: python benchmarks/bench_out_of_core.py [--cells 1000000 3000000 10000000] [--markers 40]
                                              [--clusters 200] [--types 20] [--chunk 262144]
                                              [--data DIR] [--report] [--workers N]

For each size it writes (once; reused from --data) an AnnData .zarr store of that many cells in
chunks of --chunk rows (float32, the clusters in obs "cluster"), generated chunk by chunk so that
writing it never holds the matrix in memory, and a ruleset of --types cell types; then runs

    ctr annotate synthetic_N.zarr --ruleset synthetic.ctr --annotation-only --cluster-key cluster
                 --skip-refinement --no-report --output-dir RUN --force [--dask-scheduler ADDRESS]

in a child process and prints one row per size: the stages of the run's timings.json, the whole
command's wall time and CPU time (user + system, all threads) and the child's peak resident
memory, next to the size of the matrix.
``--workers N`` starts a dask.distributed LocalCluster of N single-threaded worker processes here
and passes its address (the workers' memory is then not in the child's peak). The data are those
of benchmarks/synthetic_h5ad.py, each chunk from its own seed. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_command import STAGES, run_command  # noqa: E402
from synthetic_h5ad import expression, synthetic_ruleset_text  # noqa: E402


def write_zarr(path: Path, n_cells: int, n_markers: int, n_clusters: int, chunk: int, seed: int = 0) -> None:
    """An AnnData .zarr store of synthetic cells, its matrix written chunk by chunk through dask."""
    import anndata as ad
    import dask
    import dask.array as da
    import pandas as pd

    profile = np.random.default_rng(seed).random((n_clusters, n_markers)) < 0.15
    starts = range(0, n_cells, chunk)
    clusters = [np.random.default_rng([seed, i, 0]).integers(0, n_clusters, min(chunk, n_cells - s))
                for i, s in enumerate(starts)]

    def block(i: int) -> np.ndarray:
        return expression(np.random.default_rng([seed, i, 1]), clusters[i], profile)

    x = da.concatenate([da.from_delayed(dask.delayed(block)(i), (len(c), n_markers), np.float32)
                        for i, c in enumerate(clusters)])
    codes = np.concatenate(clusters)
    obs = pd.DataFrame({"cluster": pd.Categorical.from_codes(codes, [str(k) for k in range(n_clusters)])},
                       index=pd.RangeIndex(n_cells).astype(str))
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"M{i}" for i in range(n_markers)]))
    with ad.settings.override(zarr_write_format=3), dask.config.set(scheduler="threads"):
        adata.write_zarr(path, chunks=(chunk, n_markers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    ap.add_argument("--markers", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--types", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=1 << 18, help="rows per chunk of the store (default 262144)")
    ap.add_argument("--data", type=Path, help="folder for the synthetic stores (kept; default: a temporary folder)")
    ap.add_argument("--report", action="store_true", help="write report.html too")
    ap.add_argument("--workers", type=int, default=0, help="run on a LocalCluster of this many worker processes")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        ruleset = data / "synthetic.ctr"
        ruleset.write_text(synthetic_ruleset_text([f"M{i}" for i in range(args.markers)], args.types))
        extra: list[str] = []
        cluster = None
        if args.workers:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None)
            extra = ["--dask-scheduler", cluster.scheduler_address]
        where = f"LocalCluster of {args.workers} workers" if args.workers else "Dask threads"
        print(f"ctr annotate --annotation-only --skip-refinement on .zarr (out of core, {where}); {args.markers} markers, "
              f"{args.clusters} clusters, {args.types} cell types, chunks of {args.chunk} rows")
        print("| cells | " + " | ".join(f"{s} s" for s in STAGES) + " | command s | CPU s | peak MiB | matrix MiB |")
        print("|---:|" + "---:|" * (len(STAGES) + 4))
        try:
            for n in args.cells:
                store = data / f"synthetic_{n}.zarr"
                if not store.is_dir():
                    write_zarr(store, n, args.markers, args.clusters, args.chunk)
                wall, peak, stages = run_command(store, ruleset, Path(tmp) / f"run_{n}", args.report, extra=extra)
                cells = " | ".join(f"{stages[s]:.2f}" if s in stages else "-" for s in STAGES)
                print(f"| {n:,} | {cells} | {wall:.2f} | {stages['cpu']:.1f} | {peak:.0f} | "
                      f"{n * args.markers * 4 / 2**20:.0f} |", flush=True)
        finally:
            if cluster is not None:
                cluster.close()


if __name__ == "__main__":
    main()
