"""Write a rule graph in any spelling: the DSL, YAML, or the guide's JSON marker map.

Exports are of the assembled graph (includes already applied). Importing an export gives a graph
with the same :meth:`~ctr.rules.model.Ruleset.canonical` form.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from ctr.errors import RulesetError
from ctr.rules.expr import quote_name
from ctr.rules.model import PATH_SEP, CellState, CellType, Ruleset

_LEVEL_KEYS = ("min_coverage", "min_pos_frac", "min_enrichment", "min_gap")


def _num(value: float | int) -> str:
    if isinstance(value, bool):
        raise TypeError("not a number")
    return str(value) if isinstance(value, int) else repr(float(value))


def _value(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _num(value)
    return quote_name(str(value))


def _names(names) -> str:
    return ", ".join(quote_name(n) for n in names)


def _marker_list(refs) -> str:
    """A ``markers`` list: names quoted where needed, a group as its own syntax ``any(A, B)``."""
    return ", ".join(ref.name if ref.any_of else quote_name(ref.name) for ref in refs)


def _params(ruleset: Ruleset) -> dict[str, dict]:
    gating = {k: v for k, v in ruleset.gating.explicit().items() if k != "level_defaults"}
    return {"scoring": ruleset.scoring.explicit(), "gating": gating, "refinement": ruleset.refinement.explicit()}


def _levels(ruleset: Ruleset) -> dict[int, dict]:
    if "level_defaults" not in ruleset.gating.model_fields_set:
        return {}
    return {lvl: block.explicit() for lvl, block in sorted(ruleset.gating.level_defaults.items())}


# ---------------------------------------------------------------------------------------------
# DSL


def to_ctr(ruleset: Ruleset, notes: dict[tuple[str, ...], str] | None = None) -> str:
    """The DSL text; ``notes`` (type path -> text) are written as a comment above each type."""
    out = [f"ruleset {quote_name(ruleset.name)}" + (f" {json.dumps(ruleset.description)}" if ruleset.description else "")]
    if ruleset.aliases or ruleset.thresholds:
        out.append("")
    for alias in ruleset.aliases:
        out.append(f"alias {quote_name(alias.canonical)} = {_names(alias.synonyms)}")
    for thr in ruleset.thresholds:
        out.append(f"threshold {quote_name(thr.marker)} {thr.op} {_num(thr.value)}")
    blocks = [(kind, vals) for kind, vals in _params(ruleset).items() if vals]
    blocks += [(f"level {lvl}", vals) for lvl, vals in _levels(ruleset).items()]
    for head, vals in blocks:
        out.append("")
        out.append(head + " {")
        out.extend(f"  {key} {_value(val)}" for key, val in vals.items())
        out.append("}")
    for root in ruleset.roots:
        out.append("")
        _ctr_type(root, out, "", notes or {})
    for state in ruleset.states:
        out.append("")
        out.extend(_ctr_state(state))
    return "\n".join(out) + "\n"


def _ctr_type(node: CellType, out: list[str], indent: str, notes: dict) -> None:
    if node.path in notes:
        out.append(f"{indent}# {notes[node.path]}")
    out.append(f"{indent}type {quote_name(node.name)} {{")
    inner = indent + "  "
    for line in _ctr_body(node):
        out.append(inner + line)
    for child in node.children:
        _ctr_type(child, out, inner, notes)
    out.append(indent + "}")


def _ctr_state(state: CellState) -> list[str]:
    lines = [f"state {quote_name(state.name)} {{"]
    if state.markers:
        lines.append("  markers " + _marker_list(state.markers))
    if state.anti:
        lines.append("  anti " + _names(state.anti_names))
    if state.applies_to:
        lines.append("  applies_to " + _names(state.applies_to))
    if state.excludes:
        lines.append("  excludes " + _names(state.excludes))
    lines += [f"  when {c.render()}" for c in state.conditions]
    if state.description:
        lines.append(f"  description {json.dumps(state.description)}")
    lines += [f"  cite {json.dumps(ref)}" for ref in state.cite]
    return lines + ["}"]


def state_data(state: CellState) -> dict:
    """A state as YAML/JSON data (the same keys in both spellings)."""
    out: dict[str, Any] = {"markers": state.marker_names}
    if state.anti:
        out["anti"] = state.anti_names
    if state.applies_to:
        out["applies_to"] = list(state.applies_to)
    if state.excludes:
        out["excludes"] = list(state.excludes)
    if state.conditions:
        out["when"] = [c.render() for c in state.conditions]
    if state.description:
        out["description"] = state.description
    if state.cite:
        out["cite"] = list(state.cite)
    return out


def _ctr_body(node: CellType) -> list[str]:
    lines = []
    if node.markers:
        lines.append("markers " + _marker_list(node.markers))
    if node.anti:
        lines.append("anti " + _names(node.anti_names))
    for req in node.requires:
        line = "require " + (req.marker if req.any_of else quote_name(req.marker))
        if req.min_pos_frac is not None:
            line += f" pos_frac >= {_num(req.min_pos_frac)}"
        if req.min_enrichment is not None:
            line += f" enrichment >= {_num(req.min_enrichment)}"
        lines.append(line)
    for veto in node.vetoes:
        lines.append(f"veto {_names(veto.markers)} pos_frac > {_num(veto.max_pos_frac)}")
    for cond in node.conditions:
        lines.append("when " + cond.render())
    for ref in node.cite:
        lines.append("cite " + json.dumps(ref))
    for key, value in node.overrides.explicit().items():
        lines.append(f"{key} {_num(value)}")
    return lines


# ---------------------------------------------------------------------------------------------
# YAML


def _requirement(req, marker_key: str, pos_key: str, enr_key: str) -> dict:
    out: dict[str, Any] = {marker_key: req.marker}
    if req.min_pos_frac is not None:
        out[pos_key] = req.min_pos_frac
    if req.min_enrichment is not None:
        out[enr_key] = req.min_enrichment
    return out


def _yaml_type(node: CellType) -> dict:
    out: dict[str, Any] = {}
    if node.markers:
        out["markers"] = node.marker_names
    if node.anti:
        out["anti"] = node.anti_names
    if node.requires:
        out["require"] = [_requirement(r, "marker", "pos_frac", "enrichment") for r in node.requires]
    if node.vetoes:
        out["veto"] = [{"markers": list(v.markers), "pos_frac": v.max_pos_frac} for v in node.vetoes]
    if node.conditions:
        out["when"] = [c.render() for c in node.conditions]
    if node.cite:
        out["cite"] = list(node.cite)
    out.update(node.overrides.explicit())
    if node.children:
        out["types"] = {child.name: _yaml_type(child) for child in node.children}
    return out


def to_yaml_data(ruleset: Ruleset) -> dict:
    data: dict[str, Any] = {"ruleset": ruleset.name}
    if ruleset.description:
        data["description"] = ruleset.description
    if ruleset.aliases:
        data["aliases"] = {a.canonical: list(a.synonyms) for a in ruleset.aliases}
    if ruleset.thresholds:
        data["thresholds"] = {t.marker: f"{t.op} {_num(t.value)}" for t in ruleset.thresholds}
    for kind, vals in _params(ruleset).items():
        if vals:
            data[kind] = vals
    if _levels(ruleset):
        data["levels"] = _levels(ruleset)
    data["types"] = {root.name: _yaml_type(root) for root in ruleset.roots}
    if ruleset.states:
        data["states"] = {s.name: state_data(s) for s in ruleset.states}
    _check_unique(ruleset)
    return data


class _Dumper(yaml.SafeDumper):
    """Lists of plain values (marker names) on one line: ``markers: [EPCAM, KRT8]``."""

    def represent_list(self, data):
        flow = all(isinstance(x, str | int | float) for x in data) and sum(len(str(x)) for x in data) < 80
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _Dumper.represent_list)


def to_yaml(ruleset: Ruleset, notes: dict[tuple[str, ...], str] | None = None) -> str:
    """The YAML text; ``notes`` (type path -> text) are written as a comment above each type."""
    text = yaml.dump(to_yaml_data(ruleset), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return _yaml_notes(text, ruleset, notes) if notes else text


def _yaml_notes(text: str, ruleset: Ruleset, notes: dict) -> str:
    """Insert ``# note`` above each type's key. The dump writes types in walk order at
    2 spaces per level (``types:`` then the names), so a forward scan finds each key."""
    lines = text.split("\n")
    out: list[str] = []
    cursor = 0
    for node in ruleset.walk():
        indent = "  " * (2 * node.level + 1)
        key = yaml.dump({node.name: None}, Dumper=_Dumper, allow_unicode=True, width=1000).split(":")[0]
        for j in range(cursor, len(lines)):
            if lines[j].startswith(indent + key + ":") or lines[j] == indent + key + ":":
                out.extend(lines[cursor:j])
                if node.path in notes:
                    out.append(f"{indent}# {notes[node.path]}")
                cursor = j
                break
    out.extend(lines[cursor:])
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# JSON marker map


def _json_type(node: CellType, root: bool) -> dict:
    out: dict[str, Any] = {"markers": node.marker_names}
    if node.anti:
        out["anti_markers"] = node.anti_names
    if node.requires and not root:
        out["require"] = [_requirement(r, "marker", "min_pos_frac", "min_enrichment") for r in node.requires]
    if node.vetoes and not root:
        out["veto"] = [{"markers": list(v.markers), "max_pos_frac": v.max_pos_frac} for v in node.vetoes]
    if node.conditions:
        out["when"] = [c.render() for c in node.conditions]
    if node.cite:
        out["cite"] = list(node.cite)
    if node.overrides.explicit():
        out["overrides"] = node.overrides.explicit()
    if node.children:
        out["children"] = {child.name: _json_type(child, False) for child in node.children}
    return out


def _one_or_list(items: list) -> Any:
    return items[0] if len(items) == 1 else items


def to_json_data(ruleset: Ruleset) -> dict:
    _check_unique(ruleset)
    data: dict[str, Any] = {}
    if ruleset.meta:
        data["_marker_map_metadata"] = dict(ruleset.meta)
    if ruleset.name:
        data["_ruleset"] = ruleset.name
    if ruleset.description:
        data["_description"] = ruleset.description
    gating: dict[str, Any] = {}
    reqs = {r.name: [_requirement(q, "marker", "min_pos_frac", "min_enrichment") for q in r.requires]
            for r in ruleset.roots if r.requires}
    vetoes = {r.name: [{"markers": list(v.markers), "max_pos_frac": v.max_pos_frac} for v in r.vetoes]
              for r in ruleset.roots if r.vetoes}
    if reqs:
        gating["root_hard_requirements"] = {k: _one_or_list(v) for k, v in reqs.items()}
    if vetoes:
        gating["root_veto_markers"] = {k: _one_or_list(v) for k, v in vetoes.items()}
    if _levels(ruleset):
        gating["level_defaults"] = {str(k): v for k, v in _levels(ruleset).items()}
    params = _params(ruleset)
    gating.update(params["gating"])
    if gating:
        data["_gating_params"] = gating
    if params["scoring"]:
        data["_scoring_params"] = params["scoring"]
    if params["refinement"]:
        data["_refinement_params"] = params["refinement"]
    if ruleset.aliases:
        data["_aliases"] = {a.canonical: list(a.synonyms) for a in ruleset.aliases}
    if ruleset.thresholds:
        data["_thresholds"] = {t.marker: f"{t.op} {_num(t.value)}" for t in ruleset.thresholds}
    for root in ruleset.roots:
        if root.name.startswith("_"):
            raise RulesetError(
                f"root cell type '{root.name}' cannot be written to a JSON marker map: "
                "top-level keys starting with '_' are metadata",
                hint="rename the type or export as .ctr or .yaml",
            )
        data[root.name] = _json_type(root, True)
    if ruleset.states:
        data["_cell_state_markers"] = {"states": {s.name: state_data(s) for s in ruleset.states}}
    return data


def to_json(ruleset: Ruleset) -> str:
    return json.dumps(to_json_data(ruleset), indent=2, ensure_ascii=False) + "\n"


def _check_unique(ruleset: Ruleset) -> None:
    """Mappings cannot hold two entries with one key; refuse rather than silently drop one."""
    def dupes(names):
        seen, out = set(), []
        for n in names:
            if n in seen:
                out.append(n)
            seen.add(n)
        return out

    problems = dupes(a.canonical for a in ruleset.aliases) + dupes(t.marker for t in ruleset.thresholds)
    stack = [ruleset.roots]
    while stack:
        group = stack.pop()
        problems += dupes(n.name for n in group)
        stack.extend(n.children for n in group)
    if problems:
        raise RulesetError(
            f"cannot write YAML or JSON: '{problems[0]}' is defined twice at one level",
            hint="fix the duplicate (see `ctr lint-ruleset`) or export as .ctr",
        )


# ---------------------------------------------------------------------------------------------

_WRITERS = {"ctr": to_ctr, "yaml": to_yaml, "json": to_json}


def export_text(ruleset: Ruleset, fmt: str, notes: dict[tuple[str, ...], str] | None = None) -> str:
    """The ruleset as text in ``fmt``: 'ctr', 'yaml' (or 'yml') or 'json'. ``notes`` (type path ->
    text) become comments above the types in the DSL and YAML, and ``_marker_map_metadata.sources``
    in JSON (which has no comments)."""
    key = {"yml": "yaml", "dsl": "ctr"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    if key not in _WRITERS:
        raise RulesetError(f"unknown export format '{fmt}'", hint="use ctr, yaml or json")
    if not notes:
        return _WRITERS[key](ruleset)
    if key == "json":
        sources = json.dumps({PATH_SEP.join(p): n for p, n in notes.items()}, ensure_ascii=False)
        return to_json(ruleset.model_copy(update={"meta": {**ruleset.meta, "sources": sources}}))
    return _WRITERS[key](ruleset, notes)


def source_copy(ruleset: Ruleset) -> str | None:
    """The DSL text the ruleset was compiled from, when it is one self-contained .ctr file that
    still compiles to this very ruleset (no includes, not changed since); else None."""
    if not ruleset.source_text or not str(ruleset.source_file or "").endswith(".ctr") or ruleset.includes:
        return None
    from ctr.lang.loader import compile_ruleset

    again = compile_ruleset(str(ruleset.source_file), text=ruleset.source_text, fmt="ctr")
    return ruleset.source_text if again.ok and again.ruleset.digest == ruleset.digest else None
