"""The run directory: --force semantics, atomic writers, and no partial file after an interruption."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ctr.errors import OutputError
from ctr.io.atomic import (
    atomic_path,
    temp_path_for,
    write_csv_atomic,
    write_h5ad_atomic,
    write_json_atomic,
    write_text_atomic,
)
from ctr.io.rundir import run_guard, staged_run_dir


def _stage(target, force=False, files=("params.json",)):
    with staged_run_dir(target, force=force) as staging:
        where = Path(os.path.abspath(target))
        assert staging.parent == where.parent and staging.name.startswith(f".{where.name}.ctr-staging-")
        for name in files:
            write_text_atomic(staging / name, "{}\n")
    return target


def test_staged_run_creates_nested_directory_with_a_manifest(tmp_path):
    run = _stage(tmp_path / "a" / "b")
    assert sorted(p.name for p in run.iterdir()) == ["ctr_run.json", "params.json"]
    assert json.loads((run / "ctr_run.json").read_text())["files"] == ["params.json"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]  # no staging dir or lock left beside it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (_stage(empty) / "ctr_run.json").is_file()  # an empty folder: fine without --force


def test_staged_run_refuses_non_empty_without_force(tmp_path):
    (tmp_path / "old.csv").write_text("x\n")
    with pytest.raises(OutputError) as err:
        _stage(tmp_path)
    assert str(tmp_path) in str(err.value) and "not empty" in str(err.value) and "--force" in str(err.value)
    _stage(tmp_path, force=True)
    assert (tmp_path / "old.csv").read_text() == "x\n"  # --force keeps files ctr did not write


def test_staged_run_refuses_a_file(tmp_path):
    target = tmp_path / "run"
    target.write_text("not a dir")
    with pytest.raises(OutputError, match="is an existing file"):
        _stage(target, force=True)


def test_staged_run_under_a_file_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create output directory"):
        _stage(tmp_path / "file" / "run")


def test_csv_is_byte_identical_and_formatted(tmp_path):
    df = pd.DataFrame({"cluster": ["0", "1"], "score": [1 / 3, 2.0e-7], "n": [3, 4], "flag": [True, False]})
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv_atomic(a, df)
    write_csv_atomic(b, df.copy())
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text() == "cluster,score,n,flag\n0,0.333333,3,True\n1,2e-07,4,False\n"


def test_csv_accepts_polars(tmp_path):
    import polars as pl

    write_csv_atomic(tmp_path / "p.csv", pl.DataFrame({"m": ["CD3", "CD4"], "a": [1 / 3, None]}))
    assert (tmp_path / "p.csv").read_text() == "m,a\nCD3,0.333333\nCD4,\n"


def test_json_sorted_and_non_finite_as_strings(tmp_path):
    path = tmp_path / "params.json"
    write_json_atomic(path, {"b": np.float32(0.5), "a": [math.nan, math.inf, -np.inf], "c": np.int64(3),
                             "d": {"z": 1, "y": (1, 2)}})
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    assert json.loads(text) == {"a": ["nan", "inf", "-inf"], "b": 0.5, "c": 3, "d": {"y": [1, 2], "z": 1}}
    assert text.endswith("}\n") and "\n  " in text


def test_h5ad_round_trip(tmp_path):
    adata = ad.AnnData(X=np.eye(3, dtype=np.float32))
    write_h5ad_atomic(tmp_path / "out.h5ad", adata)
    assert ad.read_h5ad(tmp_path / "out.h5ad").shape == (3, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


def test_interrupted_write_leaves_no_final_file(tmp_path):
    final = tmp_path / "cluster_annotations.csv"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(final) as tmp:
            tmp.write_text("cluster,final_annotation\n0,T ce")  # half a file, then Ctrl-C
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rewrite_keeps_previous_file(tmp_path):
    final = write_text_atomic(tmp_path / "report.html", "old complete\n")

    class Unwritable:
        def to_csv(self, handle, **kwargs):
            handle.write("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_csv_atomic(final, Unwritable())
    assert final.read_text() == "old complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_run_guard_removes_temp_files_and_reraises(tmp_path):
    leftover = temp_path_for(tmp_path / "output.h5ad")
    other_process = tmp_path / ".output.h5ad.tmp-1"
    other_process.write_text("someone else's")
    with pytest.raises(KeyboardInterrupt):
        with run_guard(tmp_path):
            write_text_atomic(tmp_path / "params.json", "{}\n")
            leftover.write_bytes(b"\x89HDF partial")  # a writer that had no cleanup of its own
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == [".output.h5ad.tmp-1", "params.json"]


def test_sigterm_during_write_leaves_no_partial_file(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from ctr.io.atomic import atomic_path, write_text_atomic
        from ctr.io.rundir import run_guard
        run = Path({str(tmp_path)!r})
        try:
            with run_guard(run):
                write_text_atomic(run / "params.json", "{{}}\\n")
                with atomic_path(run / "output.h5ad") as tmp:
                    tmp.write_text("partial")
                    print("ready", flush=True)
                    time.sleep(30)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout.readline().strip() == "ready"
    assert any(p.name.startswith(".output.h5ad.tmp-") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.json"]


def test_run_into_the_working_directory_keeps_it(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    inode = work.stat().st_ino
    monkeypatch.chdir(work)
    _stage(Path("."))
    assert work.stat().st_ino == inode and (work / "ctr_run.json").is_file()  # the same folder, now a run
    assert Path("params.json").is_file()  # the working directory still works


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    stale = tmp_path / ".run.ctr-staging-99999999"
    stale.mkdir()
    (stale / "params.json").write_text("{}")
    aside = tmp_path / ".run.ctr-old-99999999"
    aside.mkdir()
    other = tmp_path / ".other.ctr-staging-1"  # another target's: not ours to touch
    other.mkdir()
    _stage(tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.ctr-staging-1", "run"]
