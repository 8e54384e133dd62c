"""What the exporters share: the losses every flat marker format has."""

from __future__ import annotations

from ctr.rules.model import CellType, Ruleset


def common_losses(ruleset: Ruleset, tool: str, *, anti: bool = True, conditions: bool = False,
                  states: bool = False, groups: bool = False) -> list[str]:
    """Requirements, vetoes, conditions, overrides, aliases, parameters and states that ``tool`` has no place for."""
    out: list[str] = []
    for node in ruleset.walk():
        where = f"'{node.path_str}'"
        if node.requires:
            out.append(f"{where}: requirements ({', '.join(r.marker for r in node.requires)}) are dropped; "
                       f"{tool} has no hard requirement")
        if node.vetoes:
            out.append(f"{where}: vetoes ({', '.join(m for v in node.vetoes for m in v.markers)}) are written as "
                       + ("negative markers" if anti else "nothing (dropped)"))
        if node.anti and not anti:
            out.append(f"{where}: anti-markers ({', '.join(node.anti_names)}) are dropped; {tool} has no negative markers")
        if node.conditions and not conditions:
            out.append(f"{where}: conditions ({'; '.join(c.render() for c in node.conditions)}) are dropped")
        if node.groups and not groups:
            out.append(f"{where}: marker groups ({', '.join(node.groups)}) are written as their members, "
                       f"each a marker of its own; {tool} has no 'any of' group")
        if node.overrides.explicit():
            out.append(f"{where}: threshold overrides ({', '.join(node.overrides.explicit())}) are dropped")
    if ruleset.aliases:
        out.append(f"aliases ({', '.join(a.canonical for a in ruleset.aliases)}) are dropped: write the panel's names")
    params = [k for k in ("scoring", "gating", "refinement") if getattr(ruleset, k).explicit()]
    if params:
        out.append(f"parameter blocks ({', '.join(params)}) are dropped; {tool} has its own parameters")
    if ruleset.states and not states:
        out.append(f"cell states ({', '.join(s.name for s in ruleset.states)}) are dropped; {tool} has no cell states")
    return out


def negatives(node: CellType) -> list[str]:
    """Anti-markers and vetoed markers: what a flat format writes as 'not expressed'."""
    return list(dict.fromkeys(node.anti_names + [m for v in node.vetoes for m in v.markers]))


def markers_in_order(ruleset: Ruleset) -> list[str]:
    seen: dict[str, None] = {}
    for node in ruleset.walk():
        for m in node.panel_marker_names + negatives(node):
            seen.setdefault(m)
    return list(seen)


def csv_text(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
