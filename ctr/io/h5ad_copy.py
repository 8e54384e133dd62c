"""output.h5ad as a copy of the input .h5ad with the run's obs columns and uns entries written in.

anndata's writer encodes the whole AnnData again: the matrix, every layer and a million cell
names, which must then be held in memory as text. A run that adds a few obs columns and one uns
entry needs none of that: the input file is copied byte for byte (the operating system's copy,
nothing passes through Python) and the changed elements are written into the copy with
anndata's own element writer, so the file reads back as anndata's writer would have made it.
The input file is only ever read; the copy is written under a temporary name and renamed into
place (:func:`ctr.io.atomic.atomic_path`).

An element deleted and written again leaves its old space in the HDF5 file unused (HDF5 does not
shrink files): a run on an earlier run's output.h5ad grows by the size of the obs columns it
replaces (a few bytes per cell).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ctr.io.atomic import atomic_path, write_h5ad_atomic


def write_h5ad_over_copy(path: str | os.PathLike, source: str | os.PathLike, adata, *,
                         obs_columns: Iterable[str], uns_keys: Iterable[str]) -> Path:
    """Write ``adata`` to ``path`` as a copy of ``source`` (the .h5ad it was read from) in which
    ``obs_columns`` and ``uns_keys`` are (re)written from ``adata``.

    ``adata`` may hold positions for cell names (read with ``cell_names=False``): the names are
    the file's. Anything else that differs from the file (an obs column, layer, obsm, obsp or uns
    entry not named here and not in it, a different number of cells) would be lost by a copy, so
    then the names are read back from ``source`` and anndata writes the whole file.
    """
    import h5py

    obs_columns, uns_keys = list(obs_columns), list(uns_keys)
    with h5py.File(source, "r") as f:
        covered = _copy_covers(f, adata, obs_columns, uns_keys)
        if not covered:
            _restore_cell_names(f, adata)
    if not covered:
        return write_h5ad_atomic(path, adata)
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)  # copy_file_range/sendfile: the bytes never pass through Python
        with h5py.File(tmp, "r+") as f:
            _write_obs_columns(f["obs"], adata.obs, obs_columns)
            _write_uns(f, adata.uns, uns_keys)
    return Path(path)


def _write_obs_columns(group, obs, columns: list[str]) -> None:
    from anndata.io import write_elem

    for column in columns:
        if column in group:
            del group[column]
        # the array behind the column, as anndata's data frame writer passes it
        write_elem(group, column, obs[column]._values)
    group.attrs["column-order"] = [str(c) for c in obs.columns]


def _write_uns(f, uns, keys: list[str]) -> None:
    from anndata.io import write_elem

    if "uns" not in f:
        write_elem(f, "uns", {k: uns[k] for k in keys if k in uns})
        return
    group = f["uns"]
    for key in keys:
        if key in group:
            del group[key]
        if key in uns:
            write_elem(group, key, uns[key])


def _copy_covers(f, adata, obs_columns: list[str], uns_keys: list[str]) -> bool:
    """Whether the file plus the named elements is ``adata``: same cells and variables, every obs
    column and uns entry either in the file or named, every matrix mapping's keys in the file."""
    import h5py

    obs, var = f.get("obs"), f.get("var")
    if not isinstance(obs, h5py.Group) or obs.attrs.get("encoding-type") != "dataframe":
        return False
    if not isinstance(var, h5py.Group) or "_index" not in var.attrs:
        return False
    if obs[obs.attrs["_index"]].shape[0] != adata.n_obs or var[var.attrs["_index"]].shape[0] != adata.n_vars:
        return False
    in_file = set(_attr_list(obs.attrs.get("column-order")))
    columns = [str(c) for c in adata.obs.columns]
    if not in_file <= set(columns) or not set(columns) <= in_file | set(obs_columns):
        return False
    stored_uns = set(f["uns"].keys()) if isinstance(f.get("uns"), h5py.Group) else set()
    if not set(map(str, adata.uns.keys())) <= stored_uns | set(uns_keys):
        return False
    for name in ("layers", "obsm", "obsp", "varm", "varp"):
        stored = set(f[name].keys()) if isinstance(f.get(name), h5py.Group) else set()
        if set(getattr(adata, name).keys()) != stored:
            return False
    return (adata.raw is not None) == ("raw" in f)


def _attr_list(value) -> list[str]:
    """An attribute holding a list of names (h5py gives an array, or a float for an empty list)."""
    if value is None or not hasattr(value, "__len__") or isinstance(value, str):
        return [value] if isinstance(value, str) else []
    return [v.decode() if isinstance(v, bytes) else str(v) for v in value]


def _restore_cell_names(f, adata) -> None:
    """Put the file's cell names back on ``adata`` (read with positions for names), so anndata's
    writer writes them."""
    import pandas as pd
    from anndata.io import read_elem

    from ctr.data.anndata_io import names_left_on_disk

    if names_left_on_disk(adata) and f["obs"][f["obs"].attrs["_index"]].shape[0] == adata.n_obs:
        index = f["obs"][f["obs"].attrs["_index"]]
        adata.obs.index = pd.Index(read_elem(index), name=adata.obs.index.name)
