"""Stage progress and timings: a live line on a terminal, plain log lines otherwise.

Inside a stage, long loops (clustering steps, per-marker statistics, refinement rounds) report
through :func:`steps`: a tqdm bar with the time left while a command runs on a terminal, nothing
otherwise. The stage in progress is a context variable, so the engine's functions keep their
signatures and stay silent when called from Python.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

_ACTIVE: ContextVar[Progress | None] = ContextVar("ctr_progress", default=None)


def _ignore(n: int = 1) -> None:
    return None


@contextmanager
def steps(total: int, what: str, unit: str = "step") -> Iterator[Callable[[int], None]]:
    """A progress bar for ``total`` units of work in the running stage; yields ``advance(n=1)``.

    Drawn (with elapsed and remaining time) only on a terminal, only while a command's stage is
    running, and only once the loop has taken longer than the stage's ``bar_delay``.
    """
    progress = _ACTIVE.get()
    if progress is None or progress.quiet or not progress.tty or total < 1:
        yield _ignore
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"ctr: {what}", unit=unit, file=progress.stream, leave=False,
               delay=progress.bar_delay, mininterval=progress.bar_interval, dynamic_ncols=True)
    try:
        yield bar.update
    finally:
        bar.close()


class Progress:
    """Times named stages; ``timings`` (stage -> seconds) goes to the run directory."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, bar_delay: float = 1.0,
                 bar_interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bar_delay = bar_delay  # seconds a loop runs before its bar appears (quick loops stay quiet)
        self.bar_interval = bar_interval  # seconds between redraws
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
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)
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
