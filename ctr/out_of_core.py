"""Annotating input larger than memory: when the cells are read as dask arrays (chunk by chunk) and
on which Dask scheduler the statistics run. The statistics themselves are :mod:`ctr.stats.streaming`.

The cells are read out of core when the input is a .zarr store, when ``--backed`` or
``--dask-scheduler`` is given, or when an .h5ad's matrix would take more than half the memory
available. Clustering, transforms and every per-cell output except the labels (``--unit cell``,
cell states, refinement's subclustering) need the cells in memory and are refused for such input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ctr.errors import InputError, UsageError

# Seconds to wait for a scheduler to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "install the optional dependencies: pip install 'ctr[dask]' (dask, distributed, zarr, anndata >= 0.12)"


def out_of_core_reason(input_path: str, *, backed: bool, dask_scheduler: str | None) -> str | None:
    """Why the input is read out of core (for the run's notes), or None to read it into memory."""
    from ctr.data.anndata_io import exceeds_memory, is_zarr_store

    if is_zarr_store(input_path):
        return "a .zarr store"
    if backed:
        return "--backed"
    if dask_scheduler is not None:
        return "--dask-scheduler"
    if exceeds_memory(input_path):
        return "its matrix is larger than half the memory available"
    return None


def require_dask() -> None:
    """Stop with the install command when the optional Dask dependencies are missing."""
    try:
        import dask.array  # noqa: F401
        import zarr  # noqa: F401
        from anndata.experimental import read_elem_lazy  # noqa: F401  (anndata >= 0.12)
    except ImportError as exc:
        raise UsageError(f"out-of-core input needs dask, zarr and anndata >= 0.12 ({exc})", hint=INSTALL_HINT) from None


def refuse_in_memory_steps(reason: str, *, annotation_only: bool, transform: str | None, normalize: str | None) -> None:
    """Clustering and transforms of out-of-core input are not supported: say so before any work."""
    if not annotation_only:
        raise UsageError(f"the input is read out of core ({reason}), where ctr annotates given clusters only",
                         hint="pass --annotation-only --cluster-key COLUMN (cluster the cells beforehand)")
    if transform or normalize:
        option = "--normalize" if normalize else "--transform"
        raise UsageError(f"{option} is not supported on input read out of core ({reason})",
                         hint="store the transformed values as a layer of the input and pass --layer NAME")


@contextmanager
def dask_client(address: str | None) -> Iterator[object]:
    """The ``dask.distributed`` client of ``address`` for the duration of the block (every dask
    computation inside runs on its cluster); nothing when ``address`` is None (Dask's threads)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError(f"--dask-scheduler needs dask.distributed, which is not installed ({exc})", hint=INSTALL_HINT) from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--dask-scheduler {address}: cannot reach the scheduler ({type(exc).__name__}: {exc})",
                         hint="start one (`dask scheduler`, then `dask worker ADDRESS`) and pass the address it "
                         "prints, such as tcp://127.0.0.1:8786") from None
    with client:
        yield client
