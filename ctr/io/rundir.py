"""The run directory: whole or absent, never another process's or the user's files replaced.

A run is written into a staging directory beside its target (``.NAME.ctr-staging-PID``) and moved
into place at the end, after its manifest (:data:`MANIFEST`, the completion marker and the list of
files ctr wrote) is written. A new target is one ``rename``; an existing one (``--force``) has the
files of the earlier run (those its manifest lists) swapped for the new ones while Ctrl-C and
SIGTERM are held back, and keeps every other file. A lock beside the target refuses a second run
into the same directory. Readers (``explain``, ``report``, ``diff``, ``evaluate``) refuse a
directory without a manifest: it is not a finished run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path

from ctr.errors import InputError, OutputError
from ctr.io.atomic import TMP_MARKER, write_text_atomic

MANIFEST = "ctr_run.json"
# Every name a run, `ctr report` or `ctr evaluate` writes into a run directory. With --force a file of
# one of these names is replaced only when the earlier run's manifest lists it (ctr wrote it).
RUN_FILES = frozenset({
    "cluster_annotations.csv", "gating_details.csv", "decision_steps.csv", "marker_scores.csv",
    "marker_evidence.csv", "refinement_log.csv", "marker_resolution.csv", "params.json",
    "input_checks.json", "output.h5ad", "report.html", "timings.json", "evaluation.csv",
    "evaluation_confusion.csv", "evaluation.json", MANIFEST,
})
STAGING_MARKER = ".ctr-staging-"
ASIDE_MARKER = ".ctr-old-"
LOCK_SUFFIX = ".ctr-lock"


# ---------------------------------------------------------------------------------------------
# files the user gave: never replaced


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths are one file (same device and inode, so hard links and symlinks count)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, *, force: bool, inputs: Iterable[str | os.PathLike] = (),
                      option: str = "--output") -> Path:
    """Refuse to write ``path`` when that would lose something: an existing file without ``force``,
    any input of the command, or anything that is not a regular file (a symlink, a device, a folder)."""
    target = Path(path)
    if target.is_symlink():
        raise OutputError(f"{option} {str(target)!r} is a symbolic link; refusing to write through it or replace it",
                          hint="give the path of a regular file (the link's target, or a new name)")
    if not target.exists():
        return target
    mode = target.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise OutputError(f"{option} {str(target)!r} is {kind}, not a file; refusing to replace it",
                          hint="give the path of a new file")
    for given in inputs:
        if same_file(target, given):
            raise OutputError(f"{option} {str(target)!r} is an input of this command ({given}); refusing to replace it",
                              hint="write to a new file name")
    if not force:
        raise OutputError(f"{option} {str(target)!r} already exists; refusing to replace it",
                          hint="choose a new file name, or pass --force to replace it")
    return target


# ---------------------------------------------------------------------------------------------
# the manifest: completion marker and the list of ctr's files


def read_manifest(run_dir: str | os.PathLike) -> dict | None:
    """The manifest of ``run_dir``, or None when it has none (or one that is not ctr's)."""
    path = Path(run_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("complete") is not True or not isinstance(data.get("files"), list):
        return None
    return data


def write_manifest(run_dir: str | os.PathLike, extra_files: Iterable[str] = ()) -> Path:
    """Mark ``run_dir`` complete: list the run files in it (plus ``extra_files``), last of all."""
    from ctr import __version__

    root = Path(run_dir)
    previous = read_manifest(root) or {}
    files = sorted({p.name for p in root.iterdir() if p.name in RUN_FILES and p.is_file()} | set(extra_files)
                   | {name for name in previous.get("files", []) if (root / name).is_file()})
    files = [name for name in files if name != MANIFEST]
    record = {"complete": True, "ctr_version": __version__, "files": files,
              "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return write_text_atomic(root / MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")


def require_finished_run(run_dir: str | os.PathLike) -> dict:
    """The manifest of ``run_dir``; an InputError when it is not a finished ctr run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory; expected a ctr run directory (made by `ctr annotate`)")
    manifest = read_manifest(path)
    if manifest is None:
        raise InputError(
            f"{path}: not a finished ctr run directory (no {MANIFEST}, which a run writes last)",
            hint="pass the --output-dir of a finished `ctr annotate` run; an interrupted or failed run "
                 "(or one written by a ctr without run manifests) has to be run again",
        )
    return manifest


# ---------------------------------------------------------------------------------------------
# interrupts: Ctrl-C and SIGTERM raise, and a swallowed one is still noticed


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so the same cleanup as Ctrl-C runs."""


class _Interrupts:
    """Raise KeyboardInterrupt on SIGINT (Terminated on SIGTERM) and remember it: a library that
    swallows the exception (``Exception ignored in ...``) cannot make the run finish as if nothing
    happened, because :meth:`check` raises it again before anything is moved into place."""

    def __init__(self) -> None:
        self.seen: int | None = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        self.seen = signum
        raise Terminated(f"terminated by signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self) -> _Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no signal handling, cleanup on exceptions still works
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def check(self) -> None:
        if self.seen is not None:
            raise Terminated("terminated") if self.seen == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for the few renames that swap a run into place."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no POSIX signal masks here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ---------------------------------------------------------------------------------------------
# the lock


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold ``.NAME.ctr-lock`` beside ``target`` (an OS lock, released even if the process is killed)."""
    lock_path = target.parent / f".{target.name}{LOCK_SUFFIX}"
    try:
        handle = open(lock_path, "a+", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(target)!r}: {exc.strerror or exc}") from None
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): the lock file's existence is the lock, best effort
            pass
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputError(f"another ctr run ({holder}) is writing {str(target)!r}; refusing to write it at the same time",
                              hint="wait for it to finish, or choose another --output-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        handle.close()


# ---------------------------------------------------------------------------------------------
# the staged run directory


def _existing_entries(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir()) if target.is_dir() else []


def check_run_target(target: str | os.PathLike, *, force: bool, inputs: Iterable[str | os.PathLike] = ()) -> dict | None:
    """Refuse a target directory a run may not write: a file or symlink in its place, a non-empty folder
    without ``force``, a ctr file name that the earlier run's manifest does not list (the user's file),
    or an earlier run's file that is an input of this run. Returns the earlier run's manifest."""
    target = Path(target)
    if target.is_symlink():
        raise OutputError(f"output directory {str(target)!r} is a symbolic link; refusing to write through it",
                          hint="pass the real directory path as --output-dir")
    if target.exists() and not target.is_dir():
        raise OutputError(f"output directory {str(target)!r} is an existing file, not a directory",
                          hint="pass --output-dir a directory path (new or empty)")
    entries = _existing_entries(target)
    if not entries:
        return None
    if not force:
        raise OutputError(f"output directory {str(target)!r} is not empty",
                          hint="choose a new --output-dir, or pass --force to replace the files of a previous run")
    manifest = read_manifest(target) or {"files": []}
    ours = set(manifest["files"]) | ({MANIFEST} if MANIFEST in entries else set())
    foreign = [name for name in entries if name in RUN_FILES and name not in ours]
    if foreign:
        raise OutputError(
            f"output directory {str(target)!r} holds {', '.join(foreign)}, which no finished ctr run wrote there "
            f"(no {MANIFEST} lists them); refusing to replace them, even with --force",
            hint="choose a new --output-dir, or move those files away (a run from a ctr version before the "
                 "manifest has to be removed by hand)",
        )
    for name in sorted(ours):
        for given in inputs:
            if same_file(target / name, given):
                raise OutputError(
                    f"the input {str(given)!r} is the {name} that this run would replace in {str(target)!r}; "
                    "refusing to replace the input",
                    hint="choose another --output-dir (e.g. a new run folder beside it)",
                )
    return manifest


def _create_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise OSError(exc.errno, exc.strerror) from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (someone else wrote there) or already gone
            break


@contextmanager
def staged_run_dir(target: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = (),
                   before_commit=None) -> Iterator[Path]:
    """Yield a staging directory to write a run into; on success it becomes ``target`` (whole), on
    any failure (an error, Ctrl-C, SIGTERM, a full disk) it is removed and ``target`` stays as it
    was. ``before_commit`` (no arguments) runs just before the move into place (a stage boundary)."""
    given = target
    target = Path(os.path.abspath(target))  # "." and "run/" have a name and a parent; symlinks stay unresolved
    if target == target.parent:
        raise OutputError(f"output directory {str(given)!r} is the root of the file system; refusing to write a run there",
                          hint="pass --output-dir a folder for this run")
    inputs = [Path(p) for p in inputs]
    check_run_target(given, force=force, inputs=inputs)  # fail fast, before the lock and any folder (named as given)
    try:
        created = _create_parents(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(target)!r}: {exc.strerror or exc}") from None
    try:
        with _locked(target), _Interrupts() as interrupts:
            manifest = check_run_target(given, force=force, inputs=inputs)  # again, now that no other run can write
            _remove_leftovers(target)
            staging = target.parent / f".{target.name}{STAGING_MARKER}{os.getpid()}"
            try:
                staging.mkdir()
            except OSError as exc:
                raise OutputError(f"cannot create output directory {str(target)!r}: {exc.strerror or exc}") from None
            try:
                yield staging
                if before_commit is not None:
                    before_commit()
                write_manifest(staging)
                interrupts.check()  # an interrupt a library swallowed still stops the run here
                with _signals_held():
                    _commit(staging, target, manifest)
            except OSError as exc:
                raise OutputError(f"cannot write the run directory {str(target)!r}: {exc.strerror or exc}",
                                  hint="check the free space and permissions of the output directory") from exc
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        _remove_empty(created)
        raise


def _remove_leftovers(target: Path) -> None:
    """Staging and set-aside folders of earlier runs into ``target`` that were killed (SIGKILL, power
    loss): whoever holds the lock is the only live run for ``target``, so every one of them is stale."""
    for prefix in (f".{target.name}{STAGING_MARKER}", f".{target.name}{ASIDE_MARKER}"):
        for stale in target.parent.glob(f"{glob_escape(prefix)}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)


def _commit(staging: Path, target: Path, manifest: dict | None) -> None:
    """Move the finished run into place: one rename for a new (or empty) target; for an earlier run,
    its files (and first its manifest, so the folder never looks finished half-way) go aside and the
    new ones move in, the user's other files stay."""
    if not target.exists():
        os.rename(staging, target)
        return
    # an existing folder (empty, or an earlier run's) keeps its inode: it may be the working directory
    aside = target.parent / f".{target.name}{ASIDE_MARKER}{os.getpid()}"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    try:
        old = [MANIFEST] + [name for name in (manifest or {}).get("files", []) if name != MANIFEST]
        for name in old:
            if (target / name).exists():
                os.replace(target / name, aside / name)
        new = sorted(p.name for p in staging.iterdir())
        for name in [n for n in new if n != MANIFEST] + [MANIFEST]:
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# adding files to a finished run (ctr report, ctr evaluate)


@contextmanager
def updating_run_dir(run_dir: str | os.PathLike, names: Iterable[str]) -> Iterator[Path]:
    """Write ``names`` into the finished run ``run_dir``: replaces only files its manifest lists (a
    file of the same name that ctr did not write is refused), then lists the new ones in the manifest.
    Holds the run's lock, and removes temporary files on any failure."""
    root = Path(run_dir)
    manifest = require_finished_run(root)
    foreign = [n for n in names if (root / n).exists() and n not in manifest["files"]]
    for name in names:
        if (root / name).is_symlink() or ((root / name).exists() and not (root / name).is_file()):
            foreign.append(name)
    if foreign:
        raise OutputError(f"{root}: {', '.join(sorted(set(foreign)))} was not written by ctr; refusing to replace it",
                          hint="move that file away, then run the command again")
    with _locked(root), _Interrupts():
        with run_guard(root):
            yield root
            write_manifest(root, extra_files=names)


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


@contextmanager
def run_guard(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Run a block that writes files into ``run_dir``; on any exception (Ctrl-C and SIGTERM included)
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


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")
