"""What one ruleset file says, before includes and edits are applied: an ordered list of statements.

The three spellings (DSL, YAML, JSON marker map) each turn a file into a :class:`Document`;
:mod:`ctr.lang.loader` assembles documents into one :class:`~ctr.rules.model.Ruleset`.
This module also holds the checks every spelling shares: parameter keys and values, and building
a :class:`~ctr.rules.model.CellType` from its parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from ctr.codes import BAD_ANTI_AGG, BAD_PARAM, UNKNOWN_PARAM
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.rules.model import Alias, CellType, Condition, MarkerRef, Requirement, Threshold, Veto
from ctr.rules.params import GatingParams, LevelParams, RefinementParams, ScoringParams


MAX_TYPE_DEPTH = 64  # nesting of cell types; deeper trees are rejected (CTR108)

StatementKind = Literal[
    "ruleset", "include", "alias", "threshold", "setting", "type", "extend", "replace", "remove", "state", "meta"
]
BlockKind = Literal["scoring", "gating", "refinement", "level", "override"]

_MODELS: dict[str, type[BaseModel]] = {
    "scoring": ScoringParams,
    "gating": GatingParams,
    "refinement": RefinementParams,
    "level": LevelParams,
    "override": LevelParams,
}


@dataclass
class Setting:
    """One parameter as written: ``anti_weight 0.5`` in ``scoring { }``, or ``min_gap 0.3`` in ``level 1 { }``."""

    block: BlockKind
    key: str
    value: Any
    loc: SourceLoc | None
    level: int | None = None

    @property
    def param_key(self) -> str:
        """The dotted key used in ``Ruleset.param_locs`` and parameter provenance."""
        if self.block == "level":
            return f"gating.level_defaults.{self.level}.{self.key}"
        return f"{self.block}.{self.key}"


@dataclass
class Statement:
    kind: StatementKind
    loc: SourceLoc | None
    name: str = ""  # ruleset name, include path, or the path of extend/replace/remove
    description: str | None = None
    payload: Any = None  # Alias, Threshold, Setting, CellType, CellState, or a dict of metadata (meta)


@dataclass
class Document:
    file: str
    text: str
    statements: list[Statement] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    syntax_ok: bool = True


def valid_keys(block: BlockKind) -> list[str]:
    keys = list(_MODELS[block].model_fields)
    if block == "gating":
        keys.remove("level_defaults")  # written as `level N { ... }` / `levels:` / `level_defaults`
    return keys


def check_setting(setting: Setting) -> tuple[Any, Diagnostic | None]:
    """Validate one parameter on its own; return the converted value or a located diagnostic."""
    keys = valid_keys(setting.block)
    what = {"level": f"level {setting.level}", "override": "cell type threshold override"}.get(
        setting.block, setting.block
    )
    if setting.key not in keys:
        msg = f"unknown {what} parameter '{setting.key}'{did_you_mean(setting.key, keys)}"
        return None, Diagnostic(UNKNOWN_PARAM, msg, setting.loc, hint="valid keys: " + ", ".join(keys))
    model = _MODELS[setting.block]
    try:
        block = model.model_validate({setting.key: setting.value})
    except ValidationError as exc:
        if setting.key == "anti_agg":
            valid = list(get_args(ScoringParams.model_fields["anti_agg"].annotation))
            msg = f"unknown anti_agg value {setting.value!r}{did_you_mean(str(setting.value), valid)}"
            return None, Diagnostic(BAD_ANTI_AGG, msg, setting.loc, hint="valid values: " + ", ".join(valid))
        err = exc.errors()[0]
        msg = f"{what} parameter '{setting.key}': {err['msg'].lower()} (got {setting.value!r})"
        return None, Diagnostic(BAD_PARAM, msg, setting.loc)
    return getattr(block, setting.key), None


def make_type(
    name: str,
    loc: SourceLoc | None,
    *,
    markers: list[MarkerRef] = (),
    anti: list[MarkerRef] = (),
    requires: list[Requirement] = (),
    vetoes: list[Veto] = (),
    conditions: list[Condition] = (),
    cite: list[str] = (),
    overrides: list[Setting] = (),
    children: list[CellType] = (),
    diagnostics: list[Diagnostic],
) -> CellType:
    """Build a cell type; override values are checked and only the keys written end up set."""
    values, locs = {}, {}
    for setting in overrides:
        value, diag = check_setting(setting)
        if diag is not None:
            diagnostics.append(diag)
            continue
        values[setting.key] = value
        if setting.loc is not None:
            locs[setting.key] = setting.loc
    return CellType(
        name=name,
        loc=loc,
        markers=list(markers),
        anti=list(anti),
        requires=list(requires),
        vetoes=list(vetoes),
        conditions=list(conditions),
        cite=list(cite),
        overrides=LevelParams(**values),
        override_locs=locs,
        children=list(children),
    )


__all__ = [
    "Alias",
    "Document",
    "Setting",
    "Statement",
    "Threshold",
    "check_setting",
    "make_type",
    "valid_keys",
]
