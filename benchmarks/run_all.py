"""Run every benchmark with its default sizes and print the figures (no assertions).

Usage: python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    quick = "--quick" in sys.argv
    runs = [
        ["bench_command.py", "--cells", "100000"] + ([] if quick else ["1000000"]),
        ["bench_annotate.py", "--cells", "100000"] + ([] if quick else ["1000000"]),
        ["bench_annotate.py", "--sparse", "--cells", "100000"] + ([] if quick else ["1000000"]),
        ["bench_cluster.py"] + (["--sizes", "20000"] if quick else []),
        ["bench_demo.py"],
        ["bench_lint.py"] + (["--markers", "10000", "--levels", "1000"] if quick else []),
    ]
    for args in runs:
        script = HERE / args[0]
        if not script.exists():
            continue
        print(f"$ python benchmarks/{' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(script), *args[1:]], check=False)


if __name__ == "__main__":
    main()
