"""Astir's marker YAML: ``cell_types`` (type -> markers), ``cell_states`` (state -> markers) and an
optional ``hierarchy`` (group -> types or sub-groups).

Astir classifies the listed types flat and only sums their probabilities into the hierarchy's
groups. Here a group becomes a parent type whose markers are those all its members share (or,
when they share none, all their markers), so the tree can gate on it; this is reported. Astir
has no negative markers. Its cell states are continuous scores over every cell; here they are
cell states applying to every type.
"""

from __future__ import annotations

from ctr.lang.document import Document
from ctr.lang.importers.common import Draft, Imported, assemble, refs
from ctr.lang.yaml_spelling import YamlLoadError, load_located
from ctr.rules.model import CellState

TOOL = "astir"
TOP_KEYS = ("cell_types", "cell_states", "hierarchy")


def looks_like(data) -> bool:
    return isinstance(data, dict) and "cell_types" in data and set(data) <= set(TOP_KEYS)


def _line(mapping, key) -> int | None:
    loc = getattr(mapping, "key_locs", {}).get(key)
    return loc.line if loc is not None else None


def parse_document(text: str, file: str) -> Document:
    imp = Imported(file=file, text=text, tool=TOOL)
    description = f"imported from Astir marker file {file}"
    try:
        data = load_located(text, file)
    except YamlLoadError as exc:
        imp.error(exc.loc.line, str(exc))
        return assemble(imp, description)
    if not looks_like(data):
        imp.error(1, "an Astir marker file is a mapping with 'cell_types' (and optionally 'cell_states', 'hierarchy')")
        return assemble(imp, description)
    types = data.get("cell_types") or {}
    drafts: dict[str, Draft] = {}
    for name, markers in types.items():
        markers = [str(m) for m in markers] if isinstance(markers, list) else []
        if not markers:
            imp.error(_line(types, name), f"cell type '{name}' has no markers")
        drafts[str(name)] = Draft(name=str(name), line=_line(types, name) or 1, markers=markers)
    groups: list[Draft] = []

    def walk(tree, parent: str | None) -> None:
        items = tree.items() if isinstance(tree, dict) else [(m, None) for m in (tree or [])]
        for key, sub in items:
            key = str(key)
            line = _line(tree, key) if isinstance(tree, dict) else None
            if key in drafts and sub is None:
                drafts[key].parent = parent
                continue
            if sub is None:
                imp.error(line or (_line(data, "hierarchy") or 1), f"hierarchy names '{key}', which is not a cell type")
                continue
            group = Draft(name=key, line=line or 1, parent=parent)
            groups.append(group)
            walk(sub, key)

    walk(data.get("hierarchy"), None)
    for group in list(groups):  # a group of one tells nothing apart: its member takes its place
        members = [d for d in list(drafts.values()) + groups if d.parent == group.name]
        if len(members) == 1:
            members[0].parent = group.parent
            groups.remove(group)
            imp.loss(group.line, f"hierarchy group '{group.name}' has one member, '{members[0].name}', which takes "
                     "its place in the tree")
    for group in reversed(groups):  # deepest first: a group's markers come from its members
        members = [d for d in list(drafts.values()) + groups if d.parent == group.name]
        shared = [m for m in members[0].markers if all(m in d.markers for d in members)] if members else []
        group.markers = shared or list(dict.fromkeys(m for d in members for m in d.markers))
        imp.loss(group.line, f"hierarchy group '{group.name}' only sums its members' probabilities in Astir; here it "
                 f"is a parent type gated on the markers its members {'share' if shared else 'list'} "
                 f"({', '.join(group.markers)})")
    imp.drafts = groups + list(drafts.values())
    states = data.get("cell_states") or {}
    for name, markers in states.items():
        line = _line(states, name) or 1
        loc = imp.loc(line)
        imp.states.append(CellState(name=str(name), markers=refs([str(m) for m in markers or []], loc), loc=loc,
                                    description="Astir cell state"))
    if states:
        imp.loss(_line(data, "cell_states"), "Astir's cell states are continuous scores; here each is a cell state "
                 "called on or off per cluster and per cell, for every cell type")
    return assemble(imp, description)
