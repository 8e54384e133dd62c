"""Trace records (decision_steps.csv): one row per gate evaluation, selection or vote, and the
provenance of every threshold (which rule or parameter layer set it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from ctr.diagnostics import SourceLoc
from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import ResolvedParams, Setting, node_key

TRACE_COLUMNS = [
    "step", "cluster", "level", "path", "cell_type", "kind", "gate", "subject",
    "observed", "operator", "threshold", "passed", "rule_loc", "param_source", "reason",
    "param_key", "scope", "shadowed_key", "shadowed_layer", "shadowed_value",
]


@dataclass
class Step:
    cluster: str
    level: int
    path: str
    cell_type: str
    kind: str  # gate | select | vote
    gate: str
    subject: str
    observed: float
    operator: str
    threshold: float
    passed: bool
    rule_loc: str
    param_source: str
    reason: str
    param_key: str = ""
    scope: str = ""
    shadowed_key: str = ""
    shadowed_layer: str = ""
    shadowed_value: float = math.nan

    @classmethod
    def provenance_columns(cls, prov: Provenance | None) -> dict:
        """The columns that say where a threshold came from."""
        if prov is None:
            return {}
        s, wider = prov.setting, prov.setting.shadowed
        out = {"param_key": s.key, "scope": s.scope}
        if wider is not None:
            out.update(shadowed_key=wider.key, shadowed_layer=wider.layer, shadowed_value=float(wider.value))
        return out


def trace_frame(steps: list[Step]) -> pd.DataFrame:
    """The trace table; ``step`` numbers the records within each cluster from 1."""
    frame = pd.DataFrame([asdict(s) for s in steps], columns=TRACE_COLUMNS[1:])
    frame.insert(0, "step", frame.groupby("cluster", sort=False).cumcount() + 1 if len(frame) else [])
    return frame.astype({"observed": float, "threshold": float, "passed": bool, "shadowed_value": float}) if len(frame) else frame


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

    def cite(self, what: str) -> str:
        """' (rule file:line:col)' for a written rule, else ' (<what>, <layer>)'."""
        if self.loc is not None:
            return f" (rule {self.loc})"
        return f" ({what}, {self.source})"


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


def fmt(value: float, digits: int = 2) -> str:
    """A number in a reason: fixed decimals; 'inf'; 'missing' for NaN."""
    if isinstance(value, (bool,)):
        return str(value).lower()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Two numbers compared in a reason, with enough decimals that unequal values look unequal."""
    for digits in (2, 3, 4, 6):
        fa, fb = fmt(a, digits), fmt(b, digits)
        if fa != fb or a == b:
            return fa, fb
    return fmt(a, 6), fmt(b, 6)


def opposite(op: str) -> str:
    return {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!=", "!=": "=="}[op]
