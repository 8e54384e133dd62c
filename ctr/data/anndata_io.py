"""Reading the input AnnData and choosing what to annotate: the expression layer and the cluster column.

The input file is only ever opened for reading.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ctr.errors import InputError

LAYER_PREFERENCE = ("batchcorr", "aligned")
CLUSTER_KEY_PREFERENCE = ("cluster_lvl0", "leiden", "louvain", "cluster")


def read_input(path: str | os.PathLike, *, cell_names: bool = True):
    """Read an AnnData ``.h5ad`` file into memory (read-only; the file is never modified).

    ``cell_names=False`` leaves the cell names (``obs_names``) on disk: the AnnData's ``obs``
    index is the cells' positions (a ``RangeIndex``, :func:`names_left_on_disk`), everything
    else is read as anndata reads it. A million names are a million Python strings, 40% of a
    40-marker float32 matrix, held for nothing when the output is written as a copy of the input
    (:func:`ctr.io.h5ad_copy.write_h5ad_over_copy`), which is the only way such an AnnData may
    be written. Files anndata's element reader cannot read one element at a time (written by
    anndata before 0.7) and those with a data frame in ``obsm`` (indexed by the names) are read
    whole, names included.

    A missing, unreadable or non-AnnData file raises InputError naming the file.
    """
    import anndata as ad

    file = Path(path)
    if not file.exists():
        raise InputError(f"input file {str(file)!r} does not exist", hint="pass the path of an AnnData .h5ad file")
    if file.is_dir():
        raise InputError(f"input {str(file)!r} is a directory; expected an AnnData .h5ad file")
    if not file.is_file():
        raise InputError(f"input {str(file)!r} is not a regular file; expected an AnnData .h5ad file")
    if not os.access(file, os.R_OK):
        raise InputError(f"input file {str(file)!r} is not readable (permission denied)")
    try:
        # read_h5ad opens the file with h5py in mode "r" and loads it into memory
        if not cell_names:
            adata = _read_without_cell_names(file)
            if adata is not None:
                return adata
        return ad.read_h5ad(file)
    except Exception as exc:  # h5py/anndata raise many types for a file that is not an AnnData
        kind = "an HDF5 file that is not an AnnData" if _is_hdf5(file) else "not an HDF5 file"
        raise InputError(
            f"cannot read {str(file)!r} as AnnData .h5ad ({kind}: {type(exc).__name__}: {exc})",
            hint="expected an AnnData file written by anndata/scanpy (adata.write_h5ad('file.h5ad'))",
        ) from exc


def names_left_on_disk(adata) -> bool:
    """Whether ``adata`` was read by :func:`read_input` with ``cell_names=False``: its ``obs``
    index holds positions, and the names are only in the file (anndata reads names as text)."""
    return isinstance(adata.obs.index, pd.RangeIndex)


def _read_without_cell_names(file: Path):
    """The AnnData of ``file`` with positions for names (see :func:`read_input`); None when the
    file's layout asks for anndata's whole-file reader."""
    import warnings

    import h5py
    import numpy as np

    try:  # anndata's element reader with a hook per element (anndata.read_h5ad is built on it)
        from anndata.experimental import read_dispatched
        from anndata.io import write_elem  # noqa: F401 (the copy's writer needs it: anndata 0.11 on)
    except ImportError:  # older anndata: read the names, and anndata writes the output
        return None
    with h5py.File(file, "r") as f:
        obs = f.get("obs")
        if not _encoded(f, "anndata") or not _encoded(obs, "dataframe") or "raw.X" in f:
            return None
        if isinstance(f.get("obsm"), h5py.Group) and any(_encoded(e, "dataframe") for e in f["obsm"].values()):
            return None
        index_key = obs.attrs["_index"]
        index_name = f"{obs.name}/{index_key}"
        n_cells = obs[index_key].shape[0]

        def callback(read, name, elem, iospec):
            # one shared empty string per cell in place of the names: anndata wants text there
            return np.full(n_cells, "", dtype=object) if name == index_name else read(elem)

        with warnings.catch_warnings():  # the placeholders are not unique, and say so
            warnings.filterwarnings("ignore", message="Observation names are not unique")
            adata = read_dispatched(f, callback)
    adata.obs.index = pd.RangeIndex(n_cells, name=None if index_key == "_index" else index_key)
    return adata


def _encoded(elem, encoding: str) -> bool:
    return elem is not None and elem.attrs.get("encoding-type") == encoding


# Rows per chunk of an out-of-core matrix read from an .h5ad (a .zarr store keeps its own chunks).
LAZY_ROWS = 1 << 17
# An .h5ad whose matrix is larger than this share of the memory available is read out of core.
MEMORY_SHARE = 0.5


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store (a directory with zarr's metadata at its top)."""
    file = Path(path)
    return file.is_dir() and any((file / name).is_file() for name in (".zgroup", "zarr.json", ".zmetadata"))


def exceeds_memory(path: str | os.PathLike) -> bool:
    """Whether the dense X of an .h5ad would take more than ``MEMORY_SHARE`` of the memory available now."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            x = f.get("X")
            if not isinstance(x, h5py.Dataset):
                return False
            size = x.size * x.dtype.itemsize
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return False
    return size > MEMORY_SHARE * available


def read_input_lazy(path: str | os.PathLike):
    """An AnnData whose matrices (X, layers, obsm) stay on disk as dask arrays chunked by rows, from a
    .zarr store or an .h5ad; obs, var and uns are read into memory (the per-cell labels are written
    to obs). The file is only opened for reading."""
    import anndata as ad
    from anndata.experimental import read_elem_lazy
    from anndata.io import read_elem

    file = Path(path)
    zarr_store = is_zarr_store(file)
    if not file.exists():
        raise InputError(f"input {str(file)!r} does not exist", hint="pass the path of an AnnData .h5ad file or .zarr store")
    if file.is_dir() and not zarr_store:
        raise InputError(f"input {str(file)!r} is a directory but not a zarr store (no .zgroup or zarr.json)",
                         hint="pass an AnnData .zarr store (adata.write_zarr) or an .h5ad file")
    try:
        if zarr_store:
            import zarr

            store = zarr.open(file, mode="r")
        else:
            import h5py

            store = h5py.File(file, "r")  # open while the run reads it; closed with the process

        def lazy(elem):
            encoding = elem.attrs.get("encoding-type", "")
            if encoding == "csr_matrix":  # a sparse matrix is a group: chunks of rows, every column
                n_rows, n_columns = (int(n) for n in elem.attrs["shape"])
                return read_elem_lazy(elem, chunks=(min(LAZY_ROWS, max(n_rows, 1)), n_columns))
            if len(getattr(elem, "shape", ())) != 2:  # CSC, a data frame in obsm: anndata's own chunks
                return read_elem_lazy(elem)
            stored = (getattr(elem, "chunks", None) or (1,))[0]  # rows of a stored chunk (None: contiguous)
            rows = -(-LAZY_ROWS // stored) * stored  # whole stored chunks per task, whole rows
            return read_elem_lazy(elem, chunks=(min(rows, max(elem.shape[0], 1)), -1))

        group = {name: store[name] for name in ("X", "obs", "var", "uns", "layers", "obsm") if name in store}
        return ad.AnnData(
            X=lazy(group["X"]) if "X" in group else None,
            obs=read_elem(group["obs"]), var=read_elem(group["var"]),
            uns=read_elem(group["uns"]) if "uns" in group else None,
            layers={k: lazy(group["layers"][k]) for k in group["layers"].keys()} if "layers" in group else None,
            obsm={k: lazy(group["obsm"][k]) for k in group["obsm"].keys()} if "obsm" in group else None,
        )
    except Exception as exc:  # zarr/h5py/anndata raise many types for a store that is not an AnnData
        raise InputError(f"cannot read {str(file)!r} as AnnData out of core ({type(exc).__name__}: {exc})",
                         hint="expected an AnnData written by anndata/scanpy (adata.write_zarr or adata.write_h5ad)") from exc


def _is_hdf5(file: Path) -> bool:
    with open(file, "rb") as handle:
        return handle.read(8) == b"\x89HDF\r\n\x1a\n"


def select_layer(adata, layer: str | None):
    """The cells x markers matrix to use and its name.

    ``layer`` names a layer (or ``"X"``); ``None`` takes the first present of ``batchcorr``,
    ``aligned``, then ``X``. Sparse matrices are returned as they are (never densified).
    """
    if layer is None:
        for name in LAYER_PREFERENCE:
            if name in adata.layers:
                return adata.layers[name], name
        return _x(adata), "X"
    if layer == "X":
        return _x(adata), "X"
    if layer in adata.layers:
        return adata.layers[layer], layer
    available = ", ".join(["X", *map(str, adata.layers.keys())])
    raise InputError(
        f"layer {layer!r} is not in the input; available: {available}",
        hint="pass --layer with one of the available names (X is the main matrix)",
    )


def expression(adata, layer: str | None) -> tuple:
    """``(matrix, var_names, layer name)`` of the values to use: :func:`select_layer`, or
    ``adata.raw`` (its own var_names) when ``layer`` is ``"raw"``."""
    if layer == "raw":
        if adata.raw is None:
            raise InputError("layer 'raw' requested but the file has no .raw", hint="omit --layer or name a layer in adata.layers")
        return adata.raw.X, list(adata.raw.var_names), "raw"
    matrix, name = select_layer(adata, layer)
    return matrix, list(adata.var_names), name


def _x(adata):
    if adata.X is None:
        raise InputError("the input has no X matrix; pass --layer with one of: "
                         + (", ".join(map(str, adata.layers.keys())) or "(no layers either)"))
    return adata.X


def categorical_columns(obs: pd.DataFrame) -> list[str]:
    """``obs`` columns that look like cluster labels: categorical, string, or integer with few values."""
    found = []
    for name in obs.columns:
        col = obs[name]
        if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(col) \
                or pd.api.types.is_string_dtype(col) or pd.api.types.is_bool_dtype(col):
            found.append(str(name))
        elif pd.api.types.is_integer_dtype(col) and col.nunique() <= max(50, len(col) // 20):
            found.append(str(name))
    return found


def detect_cluster_key(adata, key: str | None, annotation_only: bool) -> str | None:
    """The ``obs`` column holding cluster labels.

    An explicit ``key`` must exist. Without one, ``annotation_only`` takes the first present of
    ``cluster_lvl0``, ``leiden``, ``louvain``, ``cluster`` (none: InputError); otherwise None
    (the pipeline clusters itself).
    """
    obs = adata.obs
    if key is not None:
        if key in obs.columns:
            return key
        candidates = categorical_columns(obs)
        raise InputError(
            f"cluster key {key!r} is not an obs column; columns that look like cluster labels: "
            + (", ".join(candidates) or "(none)"),
            hint="pass --cluster-key with one of them, or drop --annotation-only to let ctr cluster",
        )
    if not annotation_only:
        return None
    for name in CLUSTER_KEY_PREFERENCE:
        if name in obs.columns:
            return name
    candidates = categorical_columns(obs)
    raise InputError(
        "no cluster column found (looked for " + ", ".join(CLUSTER_KEY_PREFERENCE) + "); pass --cluster-key"
        + (f"; candidate obs columns: {', '.join(candidates)}" if candidates else "; obs has no categorical column"),
        hint="or drop --annotation-only to let ctr cluster the cells",
    )
