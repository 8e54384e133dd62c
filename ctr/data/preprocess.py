"""Preparing values for clustering: transforms, technical channels out, uninformative markers out.

Nothing here changes the input values in place; sparse matrices stay sparse where the operation
keeps zeros at zero (arcsinh, log1p, column selection).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ctr.codes import IMPUTED_FOR_CLUSTERING, LOW_VARIANCE, NO_CLUSTERING_MARKERS, TECHNICAL_MOVED
from ctr.diagnostics import Diagnostic, preview_names
from ctr.errors import InputError, ParameterError


TRANSFORM_FORMS = "'arcsinh:COFACTOR' (e.g. arcsinh:5 for CyTOF, arcsinh:150 for imaging) or 'log1p'"
NORMALIZE_FORMS = "'total' (each cell scaled to 10,000 counts) or 'total:TARGET' (e.g. total:1e6 for CPM)"
DEFAULT_TARGET_SUM = 10_000.0

# Regular expressions searched case-insensitively in marker names: nuclear/DNA stains, histone H3,
# empty/blank/background channels, viability and bead channels (mass cytometry), and what an
# instrument records about each event rather than a stain: CyTOF's acquisition parameters (event
# length, the Gaussian discrimination parameters, bead distance, time), the xenon gas background of
# IMC, and flow cytometry's scatter and time.
TECHNICAL_MARKERS: tuple[str, ...] = (
    r"^dapi",
    r"hoechst",
    r"^draq[57]",
    r"^sytox",
    r"nuclear[ _-]?stain",
    r"(^|[^a-z])dna[ _-]?[12]($|[^0-9])",
    r"ir19[13]",
    r"19[13]ir",  # the iridium DNA intercalator written mass first (191Ir, 193Ir_DNA2)
    r"histone[ _-]?h3",
    r"^h3$",
    r"^blank",
    r"^empty",
    r"^background",
    r"^bg[ _-]?\d*$",
    r"cisplatin",
    r"^beads?([ _-]|$)",
    r"^ce140",
    r"^x?140ce",
    r"^(x?1(2[4-9]|3[0-6])xe|xe1(2[4-9]|3[0-6]))",
    r"^(time|event[ _]?length|center|offset|width|residual|bead[ _]?dist)$",
    r"^[fs]sc($|[ _-])",
)

LOW_VARIANCE_MIN = 1e-6
TECH_PREFIX = "tech_"


def parse_transform(spec: str) -> tuple[str, float | None]:
    """``("log1p", None)`` or ``("arcsinh", COFACTOR)`` for a ``--transform`` value; an unknown form
    is a :class:`ParameterError` naming the valid ones (checked before any data is read)."""
    text = (spec or "").strip().lower()
    if text == "log1p":
        return "log1p", None
    match = re.fullmatch(r"(?:arcsinh|asinh):\s*([0-9.eE+-]+)", text)
    cofactor = _positive_float(match.group(1)) if match else None
    if cofactor is None:
        raise ParameterError(f"--transform {spec!r} is not a transform; valid forms: {TRANSFORM_FORMS}")
    return "arcsinh", cofactor


def apply_transform(matrix, spec: str):
    """``arcsinh(x / COFACTOR)`` for ``"arcsinh:COFACTOR"``, ``log1p(x)`` for ``"log1p"``; a new matrix."""
    kind, cofactor = parse_transform(spec)
    if kind == "log1p":
        func = np.log1p
        minimum = _min_value(matrix)
        if minimum < 0:
            raise InputError(f"--transform log1p needs values >= 0, but the layer has values down to {minimum:.4g}",
                             hint="use --transform arcsinh:COFACTOR, which is defined for negative values")
    else:
        def func(x, c=cofactor):
            return np.arcsinh(x / c)
    if sp.issparse(matrix):
        out = matrix.astype(np.float32 if matrix.dtype.kind != "f" else matrix.dtype, copy=True)
        out.data = func(out.data).astype(out.dtype, copy=False)
        return out
    dense = np.asarray(matrix)
    dtype = dense.dtype if dense.dtype.kind == "f" else np.float32
    return func(dense.astype(dtype, copy=False)).astype(dtype, copy=False)


def normalize_target(spec: str) -> float:
    """The per-cell total of ``--normalize total[:TARGET]`` (10,000 when not given)."""
    match = re.fullmatch(r"total(?::\s*([0-9.eE+-]+))?", (spec or "").strip().lower())
    target = (_positive_float(match.group(1)) if match.group(1) else DEFAULT_TARGET_SUM) if match else None
    if target is None:
        raise ParameterError(f"--normalize {spec!r} is not a normalisation; valid forms: {NORMALIZE_FORMS}")
    return target


def normalize_log1p(matrix, spec: str):
    """Count data made comparable between cells: each cell scaled to the same total (scanpy's
    ``normalize_total``), then ``log1p``; a new matrix, sparse stays sparse."""
    import anndata
    import scanpy as sc

    target = normalize_target(spec)
    minimum = _min_value(matrix)
    if minimum < 0:
        raise InputError(f"--normalize needs counts (values >= 0), but the layer has values down to {minimum:.4g}",
                         hint="these values are not counts; drop --normalize (use --transform for intensities)")
    if matrix.dtype.kind != "f":
        matrix = matrix.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy's notes on cells with zero counts (left at zero)
        scaled = sc.pp.normalize_total(anndata.AnnData(X=matrix), target_sum=target, inplace=False)["X"]
    return apply_transform(scaled, "log1p")


def _positive_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None


def _min_value(matrix) -> float:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    return min(low, 0.0) if sp.issparse(matrix) and matrix.nnz < np.prod(matrix.shape) else low


def split_technical_markers(var_names: Sequence, technical: Sequence[str] = TECHNICAL_MARKERS) -> tuple[list[str], list[str]]:
    """Split marker names into (kept, moved): moved are those matching a ``technical`` pattern
    (regular expressions, searched case-insensitively)."""
    patterns = [re.compile(p, re.IGNORECASE) for p in technical]
    names = [str(v) for v in var_names]
    genes = _gene_like_channels(names) if tuple(technical) == TECHNICAL_MARKERS else set()
    kept, moved = [], []
    for name in names:
        (moved if name not in genes and any(p.search(name) for p in patterns) else kept).append(name)
    return kept, moved


# Channel names that are also human gene symbols (DNA2: a DNA replication helicase). In a
# transcriptome-sized panel without its partner channel they are genes and stay in.
GENE_NAMED_CHANNELS = {"dna2": "dna1"}
TRANSCRIPTOME_MIN_VARS = 500


def _gene_like_channels(names: list[str]) -> set[str]:
    if len(names) < TRANSCRIPTOME_MIN_VARS:
        return set()
    lower = {n.lower() for n in names}
    return {n for n in names if n.lower() in GENE_NAMED_CHANNELS and GENE_NAMED_CHANNELS[n.lower()] not in lower}


@dataclass
class PreparedMatrix:
    """The cells x markers matrix to cluster on and what was left out, and why."""

    matrix: object
    kept: list[str]
    moved: list[str] = field(default_factory=list)  # technical channels, values copied to obs tech_NAME
    dropped: list[str] = field(default_factory=list)  # near-constant markers
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [d.header() for d in self.diagnostics]


def column_variance(matrix) -> np.ndarray:
    """Per-marker variance over finite values (sparse: without densifying)."""
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix, dtype=np.float64)
        csr.data = np.where(np.isfinite(csr.data), csr.data, 0.0)
        mean = np.asarray(csr.mean(axis=0)).ravel()
        sq = np.asarray(csr.multiply(csr).mean(axis=0)).ravel()
        return np.maximum(sq - mean**2, 0.0)
    dense = np.asarray(matrix, dtype=np.float64)
    with warnings.catch_warnings():  # all-NaN markers: variance NaN -> 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        var = np.nanvar(np.where(np.isfinite(dense), dense, np.nan), axis=0)
    return np.nan_to_num(var, nan=0.0)


def prepare_for_clustering(adata, matrix, var_names: Sequence | None = None, *,
                           technical: Sequence[str] = TECHNICAL_MARKERS,
                           min_variance: float = LOW_VARIANCE_MIN) -> PreparedMatrix:
    """The float32 matrix of the markers to cluster on.

    Technical channels (``technical`` patterns) are left out and their values copied to
    ``adata.obs['tech_NAME']`` (an existing obs column is never overwritten); markers with
    variance below ``min_variance`` are left out; NaN/inf become the marker's median (dense) or
    0 (sparse) for clustering only. ``matrix`` itself is not modified.
    """
    names = [str(v) for v in (adata.var_names if var_names is None else var_names)]
    diags: list[Diagnostic] = []
    kept, moved = split_technical_markers(names, technical)
    index = {name: i for i, name in enumerate(names)}
    for name in moved:
        column = TECH_PREFIX + name
        if column in adata.obs.columns:
            continue
        values = matrix[:, index[name]]
        adata.obs[column] = np.asarray(values.toarray() if sp.issparse(values) else values).ravel()
    if moved:
        diags.append(Diagnostic(TECHNICAL_MOVED, f"technical channels not used for clustering: {preview_names(moved)} "
                                f"(values kept in obs as {TECH_PREFIX}NAME)"))

    sub = matrix[:, [index[n] for n in kept]] if moved else matrix
    variance = column_variance(sub) if kept else np.zeros(0)
    low = variance < min_variance
    dropped = [n for n, is_low in zip(kept, low) if is_low]
    if dropped:
        diags.append(Diagnostic(LOW_VARIANCE, f"near-constant markers not used for clustering "
                                f"(variance < {min_variance:g}): {preview_names(dropped)}"))
        sub = sub[:, np.flatnonzero(~low)]
        kept = [n for n, is_low in zip(kept, low) if not is_low]
    if not kept:
        message = ("no marker left to cluster on: " + (f"technical: {', '.join(moved)}; " if moved else "")
                   + (f"constant: {', '.join(dropped)}" if dropped else "the panel is empty"))
        hint = "choose another --layer, or annotate existing clusters with --annotation-only --cluster-key KEY"
        raise InputError(message, hint=hint, diagnostics=[Diagnostic(NO_CLUSTERING_MARKERS, message, hint=hint)])

    out, n_filled = _finite_float32(sub)
    if n_filled:
        diags.append(Diagnostic(IMPUTED_FOR_CLUSTERING, f"{n_filled} NaN/infinite values replaced for clustering "
                                "(marker median; 0 in sparse data); statistics still treat them as missing"))
    return PreparedMatrix(matrix=out, kept=kept, moved=moved, dropped=dropped, diagnostics=diags)


def _finite_float32(matrix):
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        bad = ~np.isfinite(out.data)
        out.data[bad] = 0.0
        out.eliminate_zeros()
        return out, int(bad.sum())
    out = np.array(matrix, dtype=np.float32, copy=True)
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nan_to_num(np.nanmedian(out, axis=0), nan=0.0)
        rows, cols = np.nonzero(bad)
        out[rows, cols] = median[cols]
    return out, int(bad.sum())
