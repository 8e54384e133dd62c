"""Stage progress and timings: a live line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Times named stages; ``timings`` (stage -> seconds) goes to the run directory."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"ctr: {message}", file=self.stream, flush=True)

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        label = f"{name}{f' ({detail})' if detail else ''}"
        if not self.quiet:
            if self.tty:
                print(f"ctr: {label} ...", end="\r", file=self.stream, flush=True)
            else:
                print(f"ctr: [{self.elapsed:7.1f}s] {label}", file=self.stream, flush=True)
        t0 = time.perf_counter()
        yield
        took = time.perf_counter() - t0
        self.timings[name] = self.timings.get(name, 0.0) + took
        if not self.quiet:
            if self.tty:
                print(f"\x1b[2Kctr: {label}: {took:.1f} s", file=self.stream, flush=True)
            else:
                print(f"ctr: [{self.elapsed:7.1f}s] {name} done in {took:.1f} s", file=self.stream, flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def summary(self) -> dict:
        return {"stages": {k: round(v, 3) for k, v in self.timings.items()}, "total": round(self.elapsed, 3)}
