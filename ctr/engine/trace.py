"""Trace records (decision_steps.csv): one row per gate evaluation, selection or vote, and the
provenance of every threshold (which rule or parameter layer set it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from ctr.rules.model import CellType, Ruleset
from ctr.rules.params import ResolvedParams, level_table

TRACE_COLUMNS = [
    "step", "cluster", "level", "path", "cell_type", "kind", "gate", "subject",
    "observed", "operator", "threshold", "passed", "rule_loc", "param_source", "reason",
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


def trace_frame(steps: list[Step]) -> pd.DataFrame:
    """The trace table; ``step`` numbers the records within each cluster from 1."""
    frame = pd.DataFrame([asdict(s) for s in steps], columns=TRACE_COLUMNS[1:])
    frame.insert(0, "step", frame.groupby("cluster", sort=False).cumcount() + 1 if len(frame) else [])
    return frame.astype({"observed": float, "threshold": float, "passed": bool}) if len(frame) else frame


@dataclass(frozen=True)
class Provenance:
    rule_loc: str
    source: str

    def cite(self, what: str) -> str:
        """' (rule file:line:col)' for a written rule, else ' (<what>, <layer>)'."""
        if ":" in self.rule_loc or self.rule_loc.endswith((".ctr", ".yaml", ".yml", ".json")):
            return f" (rule {self.rule_loc})"
        return f" ({what}, {self.source})"


def level_key_provenance(node: CellType, level: int, key: str, params: ResolvedParams, ruleset: Ruleset) -> Provenance:
    """Where the level threshold ``key`` used for ``node`` came from: its own override, the
    ruleset's level block (cited by location), or a parameter layer (default/preset/tissue/cli)."""
    if getattr(node.overrides, key) is not None:
        loc = node.override_locs.get(key)
        return Provenance(str(loc) if loc is not None else "node", "node")
    source = params.level_source(level, key)
    if source == "ruleset":
        table = level_table(params.gating)
        used = level if level in table else max(k for k in table if k <= level)
        loc = ruleset.param_locs.get(f"gating.level_defaults.{used}.{key}")
        return Provenance(str(loc) if loc is not None else "ruleset", "ruleset")
    return Provenance(source, source)


def param_provenance(key: str, params: ResolvedParams, ruleset: Ruleset) -> Provenance:
    """Provenance of a non-level parameter such as ``gating.anti_penalty_hard_gate``."""
    source = params.source_of(key)
    if source == "ruleset":
        loc = ruleset.param_locs.get(key)
        return Provenance(str(loc) if loc is not None else "ruleset", "ruleset")
    return Provenance(source, source)


def rule_provenance(loc) -> Provenance:
    """A threshold written in a node's own rule (require/veto/when)."""
    return Provenance(str(loc) if loc is not None else "ruleset", "ruleset")


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
