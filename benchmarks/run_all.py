"""Run every benchmark and print the figures (no assertions): per size and stage, wall time and peak
memory; clustering also against scanpy's own steps; with --previous, against another checkout.

Usage: python benchmarks/run_all.py [--quick] [--sizes N ...] [--previous DIR]

  --sizes      numbers of cells (default 100000 1000000; add 10000000 for the 10^7 rows: annotation
               only, clustering is capped at --cluster-max)
  --previous   a checkout of the previous commit (``git worktree add /tmp/ctr-before HEAD~1``): the
               annotate command and clustering run with its ctr too, side by side
  --cluster-max  largest size clustered (default 1000000: at 10^7 cells the kNN search alone needs
               more memory and hours than a 2-core, 23 GB machine has; docs/performance.md)
  --quick      small sizes only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--previous", metavar="DIR")
    parser.add_argument("--cluster-max", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else args.sizes
    cells = [str(n) for n in sizes]
    clustered = [str(n) for n in sizes if n <= args.cluster_max]
    source = ["--source", args.previous] if args.previous else []
    runs = [
        ["bench_command.py", "--cells", *cells],
        ["bench_command.py", "--cells", *cells, *source] if source else None,  # bench_command runs one ctr
        ["bench_annotate.py", "--cells", *cells],
        ["bench_annotate.py", "--sparse", "--cells", *cells],
        ["bench_cluster.py", "--scanpy", "--sizes", *clustered, *source] if clustered else None,
        ["bench_demo.py"],
        ["bench_lint.py"] + (["--markers", "10000", "--levels", "1000"] if args.quick else []),
    ]
    for run in runs:
        if run is None or not (HERE / run[0]).exists():
            continue
        print(f"$ python benchmarks/{' '.join(run)}", flush=True)
        subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], check=False)
    skipped = [n for n in sizes if n > args.cluster_max]
    if skipped:
        print(f"clustering not run at {', '.join(f'{n:,}' for n in skipped)} cells (--cluster-max {args.cluster_max:,})")


if __name__ == "__main__":
    main()
