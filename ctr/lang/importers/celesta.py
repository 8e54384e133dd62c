"""CELESTA's prior marker table: one row per cell type, ``Lineage_level`` as
``round_parent_self`` (round 1 types are roots; parent 0 = none), then one column per marker
(1 = expressed, 0 = not expressed, blank/NA = don't care) and optionally CELESTA's per-type
probability thresholds (``high_marker_threshold_anchor`` ...).

CELESTA scores each cell's marker-expression probabilities against the prior: a 0 weighs
against a type without forbidding it, so 0 becomes an anti-marker. Column headers such as
``CD31 - vasculature:Cyc_19_ch_3`` name the marker before " - " (or ":"). The per-type
probability thresholds have no counterpart in ctr's gates and are reported, not translated.
"""

from __future__ import annotations

import re

from ctr.lang.document import Document
from ctr.lang.importers.common import Draft, Imported, assemble, read_csv_rows

TOOL = "celesta"
LEVEL_COLUMN = "Lineage_level"
_THRESHOLD_COLUMNS = ("high_marker_threshold_anchor", "low_marker_threshold_anchor",
                      "high_marker_threshold_iteration", "low_marker_threshold_iteration")
_LEVEL = re.compile(r"^\s*(\d+)_(\d+)_(\d+)\s*$")


def looks_like(text: str) -> bool:
    first = text.lstrip("\ufeff").splitlines()[:1]
    return bool(first) and LEVEL_COLUMN in first[0]


def marker_name(header: str) -> str:
    """``"CD31 - vasculature:Cyc_19_ch_3"`` -> ``"CD31"``."""
    name = header.split(" - ", 1)[0]
    return name.split(":", 1)[0].strip()


def parse_document(text: str, file: str) -> Document:
    imp = Imported(file=file, text=text, tool=TOOL)
    rows = read_csv_rows(imp)
    description = f"imported from CELESTA prior {file}"
    if not rows or LEVEL_COLUMN not in rows[0][1]:
        imp.error(1, f"no '{LEVEL_COLUMN}' column: a CELESTA prior has the cell type, '{LEVEL_COLUMN}' "
                  "(round_parent_self) and one column per marker")
        return assemble(imp, description)
    header = rows[0][1]
    level_col = header.index(LEVEL_COLUMN)
    marker_cols = [(j, marker_name(h)) for j, h in enumerate(header)
                   if j > level_col and h and h not in _THRESHOLD_COLUMNS]
    threshold_cols = [j for j, h in enumerate(header) if h in _THRESHOLD_COLUMNS]
    by_index: dict[str, str] = {}
    parsed = []
    for line, cells in rows[1:]:
        name = cells[0] if cells else ""
        level = _LEVEL.match(cells[level_col]) if len(cells) > level_col else None
        if not name or level is None:
            imp.error(line, f"row {name or '(no name)'!r}: '{LEVEL_COLUMN}' must look like 2_5_6 "
                      "(round, parent's number, own number)")
            continue
        _, parent, own = level.groups()
        by_index[own] = name
        parsed.append((line, cells, name, parent))
    for line, cells, name, parent in parsed:
        parent_name = None
        if parent != "0":
            parent_name = by_index.get(parent)
            if parent_name is None:
                imp.error(line, f"'{name}' names parent number {parent}, which no row has")
                continue
        draft = Draft(name=name, line=line, parent=parent_name)
        for j, marker in marker_cols:
            cell = cells[j].strip().upper() if j < len(cells) else ""
            if cell in ("", "NA", "NAN"):
                continue
            try:
                value = float(cell)
            except ValueError:
                imp.error(line, f"'{name}', {marker}: {cells[j]!r} is not 1, 0 or blank")
                continue
            (draft.markers if value >= 0.5 else draft.anti).append(marker)
        values = [cells[j] for j in threshold_cols if j < len(cells) and cells[j]]
        if values:
            imp.loss(line, f"'{name}': CELESTA's marker-probability thresholds ({', '.join(values)}) have no "
                     "counterpart; ctr gates the type on its level thresholds instead")
        imp.drafts.append(draft)
    if any(d.anti for d in imp.drafts):
        imp.loss(rows[0][0], "0 (not expressed) weighs against a type in CELESTA's probabilities; here every 0 is "
                 "an anti-marker (a soft penalty)")
    return assemble(imp, description)
