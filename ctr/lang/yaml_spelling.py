"""The YAML spelling: the same statements as the DSL, written as data.

Loaded with PyYAML's SafeLoader only (no tags, no Python objects; anchors and aliases are
refused so a small file cannot expand into a huge one). Every mapping key and list item keeps
its line and column, so diagnostics point into the YAML file. Conditions, requirements, vetoes
and thresholds written as strings are parsed by the DSL grammar.
"""

from __future__ import annotations

import re

from typing import Any

import yaml
from yaml.events import AliasEvent

from ctr.codes import BAD_PARAM, BAD_SHAPE, DUPLICATE_KEY, INVALID_YAML, STATE_APPROX, UNKNOWN_KEY
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.lang import dsl
from ctr.lang.document import MAX_TYPE_DEPTH, Document, Setting, Statement, make_type
from ctr.rules.model import PATH_SEP, Alias, CellState, CellType, MarkerRef, Requirement, Threshold, Veto, split_path


TOP_KEYS = ("ruleset", "description", "include", "aliases", "thresholds", "scoring", "gating", "levels",
            "refinement", "types", "states", "extend", "replace", "remove")
# a markers-list item spelled like a marker group, ``any(FAP, ACTA2)``: parsed by the DSL's grammar
GROUP_SPELLING = re.compile(r"\s*any\s*\(")

TYPE_KEYS = ("markers", "anti", "require", "veto", "when", "cite", "min_coverage", "min_pos_frac",
             "min_enrichment", "min_gap", "types")


# ---------------------------------------------------------------------------------------------
# Location-keeping safe loading (shared with the JSON marker map)


class LocDict(dict):
    """A mapping that remembers where each key and value was written."""

    loc: SourceLoc | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.key_locs: dict[Any, SourceLoc] = {}
        self.value_locs: dict[Any, SourceLoc] = {}
        self.duplicates: list[tuple[Any, SourceLoc]] = []


class LocList(list):
    """A sequence that remembers where each item was written."""

    loc: SourceLoc | None = None

    def __init__(self, *args):
        super().__init__(*args)
        self.item_locs: list[SourceLoc] = []


class YamlLoadError(Exception):
    def __init__(self, message: str, loc: SourceLoc):
        super().__init__(message)
        self.loc = loc


def _mark_loc(file: str, node) -> SourceLoc:
    start, end = node.start_mark, node.end_mark
    end_line, end_col = end.line + 1, max(end.column, 1)
    if end.column == 0 and end.line > start.line:  # block nodes end at the start of the next line
        end_line, end_col = end.line, None
    return SourceLoc(file=file, line=start.line + 1, column=start.column + 1, end_line=end_line, end_column=end_col)


def _loader_class(file: str):
    class LocLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(AliasEvent):
                event = self.peek_event()
                raise YamlLoadError(
                    "YAML aliases (*name) are not allowed in rulesets; write the value out",
                    SourceLoc(file=file, line=event.start_mark.line + 1, column=event.start_mark.column + 1),
                )
            return super().compose_node(parent, index)

    def construct_mapping(loader, node):
        loader.flatten_mapping(node)
        out = LocDict()
        out.loc = _mark_loc(file, node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise YamlLoadError("a mapping key must be a plain value", _mark_loc(file, key_node)) from None
            if key in out:
                out.duplicates.append((key, _mark_loc(file, key_node)))
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_locs[key] = _mark_loc(file, key_node)
            out.value_locs[key] = _mark_loc(file, value_node)
        return out

    def construct_sequence(loader, node):
        out = LocList(loader.construct_object(child, deep=True) for child in node.value)
        out.loc = _mark_loc(file, node)
        out.item_locs = [_mark_loc(file, child) for child in node.value]
        return out

    LocLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    LocLoader.add_constructor("tag:yaml.org,2002:seq", construct_sequence)
    return LocLoader


def load_located(text: str, file: str) -> Any:
    """Safe-load YAML (or JSON) keeping locations; raises YamlLoadError with a location."""
    loader = _loader_class(file)(text)
    try:
        return loader.get_single_data()
    except YamlLoadError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLoc(file=file, line=mark.line + 1, column=mark.column + 1) if mark else SourceLoc(file=file)
        raise YamlLoadError(f"invalid YAML: {exc.problem or exc.context}", loc) from None
    except (yaml.YAMLError, RecursionError, TypeError, ValueError) as exc:
        raise YamlLoadError(f"invalid YAML: {exc}", SourceLoc(file=file, line=1, column=1)) from None
    finally:
        loader.dispose()


# ---------------------------------------------------------------------------------------------
# Reading helpers shared by the YAML and JSON spellings


class Reader:
    """Turns located data into statements, reporting shape errors at the value at fault."""

    def __init__(self, doc: Document):
        self.doc = doc

    def error(self, code: str, message: str, loc: SourceLoc | None, hint: str | None = None) -> None:
        self.doc.diagnostics.append(Diagnostic(code, message, loc or SourceLoc(file=self.doc.file), hint=hint))

    def loc_of(self, mapping, key) -> SourceLoc | None:
        return getattr(mapping, "value_locs", {}).get(key) or getattr(mapping, "loc", None)

    def key_loc(self, mapping, key) -> SourceLoc | None:
        return getattr(mapping, "key_locs", {}).get(key) or getattr(mapping, "loc", None)

    def check_keys(self, mapping: dict, allowed, where: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error(
                    UNKNOWN_KEY,
                    f"unknown key '{key}' in {where}{did_you_mean(str(key), allowed)}",
                    self.key_loc(mapping, key),
                    hint="valid keys: " + ", ".join(allowed),
                )

    def type_body(self, name, body, key_loc, value_loc, depth: int, keys) -> tuple[str, dict] | None:
        """The checked name and body of a cell type mapping (shared by YAML and JSON), or None."""
        name = self.name(name, key_loc, "a cell type name")
        if name is None:
            return None
        if depth > MAX_TYPE_DEPTH:
            self.error(dsl.TYPES_TOO_DEEP, f"cell types are nested more than {MAX_TYPE_DEPTH} levels deep", key_loc)
            return None
        body = self.mapping(body, value_loc, f"cell type '{name}'")
        self.check_keys(body, keys, f"cell type '{name}'")
        return name, body

    def cell_type(self, name: str, key_loc, body: dict, *, anti_key: str, req_keys, veto_keys,
                  overrides: list, children: list) -> CellType:
        """Build a cell type from a checked body; YAML and JSON differ only in key spellings
        (``anti`` / ``anti_markers``), overrides and where children live, which callers pass in."""
        requires = [
            req
            for item, loc in self.items(body.get("require"), self.loc_of(body, "require"), "require")
            if (req := self.requirement(item, loc, req_keys)) is not None
        ]
        vetoes = [
            veto
            for item, loc in self.items(body.get("veto"), self.loc_of(body, "veto"), "veto")
            if (veto := self.veto(item, loc, veto_keys)) is not None
        ]
        return make_type(
            name,
            key_loc,
            markers=self.names(body.get("markers"), self.loc_of(body, "markers"), "markers", groups=True),
            anti=self.names(body.get(anti_key), self.loc_of(body, anti_key), anti_key),
            requires=requires,
            vetoes=vetoes,
            conditions=self.conditions(body.get("when"), self.loc_of(body, "when")),
            cite=self.strings(body.get("cite"), self.loc_of(body, "cite"), "cite"),
            overrides=overrides,
            children=children,
            diagnostics=self.doc.diagnostics,
        )

    def mapping(self, value, loc, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(BAD_SHAPE, f"{what} must be a mapping of keys to values, got {_kind(value)}", loc)
            return {}
        self.duplicates(value, what)
        return value

    def duplicates(self, mapping, what: str) -> None:
        for key, loc in getattr(mapping, "duplicates", []):
            self.error(DUPLICATE_KEY, f"{what}: key '{key}' is written twice (the last one is used)", loc)

    def items(self, value, loc, what: str) -> list[tuple[Any, SourceLoc | None]]:
        """A list (or a single value) with each item's location."""
        if value is None:
            return []
        if isinstance(value, list):
            locs = getattr(value, "item_locs", None) or [loc] * len(value)
            return list(zip(value, locs))
        if isinstance(value, dict):
            self.error(BAD_SHAPE, f"{what} must be a list, got a mapping", loc)
            return []
        return [(value, loc)]

    def name(self, value, loc, what: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(BAD_SHAPE, f"{what} must be a name (a string), got {_kind(value)}", loc)
            return None
        return str(value)

    def names(self, value, loc, what: str, *, groups: bool = False) -> list[MarkerRef]:
        """Marker names; with ``groups`` (a ``markers`` list), an item ``"any(A, B)"`` is a marker group."""
        out = []
        for item, item_loc in self.items(value, loc, what):
            name = self.name(item, item_loc, what)
            if name is None:
                continue
            if groups and GROUP_SPELLING.match(name):
                group = dsl.parse_marker_group(name, self.offset(item_loc), self.doc.diagnostics)
                if group is not None:
                    out.append(group.model_copy(update={"loc": item_loc}))
                continue
            out.append(MarkerRef(name=name, loc=item_loc))
        return out

    def strings(self, value, loc, what: str) -> list[str]:
        return [m.name for m in self.names(value, loc, what)]

    def offset(self, loc: SourceLoc | None) -> dsl.Offset:
        """Where a string value's text begins (past an opening quote)."""
        if loc is None or loc.line is None:
            return dsl.Offset(self.doc.file)
        lines = self.doc.text.splitlines()
        column = loc.column or 1
        if loc.line <= len(lines) and lines[loc.line - 1][column - 1 : column] in ('"', "'"):
            column += 1
        return dsl.Offset(self.doc.file, loc.line, column)

    def text_of(self, value, loc, what: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(BAD_SHAPE, f"{what} must be a string, got {_kind(value)}", loc)
            return None
        return str(value)

    def conditions(self, value, loc):
        out = []
        for item, item_loc in self.items(value, loc, "when"):
            text = self.text_of(item, item_loc, "a condition")
            if text is not None:
                cond = dsl.parse_condition(text, self.offset(item_loc), self.doc.diagnostics)
                if cond is not None:
                    out.append(cond.model_copy(update={"loc": item_loc, "text": text}))
        return out

    def requirement(self, item, loc, keys: dict[str, str]) -> Requirement | None:
        """A requirement from a string ("EPCAM pos_frac >= 0.5") or a mapping; ``keys`` maps the
        spelling's key names to marker / min_pos_frac / min_enrichment."""
        if isinstance(item, str):
            req = dsl.parse_require(item, self.offset(loc), self.doc.diagnostics)
            return req.model_copy(update={"loc": loc}) if req is not None else None
        if not isinstance(item, dict):
            self.error(BAD_SHAPE, f"a requirement must be a mapping or a string, got {_kind(item)}", loc)
            return None
        self.check_keys(item, list(keys), "a requirement")
        fields = {keys[k]: v for k, v in item.items() if k in keys}
        refs = self.names(fields.pop("marker", None), loc, "the requirement's 'marker'", groups=True)
        if len(refs) != 1:
            if refs:
                self.error(BAD_SHAPE, "the requirement's 'marker' must be one name (or one group), got a list", loc)
            return None
        return self._model(Requirement, loc, marker=refs[0].name, any_of=refs[0].any_of, **fields)

    def veto(self, item, loc, keys: dict[str, str]) -> Veto | None:
        if isinstance(item, str):
            veto = dsl.parse_veto(item, self.offset(loc), self.doc.diagnostics)
            return veto.model_copy(update={"loc": loc}) if veto is not None else None
        if not isinstance(item, dict):
            self.error(BAD_SHAPE, f"a veto must be a mapping or a string, got {_kind(item)}", loc)
            return None
        self.check_keys(item, list(keys), "a veto")
        fields = {keys[k]: v for k, v in item.items() if k in keys}
        markers = self.strings(fields.pop("markers", None), self.loc_of(item, "markers") or loc, "veto markers")
        return self._model(Veto, loc, markers=markers, **fields)

    def _model(self, cls, loc, **fields):
        from pydantic import ValidationError

        try:
            return cls(loc=loc, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            self.error(BAD_PARAM, f"{cls.__name__.lower()} '{where}': {err['msg'].lower()} (got {err.get('input')!r})", loc)
            return None

    def threshold(self, marker: str, value, loc) -> Threshold | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._model(Threshold, loc, marker=marker, op=">=", value=value)
        text = self.text_of(value, loc, f"threshold for {marker}")
        if text is None:
            return None
        spec = dsl.parse_threshold(text, self.offset(loc), self.doc.diagnostics)
        return Threshold(marker=marker, op=spec[0], value=spec[1], loc=loc) if spec else None

    def settings(self, block: str, value, loc, level: int | None = None, skip=()) -> None:
        data = self.mapping(value, loc, f"the {block} block")
        for key, val in data.items():
            if key in skip:
                continue
            kloc = self.key_loc(data, key)
            setting = Setting(block, str(key), val, kloc, level)
            self.doc.statements.append(Statement("setting", kloc, payload=setting))

    def levels(self, value, loc) -> None:
        data = self.mapping(value, loc, "levels")
        for key, block in data.items():
            kloc = self.key_loc(data, key)
            try:
                level = int(key)
                if level < 0 or isinstance(key, bool) or (isinstance(key, float) and not key.is_integer()):
                    raise ValueError
            except (TypeError, ValueError):
                self.error(BAD_PARAM, f"level key {key!r} is not a level number (0 = root types)", kloc)
                continue
            self.settings("level", block, self.loc_of(data, key), level)

    def states(self, value, loc, what: str) -> None:
        """``{NAME: {markers, anti, applies_to, excludes, when, description, cite}}`` -> state
        statements (the same keys in YAML, JSON and the reference tool's ``_cell_state_markers``,
        whose ``applies_to`` is free text and whose ``rules[].scope`` names the types)."""
        table = self.mapping(value, loc, what)
        for name, body in table.items():
            key_loc = self.key_loc(table, name)
            name = self.name(name, key_loc, "a cell state name")
            body = self.mapping(body, self.loc_of(table, name), f"cell state '{name}'")
            if name is None:
                continue
            self.check_keys(body, STATE_KEYS, f"cell state '{name}'")
            description = body.get("description")
            description = self.text_of(description, self.loc_of(body, "description"), "description") if description is not None else ""
            applies = body.get("applies_to")
            paths: list[str] = []
            if isinstance(applies, str):  # the reference tool: a sentence for people, the scope is in rules
                description = "; ".join(t for t in (description, applies) if t)
            else:
                paths = self.strings(applies, self.loc_of(body, "applies_to"), "applies_to")
            excludes = self.strings(body.get("excludes"), self.loc_of(body, "excludes"), "excludes")
            for rule, rule_loc in self.items(body.get("rules"), self.loc_of(body, "rules"), "rules"):
                more, less = self._scope(name, rule, rule_loc)
                paths += more
                excludes += less
            state = CellState(
                name=name, loc=key_loc, description=description or "",
                markers=self.names(body.get("markers"), self.loc_of(body, "markers"), "markers", groups=True),
                anti=self.names(body.get("anti"), self.loc_of(body, "anti"), "anti"),
                conditions=self.conditions(body.get("when"), self.loc_of(body, "when")),
                applies_to=list(dict.fromkeys(paths)), excludes=list(dict.fromkeys(excludes)),
                cite=self.strings(body.get("cite"), self.loc_of(body, "cite"), "cite"),
            )
            self.doc.statements.append(Statement("state", key_loc, payload=state))

    def _scope(self, name: str, rule, loc) -> tuple[list[str], list[str]]:
        """One rule of the reference tool's state: ``{rule_id, scope: {include, match, exclude, exclude_match}}``."""
        rule = self.mapping(rule, loc, f"a rule of cell state '{name}'")
        self.check_keys(rule, ("rule_id", "scope", "description"), f"a rule of cell state '{name}'")
        scope = self.mapping(rule.get("scope"), self.loc_of(rule, "scope"), "scope")
        self.check_keys(scope, ("include", "match", "exclude", "exclude_match"), "a state scope")
        include = self.strings(scope.get("include"), self.loc_of(scope, "include"), "include")
        exclude = self.strings(scope.get("exclude"), self.loc_of(scope, "exclude"), "exclude")
        if scope.get("match") == "all" or "*" in include:
            include = ["*"]
        # the reference tool writes "A/B"; ours is "A / B"
        include = [p if p == "*" else PATH_SEP.join(split_path(p)) for p in include]
        exclude = [PATH_SEP.join(split_path(p)) for p in exclude]
        for key in ("match", "exclude_match"):
            if scope.get(key) == "exact":
                self.error(STATE_APPROX, f"cell state '{name}': {key} 'exact' is read as 'prefix' (the type and "
                           "its descendants); ctr scopes always include descendants", self.key_loc(scope, key))
        return include, exclude


STATE_KEYS = ("markers", "anti", "applies_to", "excludes", "when", "description", "cite", "rules")


def _kind(value) -> str:
    if value is None:
        return "nothing"
    for cls, word in ((bool, "true/false"), (dict, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(value, cls):
            return word
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------------
# YAML document


_REQ_KEYS = {"marker": "marker", "pos_frac": "min_pos_frac", "enrichment": "min_enrichment",
             "min_pos_frac": "min_pos_frac", "min_enrichment": "min_enrichment"}
_VETO_KEYS = {"markers": "markers", "pos_frac": "max_pos_frac", "max_pos_frac": "max_pos_frac"}


def parse_document(text: str, file: str) -> Document:
    """Parse the YAML spelling into a :class:`Document`."""
    doc = Document(file=file, text=text)
    try:
        data = load_located(text, file)
    except YamlLoadError as exc:
        doc.diagnostics.append(Diagnostic(INVALID_YAML, str(exc), exc.loc))
        doc.syntax_ok = False
        return doc
    r = Reader(doc)
    if data is None:
        data = LocDict()
    if not isinstance(data, dict):
        r.error(BAD_SHAPE, f"a YAML ruleset is a mapping with keys like 'ruleset' and 'types', got {_kind(data)}",
                SourceLoc(file=file, line=1, column=1))
        return doc
    r.check_keys(data, TOP_KEYS, "the ruleset")
    r.duplicates(data, "the ruleset")
    top = SourceLoc(file=file, line=1, column=1)
    if "ruleset" in data or "description" in data:
        name = r.name(data.get("ruleset"), r.loc_of(data, "ruleset"), "'ruleset'") if "ruleset" in data else ""
        desc = data.get("description")
        desc = r.text_of(desc, r.loc_of(data, "description"), "'description'") if desc is not None else None
        doc.statements.append(Statement("ruleset", r.key_loc(data, "ruleset") or top, name=name or "", description=desc))
    for item, loc in r.items(data.get("include"), r.loc_of(data, "include"), "include"):
        path = r.text_of(item, loc, "an include path")
        if path is not None:
            doc.statements.append(Statement("include", loc, name=path))
    aliases = r.mapping(data.get("aliases"), r.loc_of(data, "aliases"), "aliases")
    for canonical, syns in aliases.items():
        loc = r.key_loc(aliases, canonical)
        alias = Alias(canonical=str(canonical), synonyms=r.strings(syns, r.loc_of(aliases, canonical), "synonyms"), loc=loc)
        doc.statements.append(Statement("alias", loc, payload=alias))
    thresholds = r.mapping(data.get("thresholds"), r.loc_of(data, "thresholds"), "thresholds")
    for marker, spec in thresholds.items():
        thr = r.threshold(str(marker), spec, r.loc_of(thresholds, marker))
        if thr is not None:
            doc.statements.append(Statement("threshold", thr.loc, payload=thr))
    for block in ("scoring", "gating", "refinement"):
        if block in data:
            gating_levels = block == "gating" and isinstance(data[block], dict) and "level_defaults" in data[block]
            r.settings(block, data[block], r.loc_of(data, block), skip=("level_defaults",) if gating_levels else ())
            if gating_levels:
                r.levels(data[block]["level_defaults"], r.loc_of(data[block], "level_defaults"))
    if "levels" in data:
        r.levels(data["levels"], r.loc_of(data, "levels"))
    types = r.mapping(data.get("types"), r.loc_of(data, "types"), "types")
    for name, body in types.items():
        node = _type(r, name, body, r.key_loc(types, name), r.loc_of(types, name), 1)
        if node is not None:
            doc.statements.append(Statement("type", node.loc, payload=node))
    for kind in ("extend", "replace"):
        edits = r.mapping(data.get(kind), r.loc_of(data, kind), kind)
        for path, body in edits.items():
            loc = r.key_loc(edits, path)
            node = _type(r, split_path(str(path))[-1], body, loc, r.loc_of(edits, path), 1)
            if node is not None:
                doc.statements.append(Statement(kind, loc, name=str(path), payload=node))
    if "states" in data:
        r.states(data["states"], r.loc_of(data, "states"), "states")
    for item, loc in r.items(data.get("remove"), r.loc_of(data, "remove"), "remove"):
        path = r.text_of(item, loc, "a path to remove")
        if path is not None:
            doc.statements.append(Statement("remove", loc, name=path))
    return doc


def _type(r: Reader, name, body, key_loc, value_loc, depth: int) -> CellType | None:
    checked = r.type_body(name, body, key_loc, value_loc, depth, TYPE_KEYS)
    if checked is None:
        return None
    name, body = checked
    overrides = [
        Setting("override", key, body[key], r.key_loc(body, key))
        for key in ("min_coverage", "min_pos_frac", "min_enrichment", "min_gap")
        if key in body
    ]
    children_map = r.mapping(body.get("types"), r.loc_of(body, "types"), f"the children of '{name}'")
    children = [
        child
        for child_name, child_body in children_map.items()
        if (child := _type(r, child_name, child_body, r.key_loc(children_map, child_name),
                           r.loc_of(children_map, child_name), depth + 1)) is not None
    ]
    return r.cell_type(name, key_loc, body, anti_key="anti", req_keys=_REQ_KEYS, veto_keys=_VETO_KEYS,
                       overrides=overrides, children=children)