"""Trace records (decision_steps.csv): one row per gate evaluation, selection or vote, and the
provenance of every threshold (which rule or parameter layer set it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import pandas as pd

from ctr.diagnostics import SourceLoc, display_path
from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import ResolvedParams, Setting, node_key


@dataclass
class Step:
    """One row of the trace: a gate evaluated for one cell type in one cluster, a selection among
    siblings, a per-cell vote, or a refinement check. Values only; ``ctr.report`` words them.

    ``kind``/``gate``: ``gate`` rows name the gate (requirement, veto, coverage, enrichment,
    condition, anti_conflict); ``select`` rows the outcome (winner, ambiguous, none_passed, leaf);
    ``vote`` rows ``vote``; ``refine`` rows the action checked (relabel, subcluster, skip, override,
    merge). ``statistic`` is what was measured (pos_frac, enrichment, coverage, mean_enrichment,
    anti_penalty, condition, margin, vote_share, score, heterogeneity, n_cells, pieces,
    distinct_outcomes, action, plan), of ``marker`` where it is one marker's.
    """

    cluster: str
    level: int
    path: str
    cell_type: str
    kind: str
    gate: str
    marker: str = ""
    statistic: str = ""
    observed: float = math.nan
    comparison: str = ""  # the comparison that passes: observed <comparison> threshold
    threshold: float = math.nan
    passed: bool = True
    # where the threshold came from (docs/semantics.md, "Which value applies")
    param_key: str = ""
    layer: str = ""
    scope: str = ""
    file: str = ""
    line: float = math.nan  # NaN when the layer is not a file, or the file has no lines to cite
    col: float = math.nan
    shadowed_key: str = ""
    shadowed_layer: str = ""
    shadowed_value: float = math.nan
    # the ruleset's checksum when ``file`` is cited from the copy an earlier run stored in its input
    file_sha256: str = ""
    # what the statistic was computed over
    expression: str = ""  # a condition as written
    candidates: str = ""  # ";"-joined: ranked passing candidates (winner, ambiguous), all (none_passed), voted;
    # for a coverage gate, the subtypes whose passing carried it (gating.coverage_from_subtypes)
    markers: str = ""  # ";"-joined: markers on (coverage), resolved (enrichment), anti-markers (anti_conflict)
    absent: str = ""  # ";"-joined markers of the row that are not in the panel
    n_markers: float = math.nan  # markers listed (coverage) or resolved (enrichment)
    values: str = ""  # JSON: a condition's evaluation tree, vote shares
    step: int = 0  # running number within the cluster, filled by trace_frame

    def locate(self, prov: Provenance | None) -> Step:
        """This row with the columns that say where its threshold came from."""
        if prov is None:
            return self
        s, wider = prov.setting, prov.setting.shadowed
        self.param_key, self.layer, self.scope = s.key, s.layer, s.scope
        if prov.loc is not None:
            self.file = display_path(prov.loc.file) if prov.loc.file else ""
            self.line = float(prov.loc.line) if prov.loc.line is not None else math.nan
            self.col = float(prov.loc.column) if prov.loc.column is not None else math.nan
        if wider is not None:
            self.shadowed_key, self.shadowed_layer, self.shadowed_value = wider.key, wider.layer, float(wider.value)
        return self

    @classmethod
    def from_record(cls, record: dict) -> Step:
        """A row read back from decision_steps.csv (or a frame's ``to_dict("records")``)."""
        return cls(**{name: _READ[kind](record[name]) for name, kind in _FIELD_KINDS if name in record})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> list[Step]:
        """Every row of a trace frame, each as :meth:`from_record` reads it; converted column by
        column (a report reads tens of thousands of rows)."""
        names = [(name, kind) for name, kind in _FIELD_KINDS if name in frame.columns]
        columns = [_read_column(frame[name], kind) for name, kind in names]
        keys = [name for name, _ in names]
        return [cls(**dict(zip(keys, row))) for row in zip(*columns)]

    @property
    def location(self) -> str:
        """``file:line:col`` (as much as is known), empty when no file set the threshold."""
        parts = [self.file] if self.file else []
        if parts and self.line == self.line:
            parts.append(str(int(self.line)))
            if self.col == self.col:
                parts.append(str(int(self.col)))
        return ":".join(parts)


TRACE_COLUMNS = ["step", *(f.name for f in fields(Step) if f.name != "step")]


def read_float(value) -> float:
    """A value read back from a table as a float; NaN when it is empty or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_text(value) -> str:
    """A value read back from a table as text; "" when it is empty (None or NaN)."""
    return "" if value is None or isnan(value) else str(value)


def isnan(value) -> bool:
    """Whether ``value`` is a float NaN (text and None are not)."""
    return isinstance(value, float) and math.isnan(value)


def _read_int(value) -> int:
    return int(value) if read_float(value) == read_float(value) else 0


def _read_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


# how a value read back from a table becomes each type of Step field
_READ = {"str": read_text, "float": read_float, "int": _read_int, "bool": _read_bool}
_FIELD_KINDS = [(f.name, f.type) for f in fields(Step)]


def _read_column(column: pd.Series, kind: str) -> list:
    """A column's values as ``_READ[kind]`` reads each; whole columns of the type's own dtype at once."""
    dtype = column.dtype.kind
    if (kind == "float" and dtype in "fiub") or (kind == "int" and dtype in "iub") or (kind == "bool" and dtype == "b"):
        return column.astype(float).tolist() if kind == "float" else column.astype(int if kind == "int" else bool).tolist()
    if kind == "str":
        return [v if type(v) is str else read_text(v) for v in column.tolist()]
    read = _READ[kind]
    return [read(v) for v in column.tolist()]


def cite_stored_copy(steps: list[Step], ruleset: Ruleset) -> list[Step]:
    """Rows cited from a ruleset compiled from a stored copy carry that copy's checksum beside the
    original path (``file_sha256``), so a reader can tell whether the file on disk is the same."""
    if ruleset.stored_sha256:
        for step in steps:
            if step.layer == "ruleset" and step.file:
                step.file_sha256 = ruleset.stored_sha256
    return steps


def trace_frame(steps: list[Step]) -> pd.DataFrame:
    """The trace table; ``step`` numbers the records within each cluster from 1."""
    names = [f.name for f in fields(Step)]
    # every field is a scalar: a plain tuple per row (dataclasses.asdict deep-copies each value)
    frame = pd.DataFrame.from_records([tuple(getattr(s, n) for n in names) for s in steps], columns=names)
    frame = frame.reindex(columns=[*TRACE_COLUMNS[1:], "step"])
    frame["step"] = frame.groupby("cluster", sort=False).cumcount() + 1 if len(frame) else []
    frame = frame[TRACE_COLUMNS]
    floats = {c: float for c in ("observed", "threshold", "line", "col", "shadowed_value", "n_markers")}
    return frame.astype({**floats, "passed": bool}) if len(frame) else frame


@dataclass(frozen=True)
class Provenance:
    """Where a threshold came from: the setting (parameter key, layer, scope, and any wider value it
    kept out) and, when a file set it, the place in that file."""

    setting: Setting
    loc: SourceLoc | None = None
    shadowed_loc: SourceLoc | None = None

    @property
    def rule_loc(self) -> str:
        """``file:line:col`` of what set the threshold, else the layer's name."""
        return str(self.loc) if self.loc is not None else self.setting.layer

    @property
    def source(self) -> str:
        return self.setting.layer


def _located(setting: Setting, ruleset: Ruleset, node: CellType | None = None, loc: SourceLoc | None = None) -> SourceLoc | None:
    """Where a ruleset-layer setting was written: the marker's rule (``loc``), the type's own line, or
    the ruleset's parameter block. Other layers are not files the trace can cite."""
    if setting.layer != "ruleset":
        return None
    if loc is not None:
        return loc
    if setting.scope == "node" and node is not None and setting.key.startswith(f"gating.nodes.{node_key(node.path)}."):
        return node.override_locs.get(setting.key.rsplit(".", 1)[1])
    return ruleset.param_locs.get(setting.key)


def _provenance(setting: Setting, ruleset: Ruleset, node: CellType | None = None, loc: SourceLoc | None = None) -> Provenance:
    shadowed = _located(setting.shadowed, ruleset, node) if setting.shadowed is not None else None
    return Provenance(setting, _located(setting, ruleset, node, loc), shadowed)


def threshold_provenance(node: CellType, key: str, params: ResolvedParams, ruleset: Ruleset) -> Provenance:
    """The level threshold ``key`` used for ``node`` (scope before layer: the node's own value, else
    its level's), with the location that set it."""
    return _provenance(params.threshold(node, key), ruleset, node)


def param_provenance(key: str, params: ResolvedParams, ruleset: Ruleset) -> Provenance:
    """Provenance of a global parameter such as ``gating.anti_penalty_hard_gate``."""
    return _provenance(params.setting(key), ruleset)


def rule_provenance(loc: SourceLoc | None, value: float | None = None, *, scope: str = "marker",
                    node: CellType | None = None, key: str | None = None, params: ResolvedParams | None = None) -> Provenance:
    """A threshold written in a marker's or a type's own rule (require/veto/when). With ``node``,
    ``key`` and ``params``, the wider value it kept out is noted (``require M pos_frac >= x`` keeps
    the level's ``min_pos_frac`` out)."""
    setting = Setting(value, "", "ruleset", scope)
    if node is not None and key is not None and params is not None:
        setting = setting.keeping_out(params.threshold(node, key))
    return Provenance(setting, loc)  # only layers after the ruleset are noted, and they are not files
