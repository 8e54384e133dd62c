"""Wall time per stage and peak memory of the whole `ctr annotate --annotation-only` command.

Usage: python benchmarks/bench_command.py [--cells 100000 1000000] [--markers 40] [--clusters 200]
                                          [--types 20] [--data DIR] [--no-report] [--source DIR]
                                          [--repeat N]

For each size it writes (once; reused from --data) a synthetic clustered .h5ad (float32, dense,
clusters given in obs "cluster") and a ruleset of --types cell types, runs

    ctr annotate DATA.h5ad --ruleset synthetic.ctr --annotation-only --cluster-key cluster
                 --skip-refinement --output-dir RUN --force

in a child process, and prints one row per size: the stages of the run's timings.json (read,
annotate, write, report), the whole command's wall time (interpreter start included) and the
child's peak resident memory, next to the size of the expression matrix. The peak is the child's
own ``ru_maxrss`` (``os.wait4``); the baseline beside it is the same of a child that only starts
the interpreter and imports what the command imports (``ctr.cli``, ``ctr.pipeline``, anndata,
polars, ``ctr.report.html``), and "x matrix" is (peak - baseline) / matrix size: the command's
own memory as a multiple of the float32 matrix. ``--source DIR`` runs the
ctr of another checkout (for example a worktree of the previous commit) for a before/after pair.
``--repeat N`` runs each size N times and keeps the run with the shortest wall time (the others
were slowed by something else on the machine); every row shows the 1-minute load average when
that run started, since on a shared machine it says more about a figure than anything else.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("read", "annotate", "write", "report")


def run_command(h5ad: Path, ruleset: Path, out: Path, report: bool, source: Path | None = None,
                extra: Sequence[str] = ()) -> tuple[float, float, dict]:
    """Run the command once (``extra``: more options); (wall seconds, peak RSS MiB, timings.json stages)."""
    cmd = [sys.executable, "-m", "ctr", "annotate", str(h5ad), "--ruleset", str(ruleset), "--annotation-only",
           "--cluster-key", "cluster", "--skip-refinement", "--output-dir", str(out), "--force", *extra]
    if not report:
        cmd.append("--no-report")
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(source)) if source else None
    # `python -m` puts the working directory first on sys.path: run where no other ctr is found
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=source or out.parent)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory, not the largest so far
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode() if child.stderr else ""
    if child.returncode:
        raise SystemExit(f"ctr annotate failed ({child.returncode}):\n{err[-2000:]}")
    stages = json.loads((out / "timings.json").read_text())["stages"]
    stages["cpu"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, stages


BASELINE_IMPORTS = "import ctr.cli, ctr.pipeline, anndata, polars, ctr.report.html"


def baseline_memory(source: Path | None = None) -> float:
    """Peak resident memory (MiB) of a child that starts the interpreter and imports the
    command's libraries, nothing more: what every run pays before it reads a byte."""
    env = dict(os.environ, PYTHONPATH=str(source)) if source else None
    child = subprocess.Popen([sys.executable, "-c", BASELINE_IMPORTS], env=env, cwd=source or tempfile.gettempdir())
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"importing the command's libraries failed: {BASELINE_IMPORTS}")
    return usage.ru_maxrss / 1024


def generate(data: Path, n: int, markers: int, clusters: int, types: int) -> None:
    """Write the synthetic input in a child process. A child's ``ru_maxrss`` starts from what its
    parent held when it was forked, so a benchmark that built the matrix itself would report that
    matrix in every later child's peak."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from synthetic_h5ad import write; "
            f"write(__import__('pathlib').Path({str(data)!r}), {n}, {markers}, {clusters}, {types})")
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--markers", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--types", type=int, default=20)
    ap.add_argument("--data", type=Path, help="folder for the synthetic inputs (kept; default: a temporary folder)")
    ap.add_argument("--no-report", action="store_true", help="leave the report out (--no-report)")
    ap.add_argument("--source", type=Path, help="a ctr checkout to run instead of the installed one")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest is shown (default 1)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        print(f"ctr annotate --annotation-only --skip-refinement; {args.markers} markers, {args.clusters} clusters, "
              f"{args.types} cell types{', no report' if args.no_report else ''}"
              f"{f'; ctr from {args.source}' if args.source else ''}")
        baseline = baseline_memory(args.source)
        print("| cells | " + " | ".join(f"{s} s" for s in STAGES)
              + " | command s | CPU s | peak MiB | baseline MiB | matrix MiB | x matrix | load |")
        print("|---:|" + "---:|" * (len(STAGES) + 7))
        for n in args.cells:
            h5ad, ruleset = data / f"synthetic_{n}.h5ad", data / "synthetic.ctr"
            if not h5ad.is_file() or not ruleset.is_file():
                generate(data, n, args.markers, args.clusters, args.types)
            runs = []
            for _ in range(max(1, args.repeat)):
                load = os.getloadavg()[0]
                runs.append((*run_command(h5ad, ruleset, Path(tmp) / f"run_{n}", not args.no_report, args.source), load))
            wall, peak, stages, load = min(runs, key=lambda r: r[0])
            matrix = n * args.markers * 4 / 2**20
            cells = " | ".join(f"{stages[s]:.2f}" if s in stages else "-" for s in STAGES)
            print(f"| {n:,} | {cells} | {wall:.2f} | {stages['cpu']:.2f} | {peak:.0f} | {baseline:.0f} | {matrix:.0f} "
                  f"| {(peak - baseline) / matrix:.2f} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
