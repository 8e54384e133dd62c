"""Checks on the input values and cluster labels, returned as located Diagnostics (CTR5xx).

The caller decides what stops the run: codes registered as errors make the data unusable,
warnings and infos are reported. Sparse matrices are checked on their stored values only
(``.data``); nothing here densifies a matrix.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ctr.codes import (
    ALL_FLAT,
    DUPLICATE_CELLS,
    DUPLICATE_MARKERS,
    EMPTY_CATEGORIES,
    EMPTY_DATA,
    MISSING_LABELS,
    NEGATIVE_VALUES,
    NON_FINITE,
    RAW_COUNTS,
    RAW_INTENSITIES,
    SINGLETON_CLUSTERS,
    SINGLE_CLUSTER,
    RESCALED_AROUND_GATES,
    UNIT_RESCALED,
)
from ctr.diagnostics import Diagnostic, preview_names

# warn when at least this share of the cells (with any non-zero value) repeat an earlier cell
DUPLICATE_CELL_SHARE = 0.05
_HASH_BLOCK = 1 << 16

# integers up to 92 in 10x PBMC UMI counts (800 cells): log-normalised data is never all-integer
RAW_COUNT_MAX = 20.0
SMALL_NEGATIVE_SHARE = 0.05  # negatives within 5% of the maximum: noise around zero (CyTOF, background subtraction)
# 40% of the values below zero: centred (z-scored) data, where every marker's mean is 0 and half or
# more of its values fall below it. Flow cytometry after arcsinh/logicle has about half of each
# negative population below zero, 25-35% of all values on a typical panel: not standardised.
CENTRED_NEGATIVE_SHARE = 0.4
RAW_INTENSITY_MAX = 1000.0
_SCALED_LAYER = re.compile(r"z[-_ ]?scor|scaled|standardi[sz]ed|^std$|_std$", re.IGNORECASE)


@dataclass(frozen=True)
class ValueCounts:
    """What the checks read from a layer's values: counts over its finite stored values (every value
    of a dense layer, ``.data`` of a sparse one) and per-marker ranges. Counts of chunks of rows add
    up (``+``), so a layer larger than memory is counted chunk by chunk (:func:`count_values`)."""

    n_total: int  # cells x markers
    n_stored: int  # values stored (sparse: the rest are implicit zeros)
    n_finite: int
    n_zero: int
    n_negative: int
    n_near_zero: int  # |value| <= 1
    integer: bool  # every finite value is an integer
    lo: float  # over the finite stored values (0 when there is none)
    hi: float
    column_lo: np.ndarray  # per marker over finite values, implicit zeros included; NaN without any
    column_hi: np.ndarray
    column_nonfinite: np.ndarray  # NaN/infinite values per marker

    @property
    def implicit(self) -> int:
        return self.n_total - self.n_stored

    def negative_share(self) -> float:
        """The share of negative values among the finite ones, with at most as many implicit zeros."""
        n = self.n_finite + min(self.implicit, self.n_finite)
        return self.n_negative / n if n else 0.0

    def __add__(self, other: ValueCounts) -> ValueCounts:
        def lo_hi(a: ValueCounts, b: ValueCounts) -> tuple[float, float]:
            if not a.n_finite or not b.n_finite:
                return (a.lo, a.hi) if a.n_finite else (b.lo, b.hi)
            return min(a.lo, b.lo), max(a.hi, b.hi)

        lo, hi = lo_hi(self, other)
        return ValueCounts(
            self.n_total + other.n_total, self.n_stored + other.n_stored, self.n_finite + other.n_finite,
            self.n_zero + other.n_zero, self.n_negative + other.n_negative, self.n_near_zero + other.n_near_zero,
            self.integer and other.integer, lo, hi, np.fmin(self.column_lo, other.column_lo),
            np.fmax(self.column_hi, other.column_hi), self.column_nonfinite + other.column_nonfinite)


def count_values(matrix) -> ValueCounts:
    """The :class:`ValueCounts` of a dense, sparse or dask (out-of-core, counted chunk by chunk) layer;
    a dense layer is read in blocks of rows in its stored dtype (no float64 copy of the whole)."""
    if type(matrix).__module__.split(".")[0] == "dask":
        from ctr.data.chunked import reduce_row_chunks

        return reduce_row_chunks(matrix, lambda block, _: _dense_counts(block), _add)
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        stored = _stored_counts(np.asarray(csr.data), csr.shape)
        coo = csr.tocoo()
        bad = ~np.isfinite(coo.data)
        lo, hi = column_ranges(csr)
        return replace(stored, column_lo=lo, column_hi=hi,
                       column_nonfinite=np.bincount(coo.col[bad], minlength=csr.shape[1]))
    dense = np.asarray(matrix)
    total = _dense_counts(dense[:0])
    for start in range(0, dense.shape[0], _RANGE_BLOCK):
        total = total + _dense_counts(dense[start:start + _RANGE_BLOCK])
    return total


def _add(a: ValueCounts, b: ValueCounts) -> ValueCounts:
    return a + b


def _stored_counts(values: np.ndarray, shape: tuple[int, int]) -> ValueCounts:
    """Counts of the stored ``values`` of a layer of ``shape`` (per-marker fields left empty), in
    their own dtype; a layer without NaN/inf is not copied."""
    is_finite = np.isfinite(values)
    finite = values if is_finite.all() else values[is_finite]
    empty = np.full(shape[1], np.nan)
    return ValueCounts(
        shape[0] * shape[1], values.size, finite.size, int(np.count_nonzero(finite == 0)),
        int(np.count_nonzero(finite < 0)), int(np.count_nonzero((finite >= -1.0) & (finite <= 1.0))),
        _all_integer(finite), float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 0.0,
        empty, empty.copy(), np.zeros(shape[1], np.int64))


def _all_integer(values: np.ndarray) -> bool:
    head = values[:4096]  # most layers show fractions at once: no full pass for them
    return bool(np.all(head == np.round(head)) and np.all(values == np.round(values)))


def _dense_counts(block: np.ndarray) -> ValueCounts:
    block = np.asarray(block)
    counts = _stored_counts(block.reshape(-1), block.shape)
    if not block.shape[0]:
        return counts
    if counts.n_finite == block.size:  # no NaN/inf: no masked copy
        lo, hi, bad = block.min(axis=0), block.max(axis=0), np.zeros(block.shape[1], np.int64)
    else:
        finite = np.isfinite(block)
        masked = np.where(finite, block, np.nan)
        with np.errstate(invalid="ignore"), _quiet_all_nan():
            lo, hi = np.nanmin(masked, axis=0), np.nanmax(masked, axis=0)
        bad = (~finite).sum(axis=0).astype(np.int64)
    return replace(counts, column_lo=lo.astype(np.float64), column_hi=hi.astype(np.float64), column_nonfinite=bad)


def column_ranges(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-marker (min, max) over finite values; NaN for a marker without a finite value."""
    if sp.issparse(matrix):
        csc = sp.csc_matrix(matrix)
        data = np.where(np.isfinite(csc.data), csc.data, np.nan).astype(np.float64)
        n_cells, n_vars = csc.shape
        counts = np.diff(csc.indptr)
        lo = np.full(n_vars, np.nan)
        hi = np.full(n_vars, np.nan)
        starts = csc.indptr[:-1]
        has = counts > 0
        # reduceat over each column's slice; a NaN sentinel makes every start a valid index
        # (fmin/fmax skip it); columns without stored values are masked out by `has`
        padded = np.append(data, np.nan)
        with np.errstate(invalid="ignore"):
            lo[has] = np.fmin.reduceat(padded, starts)[has]
            hi[has] = np.fmax.reduceat(padded, starts)[has]
        implicit_zero = counts < n_cells
        lo = np.where(implicit_zero, np.fmin(lo, 0.0), lo)
        hi = np.where(implicit_zero, np.fmax(hi, 0.0), hi)
        return lo, hi
    counts = count_values(matrix)
    return counts.column_lo, counts.column_hi


_RANGE_BLOCK = 1 << 16


@contextmanager
def _quiet_all_nan():
    """Silence numpy's 'All-NaN slice' / 'Mean of empty slice' warnings for all-missing markers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def looks_standardised(counts: ValueCounts, layer_name: str) -> bool:
    """A z-scored/centred layer: named so, or a quarter or more of its finite values below zero."""
    if _SCALED_LAYER.search(layer_name or ""):
        return True
    return counts.negative_share() >= CENTRED_NEGATIVE_SHARE


def check_var_names(var_names: Sequence, *, layer_name: str, column: str | None = None) -> list[Diagnostic]:
    """CTR502 when a marker name occurs more than once (markers are looked up by name); ``column``:
    the var column the names were read from (``--var-names``), named in the message."""
    names = pd.Index([str(v) for v in var_names])
    if not names.has_duplicates:
        return []
    dups = list(dict.fromkeys(names[names.duplicated()]))
    if column is not None:
        return [Diagnostic(DUPLICATE_MARKERS, f"layer '{layer_name}': marker names in var['{column}'] occur more than "
                           f"once: {preview_names(dups)}",
                           hint=f"give each channel its own name in var['{column}'] (or leave the entry of an "
                                "unstained channel empty), or match var_names with --var-names none")]
    return [Diagnostic(DUPLICATE_MARKERS, f"layer '{layer_name}': marker names occur more than once: {preview_names(dups)}",
                       hint="make them unique first: adata.var_names_make_unique(), or drop the repeated columns")]


def stop_on_errors(diagnostics: Sequence[Diagnostic]) -> None:
    """Raise InputError (carrying every diagnostic) when any of them is an error; return otherwise."""
    from ctr.errors import InputError

    errors = [d for d in diagnostics if d.level == "error"]
    if errors:
        raise InputError(errors[0].message, hint=errors[0].hint, diagnostics=diagnostics)


def check_matrix(matrix, var_names: Sequence, *, layer_name: str, profile: DataProfile | None = None,
                 counts: ValueCounts | None = None) -> list[Diagnostic]:
    """Check the cells x markers values of layer ``layer_name``; see the module docstring.
    ``profile``, ``counts``: the layer's :func:`value_profile` and :func:`count_values`, when the
    caller already has them (an out-of-core layer is then not read again)."""
    where = f"layer '{layer_name}'"
    n_cells, n_vars = matrix.shape
    if n_cells == 0 or n_vars == 0:
        return [Diagnostic(EMPTY_DATA, f"{where} has {n_cells} cells x {n_vars} markers; nothing to annotate",
                           hint="check that the file holds the filtered data and the right layer")]
    diags: list[Diagnostic] = check_var_names(var_names, layer_name=layer_name)
    names = pd.Index([str(v) for v in var_names])
    counts = counts or count_values(matrix)

    bad = counts.column_nonfinite
    if bad.sum():
        hit = [f"{names[i]} ({int(bad[i])})" for i in np.flatnonzero(bad)]
        diags.append(Diagnostic(
            NON_FINITE,
            f"{where}: {int(bad.sum())} NaN/infinite values in {len(hit)} markers: {preview_names(hit)}; "
            "they count as missing in the statistics (never positive)",
            hint="impute or drop these cells if the markers matter for annotation"))

    lo_all, hi_all = counts.lo, counts.hi
    if lo_all < 0:
        n_neg = counts.n_negative
        # small negatives first: background-subtracted cytometry (arcsinh) sits around zero, with
        # many tiny negative values, and is not a z-scored layer
        if -lo_all <= SMALL_NEGATIVE_SHARE * max(hi_all, 0.0):
            diags.append(Diagnostic(NEGATIVE_VALUES, f"{where} has {n_neg} small negative values (down to {lo_all:.3g}, "
                                    f"maximum {hi_all:.3g}): noise around zero, read as not expressed",
                                    severity="info"))
        elif looks_standardised(counts, layer_name):
            diags.append(Diagnostic(NEGATIVE_VALUES, f"{where} looks standardised (z-scores): {n_neg} negative values, "
                                    "positivity thresholds apply to z-scores", severity="info"))
        else:
            diags.append(Diagnostic(
                NEGATIVE_VALUES, f"{where} has {n_neg} negative values (minimum {lo_all:.4g})",
                hint="expression is expected >= 0 (log or arcsinh intensities); check background subtraction "
                     "or choose another --layer"))
    profile = profile or value_profile(counts, layer_name, names)
    if lo_all >= 0 and hi_all > RAW_COUNT_MAX and profile.integer:
        diags.append(Diagnostic(
            RAW_COUNTS, f"{where} looks like raw counts (non-negative integers up to {hi_all:.6g})",
            hint="normalise first: --normalize total (RNA counts: each cell scaled to 10,000, then log1p), "
                 "or --transform arcsinh:5 (CyTOF)"))
    elif profile.kind == "raw_intensities":
        diags.append(Diagnostic(
            RAW_INTENSITIES, f"{where} looks untransformed (values up to {hi_all:.6g})",
            hint=f"transform first: --transform arcsinh:{profile.suggested_cofactor or 150:g} "
                 "(the cofactor suits these values; 5 is usual for mass cytometry, 150 for imaging and flow) "
                 "or --transform log1p"))

    lo, hi = counts.column_lo, counts.column_hi
    flat = ~(hi > lo)  # NaN (no finite value) counts as flat
    if profile.gate is not None:
        diags.append(Diagnostic(
            RESCALED_AROUND_GATES, f"{where}: values rescaled around per-marker gates at {profile.gate:g} (every marker "
            f"spans 0..1, and {preview_names(list(profile.ungated))} end at {profile.gate:g}: no cell passes their gate); "
            f"positivity 'auto' cuts every marker at {profile.gate:g}", severity="info",
            hint="a 'threshold MARKER >= x' line still sets one marker's cut; "
                 '--scoring-params \'{"positivity": "quantile"}\' ignores the gates'))
    elif looks_unit_rescaled(counts):
        diags.append(Diagnostic(
            UNIT_RESCALED, f"{where}: every marker spans exactly 0 to 1 (or 0 to 0.5), as after a per-marker rescale; if the values "
            "were rescaled around manual gates (scimap's rescale puts each gate at 0.5), a marker's gate lies inside "
            "its one population, where no split of the distribution can find it",
            hint='cut every marker at the gate: --scoring-params \'{"positivity": "gate", "gate": 0.5}\', '
                 "or write 'threshold MARKER >= 0.5' lines for the markers that need it"))
    if flat.all():
        diags.append(Diagnostic(ALL_FLAT, f"{where}: every marker has one constant value across all cells",
                                hint="the layer holds no expression signal; choose another --layer"))
    return diags


UNLABELLED = "unlabelled"


def _missing_labels(series: pd.Series) -> pd.Series:
    """Cells without a label: NaN/None or an empty string. The text "nan" is a label like any other.
    Each distinct label is looked at once (a million cells hold a few hundred labels)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    blank = np.array([isinstance(v, str) and not v.strip() for v in uniques] + [True], dtype=bool)
    return pd.Series(blank[codes], index=series.index)  # code -1 (NaN/None) takes the last entry


def _unlabelled_name(series: pd.Series) -> str:
    """A name for the group of unlabelled cells that no real cluster has."""
    taken = set(series.dropna().astype(str))
    name, k = UNLABELLED, 1
    while name in taken:
        k += 1
        name = f"{UNLABELLED}_{k}"
    return name


def cluster_labels(labels) -> pd.Categorical:
    """One text label per cell, as a categorical (an integer code per cell into the distinct
    labels' text: a million cells hold no million strings); cells without a label (NaN, None,
    empty) form one group whose name no real cluster has (a real cluster named "nan" stays apart
    from them). Labels equal as text (1 and "1") are one cluster."""
    series = pd.Series(labels)
    missing = _missing_labels(series)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # text made once per distinct label; unlabelled cells (code -1 or a blank label) share one name
    text = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    if missing.any():
        text = np.append(text, _unlabelled_name(series)).astype(object)
        codes = np.where(missing.to_numpy(), len(text) - 1, codes)
    categories, inverse = np.unique(text.astype(str), return_inverse=True)
    # only the labels some cell has (not a blank label's text: its cells are unlabelled now)
    used = np.bincount(inverse[codes], minlength=len(categories)) > 0 if len(codes) else np.zeros(len(categories), bool)
    renumber = np.cumsum(used) - 1
    return pd.Categorical.from_codes(renumber[inverse][codes] if len(codes) else codes,
                                     categories=pd.Index(categories[used], dtype=object))


@dataclass(frozen=True)
class DataProfile:
    """What kind of values a layer holds, read from the values alone (recorded in params.json).

    ``kind``: ``sparse_counts`` (non-negative integers with many zeros: MIBI/IMC/RNA counts),
    ``raw_intensities`` (non-negative, untransformed, up to thousands), ``log_normalised``
    (non-negative, non-integer, zeros common, small maximum), ``continuous_with_negatives``
    (cytometry after arcsinh/logicle: noise around zero, few exact zeros), ``standardised``
    (z-scores), ``gate_rescaled`` (each marker rescaled around its manual gate, as scimap's rescale
    does: :func:`rescaled_gate`), or ``transformed`` (non-negative, small range, few zeros).
    """

    kind: str
    zero_share: float
    negative_share: float
    maximum: float
    integer: bool
    suggested_cofactor: float | None = None  # arcsinh cofactor to suggest for raw values
    gate: float | None = None  # kind gate_rescaled: the value every marker's gate was rescaled to
    ungated: tuple[str, ...] = ()  # kind gate_rescaled: markers that end at the gate (no cell passes it)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        kind = (f"values rescaled around per-marker gates at {self.gate:g}" if self.gate is not None
                else self.kind.replace('_', ' '))
        return (f"{kind} (zeros {self.zero_share:.0%}, negative {self.negative_share:.0%}, "
                f"maximum {self.maximum:.4g}{', integers' if self.integer else ''})")


# scimap's rescale (sm.pp.rescale) maps each marker's values below its gate onto 0..0.5 and those
# above onto 0.5..1, so the gate of every marker lands at 0.5
RESCALE_GATE = 0.5
UNIT_TOLERANCE = 1e-6  # the rescale's arithmetic leaves the last bit (0.9999999999999999)


def looks_unit_rescaled(counts: ValueCounts) -> bool:
    """Every marker with values starts at exactly 0 and ends at exactly 1, or at 0.5 (scimap's rescale
    maps a marker whose gate lies above all its cells onto 0..0.5), and the values are not just 0/1
    calls: the signature of per-marker min-max scaling, such as scimap's rescale around gates."""
    lo, hi = counts.column_lo, counts.column_hi
    measured = ~np.isnan(lo)
    lo, hi = lo[measured], hi[measured]
    one = np.abs(hi - 1.0) <= UNIT_TOLERANCE
    return (not counts.integer and lo.size >= 2 and bool(np.all(np.abs(lo) <= UNIT_TOLERANCE))
            and bool(np.all(one | (np.abs(hi - RESCALE_GATE) <= UNIT_TOLERANCE)))
            and int(np.count_nonzero(one)) * 2 > hi.size)


def rescaled_gate(counts: ValueCounts) -> float | None:
    """The value a rescale around manual gates put every marker's gate at (0.5), when the layer
    shows it beyond doubt: every marker spans exactly 0..1 or 0..0.5 (:func:`looks_unit_rescaled`)
    and at least one ends at exactly 0.5. Plain min-max scaling ends every marker at 1; only a
    rescale around gates maps a marker that no cell passes onto 0..0.5. None otherwise."""
    if not looks_unit_rescaled(counts):
        return None
    hi = counts.column_hi[~np.isnan(counts.column_hi)]
    return RESCALE_GATE if bool(np.any(np.abs(hi - RESCALE_GATE) <= UNIT_TOLERANCE)) else None


def profile_values(matrix, layer_name: str = "", names: Sequence | None = None) -> DataProfile:
    """Classify a layer's values (see :class:`DataProfile`); implicit sparse zeros count as zeros."""
    return value_profile(count_values(matrix), layer_name, names)


def columns_profile(counts: ValueCounts, names: Sequence, layer, layer_names: Sequence, layer_name: str) -> DataProfile:
    """The :class:`DataProfile` of some columns (``counts`` of the markers ``names``) of ``layer``.
    A rescale around gates is recognised by a marker that ends at its gate; when the columns look
    rescaled but none ends there, the whole layer is looked at (one more pass, only then)."""
    profile = value_profile(counts, layer_name, names)
    if profile.gate is None and len(names) < len(layer_names) and looks_unit_rescaled(counts):
        whole = value_profile(count_values(layer), layer_name, layer_names)
        if whole.gate is not None:
            return replace(profile, kind=whole.kind, gate=whole.gate, ungated=whole.ungated)
    return profile


def value_profile(counts: ValueCounts, layer_name: str = "", names: Sequence | None = None) -> DataProfile:
    """The :class:`DataProfile` of a layer's :class:`ValueCounts`; ``names``: its markers, in order
    (they name the markers a rescale around gates left wholly below theirs)."""
    n_total, implicit = counts.n_total, counts.implicit
    if counts.n_finite == 0:
        return DataProfile("empty", 1.0, 0.0, 0.0, True)
    zeros = (counts.n_zero + implicit) / max(n_total, 1)
    negative = counts.n_negative / max(n_total, 1)
    lo, hi, integer = counts.lo, counts.hi, counts.integer
    cofactor = None
    gate = rescaled_gate(counts)
    if gate is not None:
        kind = "gate_rescaled"
    elif lo < 0 and looks_standardised(counts, layer_name) and -lo > SMALL_NEGATIVE_SHARE * max(hi, 0.0):
        kind = "standardised"
    elif hi > RAW_INTENSITY_MAX or (integer and hi > RAW_COUNT_MAX):
        kind = "sparse_counts" if integer and zeros >= 0.2 else "raw_intensities"
        # mass cytometry's counts sit near zero (cofactor 5); imaging/flow intensities do not (150)
        near_zero = (counts.n_near_zero + implicit) / max(n_total, 1)
        cofactor = 5.0 if near_zero >= 0.25 else 150.0
    elif lo < 0:
        kind = "continuous_with_negatives"
    elif zeros >= 0.2 and not integer:
        kind = "log_normalised"
    else:
        kind = "transformed"
    ungated: tuple[str, ...] = ()
    if gate is not None and names is not None:
        ungated = tuple(str(m) for m, top in zip(names, counts.column_hi) if abs(top - gate) <= UNIT_TOLERANCE)
    return DataProfile(kind, zeros, negative, hi, integer, cofactor, gate, ungated)


def check_clusters(labels) -> list[Diagnostic]:
    """Check cluster labels (array, list, pandas Series or Categorical), one per cell."""
    series = pd.Series(labels)
    diags: list[Diagnostic] = []
    missing = _missing_labels(series)
    if missing.any():
        diags.append(Diagnostic(MISSING_LABELS, f"{int(missing.sum())} of {len(series)} cells have no cluster label "
                                f"(empty or NaN); they are annotated together as the group '{_unlabelled_name(series)}'",
                                hint="fill or drop those cells before annotating, or let ctr cluster (drop --annotation-only)"))
    if isinstance(series.dtype, pd.CategoricalDtype):
        sizes = series.value_counts(sort=False)
        empty = [str(c) for c in sizes.index[sizes.to_numpy() == 0]]
        if empty:
            diags.append(Diagnostic(EMPTY_CATEGORIES,
                                    f"cluster column has {len(empty)} categories without cells, ignored: {preview_names(empty)}"))
    sizes = pd.Series(cluster_labels(series)).value_counts()
    sizes = sizes[sizes > 0]
    if len(sizes) == 1 and len(series) > 1:
        diags.append(Diagnostic(SINGLE_CLUSTER, f"all {len(series)} cells are in one cluster ('{sizes.index[0]}')",
                                hint="annotation then gives every cell the same label; cluster first "
                                     "(drop --annotation-only) or pass another --cluster-key"))
    singletons = sorted(str(c) for c in sizes.index[sizes.to_numpy() == 1])
    if singletons and len(sizes) > 1:
        diags.append(Diagnostic(SINGLETON_CLUSTERS,
                                (f"{len(singletons)} clusters have a single cell" if len(singletons) > 1
                                 else "1 cluster has a single cell") + f": {preview_names(singletons)}",
                                hint="statistics on one cell are fragile; consider merging them or a lower --resolution"))
    return diags


def duplicate_cell_share(matrix) -> float:
    """Share of the cells with a non-zero value whose values repeat an earlier cell exactly (all-zero
    cells are empty, not copies). Rows are hashed in blocks: memory stays bounded for sparse input."""
    n_cells = matrix.shape[0]
    hashes, nonempty = [], []
    for start in range(0, n_cells, _HASH_BLOCK):
        block = matrix[start:start + _HASH_BLOCK]
        block = np.asarray(block.toarray() if sp.issparse(block) else block)
        hashes.append(pd.util.hash_pandas_object(pd.DataFrame(block), index=False).to_numpy())
        nonempty.append((block != 0).any(axis=1))
    if not hashes:
        return 0.0
    keep = np.concatenate(nonempty)
    rows = pd.Series(np.concatenate(hashes)[keep])
    return float(rows.duplicated().mean()) if len(rows) else 0.0


def check_duplicate_cells(matrix, *, layer_name: str) -> list[Diagnostic]:
    """CTR516 when ``DUPLICATE_CELL_SHARE`` or more of the cells are exact copies of other cells:
    clustering splits identical cells into many tiny clusters and slows every stage down."""
    share = duplicate_cell_share(matrix)
    if share < DUPLICATE_CELL_SHARE:
        return []
    return [Diagnostic(DUPLICATE_CELLS,
                       f"layer '{layer_name}': {share:.1%} of the cells (with any non-zero value) are exact copies "
                       "of other cells; clustering copies gives many tiny clusters",
                       hint="drop repeated cells first (e.g. adata = adata[~adata.to_df().duplicated().to_numpy()]) "
                            "or check how the file was assembled")]
