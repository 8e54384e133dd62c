"""The run directory: refuse to clobber without ``--force``, and leave no partial file behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctr.io.atomic import TMP_MARKER
from ctr.errors import OutputError


def prepare_run_dir(path: str | os.PathLike, force: bool) -> Path:
    """Create the run directory (and parents) and return it.

    A path that is a file, or a non-empty directory without ``force``, raises OutputError.
    With ``force`` existing files stay until each one is replaced by its new version.
    """
    run_dir = Path(path)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(
            f"output directory {str(run_dir)!r} is an existing file, not a directory",
            hint="pass --output-dir a directory path (new or empty)",
        )
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        raise OutputError(
            f"output directory {str(run_dir)!r} is not empty",
            hint="choose a new --output-dir, or pass --force to overwrite the files of a previous run",
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(run_dir)!r}: {exc.strerror}") from exc
    return run_dir


def remove_temp_files(run_dir: str | os.PathLike, pid: int | None = None) -> list[Path]:
    """Remove this process's temporary files (``.NAME.tmp-PID``) in ``run_dir``; return them."""
    suffix = f"{TMP_MARKER}{os.getpid() if pid is None else pid}"
    removed = []
    root = Path(run_dir)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(suffix):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so the same cleanup as Ctrl-C runs."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextmanager
def run_guard(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Run a block that writes into ``run_dir``; on any exception (Ctrl-C and SIGTERM included)
    remove the temporary files, so no partial file stays under a final name, and re-raise.

    SIGTERM is raised as :class:`Terminated` (a KeyboardInterrupt): the CLI exits 130 for both.
    """
    root = Path(run_dir)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: no signal handling, cleanup on exceptions still works
        pass
    try:
        yield root
    except BaseException:
        remove_temp_files(root)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
