"""Wall time of `ctr demo` end to end (read, cluster, annotate, refine, write, report)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    from ctr.pipeline import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_demo(str(Path(tmp) / "demo"))
        took = time.perf_counter() - t0
        stages = json.loads((Path(tmp) / "demo" / "timings.json").read_text())["stages"]
    print(f"ctr demo: {took:.1f} s total; stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
