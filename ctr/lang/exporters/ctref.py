"""The reference tool's JSON marker map: ``_marker_map_metadata``, ``_gating_params``,
``_cell_state_markers`` and types with ``markers`` / ``anti_markers`` / ``subtypes``."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from ctr import __version__
from ctr.lang.export import to_json_data
from ctr.rules.model import PATH_SEP, CellType, Ruleset
from ctr.rules.states import ALL


def _type(node: CellType, losses: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"markers": node.panel_marker_names}
    if node.anti:
        out["anti_markers"] = node.anti_names
    where = f"'{node.path_str}'"
    if len(node.path) > 1 and (node.requires or node.vetoes):
        losses.append(f"{where}: requirements and vetoes below the roots have no place in the reference tool's map; dropped")
    if node.conditions:
        losses.append(f"{where}: conditions are dropped")
    if node.overrides.explicit():
        losses.append(f"{where}: threshold overrides are dropped")
    if node.groups:
        losses.append(f"{where}: marker groups ({', '.join(node.groups)}) are written as their members")
    if node.children:
        out["subtypes"] = {child.name: _type(child, losses) for child in node.children}
    return out


def write(ruleset: Ruleset) -> tuple[str, list[str]]:
    losses: list[str] = []
    ours = to_json_data(ruleset)  # roots' requirements/vetoes and level defaults already in the guide's form
    meta = dict(ruleset.meta)
    meta.setdefault("version", "1.0")
    meta.setdefault("description", ruleset.description or ruleset.name)
    meta["exported_by"] = f"ctr {__version__}"
    meta["exported"] = _dt.date.today().isoformat()
    data: dict[str, Any] = {"_marker_map_metadata": meta}
    # the reference tool skips every '_' key, so our name and description travel along unharmed
    data.update({k: ours[k] for k in ("_ruleset", "_description") if k in ours})
    if "_gating_params" in ours:
        gating = {k: v for k, v in ours["_gating_params"].items()
                  if k in ("root_hard_requirements", "root_veto_markers", "level_defaults")}
        if gating:
            data["_gating_params"] = gating
        if set(ours["_gating_params"]) - set(gating):
            losses.append("gating parameters other than root requirements, root vetoes and level defaults are dropped")
    for key in ("_scoring_params", "_refinement_params", "_aliases", "_thresholds"):
        if key in ours:
            losses.append(f"{key[1:].replace('_', ' ')} have no place in the reference tool's map; dropped")
    if ruleset.states:
        data["_cell_state_markers"] = {"states": {s.name: _state(s, losses) for s in ruleset.states}}
    for root in ruleset.roots:
        data[root.name] = _type(root, losses)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n", losses


def _state(state, losses: list[str]) -> dict[str, Any]:
    include = [p.replace(PATH_SEP, "/") for p in state.applies_to] or [ALL]
    scope: dict[str, Any] = {"include": include, "match": "all" if include == [ALL] else "prefix"}
    if state.excludes:
        scope.update(exclude=[p.replace(PATH_SEP, "/") for p in state.excludes], exclude_match="prefix")
    if state.anti or state.conditions:
        losses.append(f"cell state '{state.name}': anti-markers and conditions are dropped")
    out: dict[str, Any] = {"markers": state.panel_marker_names, "rules": [{"rule_id": f"{state.name}_scope", "scope": scope}]}
    if state.description:
        out["description"] = state.description
    return out
