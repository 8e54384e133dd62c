"""Atomic file writers: write to a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written file under its final name: either the old file (or none)
or the complete new one. Temporary names are ``.NAME.tmp-PID`` so :func:`ctr.io.rundir.run_guard`
can find and remove them after an interruption.

JSON policy: non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``
(strict JSON has no NaN/Infinity; the strings round-trip through ``float()``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ctr.errors import OutputError

TMP_MARKER = ".tmp-"
CSV_FLOAT_FORMAT = "%.6g"


def temp_path_for(path: Path) -> Path:
    """The temporary sibling of ``path`` this process writes to before the rename."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed."""
    final = Path(path)
    tmp = temp_path_for(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:  # disk full, permissions, a file in the way: the user's to fix
        _discard(tmp)
        raise OutputError(f"cannot write {str(final)!r}: {exc.strerror or exc}",
                          hint="check the free space and permissions of the output directory") from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # its folder is gone or is a file: there is nothing to remove
        pass


@contextmanager
def _atomic_open(path: str | os.PathLike) -> Iterator[IO[str]]:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with _atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, df) -> Path:
    """Write a pandas or polars frame as CSV atomically, byte-identical for identical data.

    Floats use ``%.6g`` (six significant digits), no index, ``\\n`` line ends.
    """
    if not hasattr(df, "to_csv"):  # polars: same formatting as pandas; to_pandas() would need pyarrow
        import pandas as pd

        df = pd.DataFrame(df.to_dict(as_series=False), columns=df.columns)
    with _atomic_open(path) as handle:
        df.to_csv(handle, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays turned into Python values and non-finite floats into strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [json_safe(v) for v in items]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (sorted keys, indent 2, trailing newline) atomically.

    NaN/inf become ``"nan"``/``"inf"``/``"-inf"`` strings, so the file is strict JSON.
    """
    text = json.dumps(json_safe(obj), sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def write_h5ad_atomic(path: str | os.PathLike, adata) -> Path:
    """Write an AnnData to ``path`` atomically (the temporary file is a complete .h5ad)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)
