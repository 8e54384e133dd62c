"""Cost of linting and parameter resolution on hostile sizes: must grow linearly with the input.

Usage: python benchmarks/bench_lint.py [--markers 10000 100000] [--levels 1000 10000]
Prints one line per size: seconds for `ctr lint-ruleset --panel` on a ruleset whose one type lists
MARKERS markers (none of them in the panel, so every one gets a diagnostic and a suggestion search),
and seconds for annotating 60 cells with `--gating-params` holding LEVELS level keys.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def huge_ruleset(folder: Path, n_markers: int) -> Path:
    """One cell type whose `markers` line names ``n_markers`` markers (the panel has none of them)."""
    path = folder / f"huge{n_markers}.ctr"
    names = ", ".join(f"M{i}" for i in range(n_markers))
    path.write_text(f'ruleset huge\ntype "Many" {{\n  markers {names}\n}}\ntype "T" {{ markers CD3 }}\n')
    return path


def panel_file(folder: Path) -> Path:
    path = folder / "panel.txt"
    path.write_text("\n".join(["CD3", "CD19", "CD68", "MS4A1", "CD2"] + [f"P{i}" for i in range(40)]))
    return path


def level_params(n_levels: int) -> dict:
    return {"level_defaults": {str(i): {"min_coverage": 0.3} for i in range(n_levels)}}


def time_lint(n_markers: int) -> float:
    from ctr.ruleset_commands import lint_target

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ruleset, panel = huge_ruleset(folder, n_markers), panel_file(folder)
        t0 = time.perf_counter()
        report = lint_target(str(ruleset), str(panel))
        report.format_text()
        return time.perf_counter() - t0


def time_levels(n_levels: int) -> float:
    import anndata as ad
    import numpy as np
    import pandas as pd

    from ctr import api

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.3, (60, 3)).astype(np.float32)
    x[:30, 0] += 2
    adata = ad.AnnData(X=x, obs=pd.DataFrame({"cluster": ["0"] * 30 + ["1"] * 30}, index=[f"c{i}" for i in range(60)]),
                       var=pd.DataFrame(index=["CD3", "CD19", "CD68"]))
    from ctr.lang import compile_ruleset

    rules = compile_ruleset("r.ctr", text='type T { markers CD3 type T2 { markers CD3 } }\ntype B { markers CD19 }\n').ruleset
    t0 = time.perf_counter()
    api.annotate(adata, rules, cluster_key="cluster", gating_params=json.dumps(level_params(n_levels)), write_obs=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--levels", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    for n in args.markers:
        print(f"lint-ruleset --panel, one type with {n:>7} markers: {time_lint(n):6.2f} s", flush=True)
    for n in args.levels:
        print(f"annotate with {n:>6} gating level keys:           {time_levels(n):6.2f} s", flush=True)


if __name__ == "__main__":
    main()
