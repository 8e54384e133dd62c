"""Each marker's positivity split in words: ``ctr explain --markers``, the report's "Marker
thresholds" section and the split named beside a requirement or veto.

Read from ``marker_thresholds.csv`` (one row per panel marker the ruleset uses); a run written
before that file existed has no splits, and every view then leaves them out.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ctr.engine.trace import isnan, read_float, read_text
from ctr.errors import UsageError
from ctr.report.rundir_view import RunDir, load_run

FORMATS = ("text", "markdown", "json")

# what each threshold_method means (docs/semantics.md, "Positivity")
METHODS = {
    "mixture": "two populations; split where both are equally likely",
    "log_mixture": "two populations on the log scale (skewed counts); split where both are equally likely",
    "floor": "one population above a floor; positive = above the floor",
    "tail": "one population; positive = beyond median + split_tail_mads robust SD",
    "quantile": "the positive_quantile of the non-zero values",
    "absolute": "a threshold line of the ruleset",
    "gate": "every marker cut at the value scoring.gate",
    "rescaled": "the layer was rescaled around manual gates (scimap's rescale); cut at the gate",
    "any": "a marker group: positive where any member is positive by its own split",
    "none": "no split (flat marker or no values)",
}


@dataclass(frozen=True)
class MarkerSplit:
    """Where one panel marker turns positive and how that was decided."""

    marker: str
    threshold: float
    op: str
    source: str  # auto | quantile | gate | absolute
    method: str  # mixture | log_mixture | floor | tail | rescaled | quantile | gate | absolute | none
    quality: float  # Ashman's D of the two-population fit; NaN when none was fitted
    positive_share: float
    flat: bool

    @property
    def rule(self) -> str:
        """'EPCAM >= 1.509' (or 'EPCAM: no split')."""
        if self.method == "none" or isnan(self.threshold):
            return f"{self.marker}: no split"
        return f"{self.marker} {self.op} {number(self.threshold)}"

    @property
    def phrase(self) -> str:
        """The split as one short clause: 'EPCAM >= 1.509 (mixture, D 9.69)'."""
        quality = f", D {self.quality:.2f}" if not isnan(self.quality) else ""
        return f"{self.rule} ({self.method}{quality})"

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def number(value: float) -> str:
    """A threshold as shown: four significant digits (splits range from 0.01 to raw counts)."""
    if value is None or isnan(value):
        return "n/a"
    return f"{value:.4g}"


def marker_splits(run: RunDir) -> list[MarkerSplit]:
    """The run's splits in panel order; empty for a run without marker_thresholds.csv."""
    table = run.thresholds
    if table.empty or not {"marker", "threshold"} <= set(table.columns):
        return []
    rows = table.to_dict("records")
    return [
        MarkerSplit(
            marker=str(r["marker"]),
            threshold=read_float(r.get("threshold")),
            op=str(r.get("threshold_op") or ">="),
            source=read_text(r.get("threshold_source")),
            method=read_text(r.get("threshold_method")) or read_text(r.get("threshold_source")),
            quality=read_float(r.get("threshold_quality")),
            positive_share=read_float(r.get("positive_share")),
            flat=str(r.get("flat", "")).lower() in ("true", "1"),
        )
        for r in rows
    ]


def splits_by_name(run: RunDir) -> dict[str, MarkerSplit]:
    """Splits keyed by panel name and by the ruleset's name for it (the trace names ruleset markers)."""
    splits = {s.marker: s for s in marker_splits(run)}
    resolution = run.resolution
    if splits and not resolution.empty and {"marker", "panel_name"} <= set(resolution.columns):
        for name, panel in zip(resolution["marker"].astype(str), resolution["panel_name"].astype(str)):
            if panel in splits:
                splits.setdefault(name, splits[panel])
    return splits


def explain_markers(run_dir: str | Path, fmt: str = "text") -> str:
    """``ctr explain RUN_DIR --markers``: every marker's split, method and fit quality."""
    return render_splits(marker_splits(load_run(run_dir)), fmt)


def render_splits(splits: list[MarkerSplit], fmt: str = "text") -> str:
    """The splits as an aligned text table, a markdown table or JSON."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown explain format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([s.to_dict() for s in splits], indent=2)
    if not splits:
        return ("This run has no marker_thresholds.csv (written by ctr before positivity splits were "
                "recorded); rerun `ctr annotate` to see each marker's split.\n")
    cells = [{**table_cells(s), "meaning": METHODS.get(s.method, "")} for s in splits]
    header, rows = list(cells[0]), [list(c.values()) for c in cells]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _when(s: MarkerSplit) -> str:
    return "never (no split)" if s.method == "none" or isnan(s.threshold) else f"{s.op} {number(s.threshold)}"


def _quality(s: MarkerSplit) -> str:
    return "" if isnan(s.quality) else f"{s.quality:.2f}"


def _share(s: MarkerSplit) -> str:
    return "" if isnan(s.positive_share) else f"{s.positive_share:.1%}"


def table_cells(s: MarkerSplit) -> dict[str, str]:
    """One row of the thresholds table, as text."""
    return {"marker": s.marker, "positive when": _when(s), "method": s.method, "quality (D)": _quality(s),
            "positive share": _share(s)}



