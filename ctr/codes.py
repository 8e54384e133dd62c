"""Every diagnostic code a user can see, in one table: code, severity, title and where it is
documented (the ``## CODE title`` section of docs/errors.md, which a test checks field by field).

Modules import the constants they emit; nothing registers codes at import time, so the table is
complete as soon as this module is imported, and a diagnostic with a code not listed here is a
bug (:class:`ctr.diagnostics.Diagnostic` refuses it). Ranges: CTR1xx syntax, CTR2xx ruleset
structure, CTR3xx the ruleset against a panel, CTR4xx parameters, CTR5xx input data, CTR6xx run
directory and outputs, CTR7xx evaluation against reference labels.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

Severity = Literal["error", "warning", "info"]
ERRORS_DOC = "docs/errors.md"


class Code(NamedTuple):
    """One diagnostic code: its default severity, its one-line title and its documentation
    (``CODES[code][0]`` and ``[1]`` are the severity and title, as they were before the table)."""

    severity: Severity
    title: str
    code: str

    @property
    def heading(self) -> str:
        """The section heading of docs/errors.md: ``CTR206 title (warning)``; errors carry no suffix."""
        return self.code + " " + self.title + ("" if self.severity == "error" else f" ({self.severity})")

    @property
    def doc(self) -> str:
        """Where the code is documented: docs/errors.md and the heading's anchor."""
        slug = re.sub(r"[^\w\- ]", "", self.heading.lower()).replace(" ", "-")
        return f"{ERRORS_DOC}#{slug}"


CODES: dict[str, Code] = {}


def _code(code: str, severity: Severity, title: str) -> str:
    CODES[code] = Code(severity, title, code)
    return code


# CTR1xx syntax
UNEXPECTED_TOKEN = _code("CTR101", "error", "unexpected token")
UNTERMINATED_STRING = _code("CTR102", "error", "unterminated string")
UNEXPECTED_CHAR = _code("CTR103", "error", "unexpected character")
TOO_DEEP = _code("CTR104", "error", "expression nested too deeply")
INVALID_YAML = _code("CTR105", "error", "invalid YAML")
INVALID_JSON = _code("CTR106", "error", "invalid JSON")
BAD_ESCAPE = _code("CTR107", "error", "invalid escape in a quoted string")
TYPES_TOO_DEEP = _code("CTR108", "error", "cell types nested too deeply")
BAD_OPERATOR = _code("CTR109", "error", "comparison operator not allowed here")
KIND_MISMATCH = _code("CTR110", "error", "number where a condition is needed, or the reverse")
BAD_NUMBER = _code("CTR111", "error", "invalid number")
UNCLOSED_BRACE = _code("CTR112", "error", "'{' never closed")

# CTR2xx ruleset structure
DUPLICATE_NAME = _code("CTR201", "error", "two sibling cell types with the same name")
UNKNOWN_KEY = _code("CTR202", "error", "unknown key")
INCLUDE_MISSING = _code("CTR203", "error", "include file not found")
INCLUDE_CYCLE = _code("CTR204", "error", "include cycle")
PATH_NOT_FOUND = _code("CTR205", "error", "extend/replace/remove path not found")
EMPTY_TYPE = _code("CTR206", "warning", "cell type with no markers and no children")
INCLUDE_ESCAPES = _code("CTR207", "error", "include escapes the ruleset folder")
INCLUDE_TOO_DEEP = _code("CTR208", "error", "includes nested too deeply")
FILE_TOO_LARGE = _code("CTR209", "error", "ruleset file too large")
BAD_SHAPE = _code("CTR210", "error", "value has the wrong shape")
NOT_FOUND = _code("CTR211", "error", "ruleset not found")
ABSENT_ROOT = _code("CTR212", "warning", "gating entry names a cell type that is not a root of the map")
UNKNOWN_FORMAT = _code("CTR213", "error", "unknown ruleset file format")
UNREADABLE = _code("CTR214", "error", "ruleset file cannot be read")
DUPLICATE_KEY = _code("CTR215", "error", "key written twice in one mapping")
DUPLICATE_RULESET = _code("CTR216", "warning", "'ruleset' statement written twice")
IMPORT_LOSS = _code("CTR230", "warning", "imported rule approximated")
IMPORT_BAD = _code("CTR231", "error", "another tool's marker file cannot be read")
DUPLICATE_STATE = _code("CTR235", "error", "cell state declared twice")
STATE_SCOPE = _code("CTR236", "error", "cell state applies to an unknown cell type")
STATE_APPROX = _code("CTR237", "warning", "cell state scope approximated")
UNKNOWN_META = _code("CTR238", "warning", "unknown metadata key in a JSON marker map (ignored)")
PLACEHOLDER = _code("CTR239", "warning", "deprecated placeholder cell type skipped")
POS_AND_ANTI = _code("CTR250", "error", "marker is both positive and anti on one cell type")
NO_MARKERS = _code("CTR251", "error", "cell type has no positive markers")
REQUIRE_UNLISTED = _code("CTR252", "warning", "requirement on a marker the cell type does not list")
VETO_UNLISTED = _code("CTR253", "warning", "veto on a marker that is not an anti-marker of the cell type")
VETO_POSITIVE = _code("CTR254", "error", "veto marker is also a positive marker of the cell type")
ALIAS_CONFLICT = _code("CTR255", "error", "alias name appears in more than one place")
THRESHOLD_UNUSED = _code("CTR256", "warning", "absolute threshold on a marker no rule uses")
THRESHOLD_DUPLICATE = _code("CTR257", "error", "two absolute thresholds for one marker")
CONDITION_UNLISTED = _code("CTR258", "info", "condition uses a marker the cell type does not list")
MARKER_REPEATED = _code("CTR259", "warning", "marker listed twice on one cell type")
SINGLE_CHILD = _code("CTR260", "warning", "cell type has a single subtype")
EMPTY_RULESET = _code("CTR261", "error", "ruleset defines no cell types")

# CTR3xx the ruleset against a panel
PANEL_MISSING = _code("CTR300", "warning", "marker not found in the panel")
NEVER_COVERED = _code("CTR301", "warning", "cell type is not assessable on this panel")
INDISTINGUISHABLE = _code("CTR302", "warning", "sibling cell types have identical resolved markers")
REQUIRE_MISSING = _code("CTR303", "warning", "required marker is missing from the panel")
NO_OVERLAP = _code("CTR304", "error", "no ruleset marker is present in the panel")
ALIAS_SHADOWS = _code("CTR305", "warning", "alias joins names the panel has as separate markers")
SAME_PANEL_MARKER = _code("CTR306", "warning", "two markers of one cell type resolve to the same panel marker")
CONDITION_MISSING = _code("CTR307", "warning", "condition reads a marker missing from the panel")
AMBIGUOUS_MARKER = _code("CTR308", "warning", "marker matches several panel columns")

# CTR4xx parameters
UNKNOWN_PARAM = _code("CTR420", "error", "unknown parameter name")
BAD_PARAM = _code("CTR421", "error", "parameter value out of range or of the wrong type")
BAD_ANTI_AGG = _code("CTR422", "error", "unknown anti_agg value")

# CTR5xx input data
EMPTY_DATA = _code("CTR501", "error", "the input has no cells or no markers")
DUPLICATE_MARKERS = _code("CTR502", "error", "duplicate marker names")
NON_FINITE = _code("CTR503", "warning", "NaN or infinite values")
NEGATIVE_VALUES = _code("CTR504", "warning", "negative values")
RAW_COUNTS = _code("CTR505", "warning", "values look like raw counts")
RAW_INTENSITIES = _code("CTR506", "warning", "values look like untransformed intensities")
ALL_FLAT = _code("CTR507", "error", "every marker is constant")
SINGLE_CLUSTER = _code("CTR508", "warning", "one single cluster for all cells")
EMPTY_CATEGORIES = _code("CTR509", "info", "empty categories in the cluster column")
SINGLETON_CLUSTERS = _code("CTR510", "warning", "clusters with one cell")
TECHNICAL_MOVED = _code("CTR511", "info", "technical channels left out of clustering")
LOW_VARIANCE = _code("CTR512", "info", "near-constant markers left out of clustering")
NO_CLUSTERING_MARKERS = _code("CTR513", "error", "no marker left to cluster on")
IMPUTED_FOR_CLUSTERING = _code("CTR514", "warning", "NaN/infinite values filled for clustering")
MISSING_LABELS = _code("CTR515", "warning", "cells without a cluster label")
DUPLICATE_CELLS = _code("CTR516", "warning", "many cells are exact copies of other cells")
UNIT_RESCALED = _code("CTR517", "warning", "every marker rescaled to exactly 0..1")
RESCALED_AROUND_GATES = _code("CTR518", "info", "values rescaled around per-marker gates")
MARKER_NAMES_COLUMN = _code("CTR519", "info", "marker names read from a var column")

# CTR7xx evaluation against reference labels
BAD_MAPPING = _code("CTR711", "error", "evaluation mapping is not a mapping of labels to cell types")
UNKNOWN_MAPPED_TYPE = _code("CTR712", "error", "evaluation mapping names a cell type the ruleset does not have")
UNUSED_MAPPING_KEY = _code("CTR713", "warning", "evaluation mapping key is not a reference label")
UNMATCHED_TRUTH = _code("CTR714", "warning", "reference label matches no cell type of the ruleset")
