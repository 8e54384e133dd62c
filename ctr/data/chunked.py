"""Sums over the chunks of rows of a dask array: one partial result per chunk, combined pairwise.

The task graph runs on Dask's threads, or on a ``dask.distributed`` cluster when a client is active.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def reduce_row_chunks(matrix, part: Callable, add: Callable, *args, per_row: np.ndarray | None = None):
    """``part(chunk, per_row_of_chunk, *args)`` for every chunk of rows of ``matrix`` (a dask array;
    a chunk spans every column, as a dense numpy array), combined by ``add`` in a balanced tree so
    that at most log2(chunks) partial results wait on one another. ``per_row``: an array with one
    entry per row (cluster codes), sliced with the chunk; None passes None."""
    import dask

    matrix = matrix.rechunk({1: -1})
    bounds = np.cumsum((0, *matrix.chunks[0]))
    task = dask.delayed(_dense_part, pure=True)
    parts = [task(block, part, None if per_row is None else per_row[bounds[i]:bounds[i + 1]], *args)
             for i, block in enumerate(matrix.to_delayed().ravel())]
    combine = dask.delayed(add, pure=True)
    while len(parts) > 1:
        parts = [combine(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    if not parts:
        return part(np.zeros((0, matrix.shape[1]), matrix.dtype), None if per_row is None else per_row[:0], *args)
    return dask.compute(parts[0])[0]


def _dense_part(block, part: Callable, per_row, *args):
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return part(block, per_row, *args)
