"""The JSON marker map of the user guide, imported into the same statements as the DSL.

Top-level keys are root cell types (``markers``, ``anti_markers``, children under ``children`` or
``subtypes``); keys starting with ``_`` are metadata: ``_gating_params`` (with
``root_hard_requirements``, ``root_veto_markers``, ``level_defaults`` and the other gating keys)
and, for lossless export, ``_ruleset``, ``_description``, ``_scoring_params``,
``_refinement_params``, ``_aliases``, ``_thresholds``. A node may also carry ``require``, ``veto``,
``when``, ``cite`` and ``overrides``. Misspelled keys are located errors, never ignored.
"""

from __future__ import annotations

import json

from ctr.codes import ABSENT_ROOT, INVALID_JSON, PLACEHOLDER, UNKNOWN_META
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean  # noqa: F401
from ctr.lang.document import Document, Setting, Statement, valid_keys
from ctr.lang.yaml_spelling import (
    BAD_SHAPE,
    UNKNOWN_KEY,
    LocDict,
    Reader,
    YamlLoadError,
    load_located,
)
from ctr.rules.model import Alias, CellType
from ctr.textfile import without_line_comments


META_KEYS = ("_marker_map_metadata", "_cell_state_markers", "_ruleset", "_description", "_gating_params",
             "_scoring_params", "_refinement_params", "_aliases", "_thresholds")
NODE_KEYS = ("markers", "anti_markers", "children", "subtypes", "require", "veto", "when", "cite", "overrides")
GATING_KEYS = ("root_hard_requirements", "root_veto_markers", "level_defaults")
REQ_KEYS = {"marker": "marker", "min_pos_frac": "min_pos_frac", "min_enrichment": "min_enrichment"}
VETO_KEYS = {"markers": "markers", "max_pos_frac": "max_pos_frac"}


def parse_document(text: str, file: str) -> Document:
    """Parse a JSON marker map into a :class:`Document`."""
    doc = Document(file=file, text=text)
    text = without_line_comments(text)  # '//' comments, as in the user guide's examples, are read as blanks
    try:
        plain = json.loads(text)
    except json.JSONDecodeError as exc:
        loc = SourceLoc(file=file, line=exc.lineno, column=exc.colno)
        doc.diagnostics.append(Diagnostic(INVALID_JSON, f"invalid JSON: {exc.msg}", loc))
        doc.syntax_ok = False
        return doc
    except RecursionError:
        doc.diagnostics.append(Diagnostic(INVALID_JSON, "invalid JSON: nested too deeply", SourceLoc(file=file, line=1, column=1)))
        doc.syntax_ok = False
        return doc
    try:
        data = load_located(text, file)  # JSON is YAML; this gives every key its line and column
        if data != plain:
            data = plain
    except YamlLoadError:
        data = plain
    r = Reader(doc)
    top = SourceLoc(file=file, line=1, column=1)
    if not isinstance(data, dict):
        r.error(BAD_SHAPE, "a JSON marker map is an object whose keys are cell types", top)
        return doc
    r.duplicates(data, "the marker map")
    for key in data:
        if isinstance(key, str) and key.startswith("_") and key not in META_KEYS:
            # the reference tool skips every '_' key; so do we, but say so (a typo is ignored too)
            r.error(UNKNOWN_META, f"unknown metadata key '{key}' is ignored{did_you_mean(key, META_KEYS)}",
                    r.key_loc(data, key), hint="metadata keys: " + ", ".join(META_KEYS))
    if "_marker_map_metadata" in data:
        meta = r.mapping(data["_marker_map_metadata"], r.loc_of(data, "_marker_map_metadata"), "_marker_map_metadata")
        values = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()}
        doc.statements.append(Statement("meta", r.key_loc(data, "_marker_map_metadata"), payload=values))
    if "_cell_state_markers" in data:
        states = r.mapping(data["_cell_state_markers"], r.loc_of(data, "_cell_state_markers"), "_cell_state_markers")
        r.check_keys(states, ("states",), "_cell_state_markers")
        r.states(states.get("states"), r.loc_of(states, "states"), "_cell_state_markers.states")

    if "_ruleset" in data or "_description" in data:
        name = r.name(data.get("_ruleset", ""), r.loc_of(data, "_ruleset"), "'_ruleset'") or ""
        desc = data.get("_description")
        desc = r.text_of(desc, r.loc_of(data, "_description"), "'_description'") if desc is not None else None
        doc.statements.append(Statement("ruleset", r.key_loc(data, "_ruleset") or top, name=name, description=desc))
    aliases = r.mapping(data.get("_aliases"), r.loc_of(data, "_aliases"), "_aliases")
    for canonical, syns in aliases.items():
        loc = r.key_loc(aliases, canonical)
        alias = Alias(canonical=str(canonical), synonyms=r.strings(syns, r.loc_of(aliases, canonical), "synonyms"), loc=loc)
        doc.statements.append(Statement("alias", loc, payload=alias))
    thresholds = r.mapping(data.get("_thresholds"), r.loc_of(data, "_thresholds"), "_thresholds")
    for marker, spec in thresholds.items():
        thr = r.threshold(str(marker), spec, r.loc_of(thresholds, marker))
        if thr is not None:
            doc.statements.append(Statement("threshold", thr.loc, payload=thr))
    r.settings("scoring", data.get("_scoring_params"), r.loc_of(data, "_scoring_params"))
    r.settings("refinement", data.get("_refinement_params"), r.loc_of(data, "_refinement_params"))

    gating = r.mapping(data.get("_gating_params"), r.loc_of(data, "_gating_params"), "_gating_params")
    r.settings("gating", gating, r.loc_of(data, "_gating_params"), skip=GATING_KEYS)
    if "level_defaults" in gating:
        r.levels(gating["level_defaults"], r.loc_of(gating, "level_defaults"))
    root_reqs = _per_root(r, gating, "root_hard_requirements", lambda item, loc: r.requirement(item, loc, REQ_KEYS))
    root_vetoes = _per_root(r, gating, "root_veto_markers", lambda item, loc: r.veto(item, loc, VETO_KEYS))

    roots: list[CellType] = []
    for name, body in data.items():
        if isinstance(name, str) and name.startswith("_"):
            continue
        if isinstance(body, dict) and body.get("subtypes") == {} and "markers" not in body:
            r.error(PLACEHOLDER, f"'{name}' has no markers and empty subtypes: a deprecated placeholder, skipped "
                    "(as the reference tool does)", r.key_loc(data, name))
            continue
        node = _node(r, name, body, r.key_loc(data, name), r.loc_of(data, name), 1)
        if node is None:
            continue
        extra = {"requires": root_reqs.pop(node.name, [])}
        extra["vetoes"] = root_vetoes.pop(node.name, [])
        node = node.model_copy(update={"requires": extra["requires"] + node.requires,
                                       "vetoes": extra["vetoes"] + node.vetoes})
        roots.append(node)
    root_names = [n.name for n in roots]
    for what, leftover in (("root_hard_requirements", root_reqs), ("root_veto_markers", root_vetoes)):
        for name, items in leftover.items():
            loc = items[0].loc if items else None
            r.error(
                ABSENT_ROOT,
                f"_gating_params.{what} names '{name}', which is not a root cell type of this map"
                f"{did_you_mean(name, root_names)}; the entry is ignored",
                loc,
            )
    for node in roots:
        doc.statements.append(Statement("type", node.loc, payload=node))
    return doc


def _per_root(r: Reader, gating: dict, key: str, build) -> dict[str, list]:
    """``{type: entry}`` or ``{type: [entries]}`` -> type name -> built entries."""
    table = r.mapping(gating.get(key), r.loc_of(gating, key), f"_gating_params.{key}")
    out: dict[str, list] = {}
    for name, value in table.items():
        loc = r.loc_of(table, name)
        entries = value if isinstance(value, list) else [value]
        locs = getattr(value, "item_locs", None) or [loc] * len(entries)
        built = [b for item, item_loc in zip(entries, locs) if (b := build(item, item_loc)) is not None]
        out.setdefault(str(name), []).extend(built)
    return out


def _node(r: Reader, name, body, key_loc, value_loc, depth: int) -> CellType | None:
    checked = r.type_body(name, body, key_loc, value_loc, depth, NODE_KEYS)
    if checked is None:
        return None
    name, body = checked
    if "children" in body and "subtypes" in body:
        r.error(BAD_SHAPE, f"cell type '{name}' has both 'children' and 'subtypes'; use one", r.key_loc(body, "subtypes"))
    kids_key = "children" if "children" in body else "subtypes"
    kids = r.mapping(body.get(kids_key), r.loc_of(body, kids_key), f"the {kids_key} of '{name}'")
    children = [
        child
        for child_name, child_body in kids.items()
        if (child := _node(r, child_name, child_body, r.key_loc(kids, child_name), r.loc_of(kids, child_name), depth + 1))
        is not None
    ]
    overrides_map = r.mapping(body.get("overrides"), r.loc_of(body, "overrides"), "overrides")
    overrides = [Setting("override", str(k), v, r.key_loc(overrides_map, k)) for k, v in overrides_map.items()]
    return r.cell_type(name, key_loc, body, anti_key="anti_markers", req_keys=REQ_KEYS, veto_keys=VETO_KEYS,
                       overrides=overrides, children=children)


__all__ = ["parse_document", "valid_keys", "LocDict"]
