"""The validated rule graph that every ruleset spelling (DSL, YAML, JSON) compiles to.

Cell types are a tree of :class:`CellType` nodes, addressed by **path** (the names from the
root down), so the same name may appear in different branches. Every element keeps the
:class:`~ctr.diagnostics.SourceLoc` it came from, which the trace cites.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ctr.diagnostics import SourceLoc
from ctr.rules.expr import Expr, to_text
from ctr.rules.params import GatingParams, LevelParams, RefinementParams, ScoringParams

PATH_SEP = " / "  # how a path is written in tables and messages: "Immune / T cells / CD4+ T cells"


def split_path(path: str) -> tuple[str, ...]:
    """The names of a path as a user writes it in extend/replace/remove: ``"Immune / T cells"``,
    or ``"Immune/T cells"`` when no name has a " / " in it."""
    parts = path.split(PATH_SEP) if PATH_SEP in path else path.split(PATH_SEP.strip())
    return tuple(part.strip() for part in parts)


class _Element(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loc: SourceLoc | None = None


class MarkerRef(_Element):
    """A marker named by a rule, as written (resolution to panel names happens later), or a group
    of alternatives (``any(FAP, ACTA2, CD36)``: ``any_of`` holds the members, ``name`` is the
    group's spelling, :func:`group_name`)."""

    name: str
    any_of: list[str] = Field(default_factory=list)


def group_name(members: list[str]) -> str:
    """The one spelling of a marker group, ``any(A, B, C)``: its name wherever a marker name goes."""
    from ctr.rules.expr import quote_name

    return "any(" + ", ".join(quote_name(m) for m in members) + ")"


class Requirement(_Element):
    """``require M pos_frac >= x [enrichment >= y]``: a hard gate on one marker.

    Unset thresholds take the node's level ``min_pos_frac`` / ``min_enrichment``.
    """

    marker: str
    min_pos_frac: float | None = Field(None, ge=0.0, le=1.0)
    min_enrichment: float | None = None
    # a marker group's members; ``marker`` is its spelling, which names them all (left out of dumps)
    any_of: list[str] = Field(default_factory=list, exclude=True)


class Veto(_Element):
    """``veto M1, M2 pos_frac > x``: the node fails if any listed marker exceeds ``max_pos_frac``."""

    markers: list[str]
    max_pos_frac: float = Field(0.2, ge=0.0, le=1.0)


class Condition(_Element):
    """``when <expr>``: a custom boolean gate; ``text`` is the source as written."""

    expr: Expr
    text: str

    def render(self) -> str:
        return self.text or to_text(self.expr)


class Alias(_Element):
    """``alias CANONICAL = SYN1, SYN2``: names that refer to the same marker."""

    canonical: str
    synonyms: list[str]


class Threshold(_Element):
    """``threshold M > 1.2``: an absolute positivity cut for one marker (a manual gate)."""

    marker: str
    op: Literal[">", ">="] = ">="
    value: float


class _MarkerNames:
    """The names of a rule's ``markers`` and ``anti`` lists (cell types and cell states)."""

    @property
    def marker_names(self) -> list[str]:
        return [m.name for m in self.markers]

    @property
    def anti_names(self) -> list[str]:
        return [m.name for m in self.anti]

    @property
    def groups(self) -> dict[str, list[str]]:
        """The marker groups of the ``markers`` list: group name -> its members."""
        return {m.name: m.any_of for m in self.markers if m.any_of}

    @property
    def panel_marker_names(self) -> list[str]:
        """The ``markers`` list with each group written as its members: the names that are looked
        up in a panel, or written by a format without groups."""
        return list(dict.fromkeys(n for m in self.markers for n in (m.any_of or [m.name])))


class CellType(_MarkerNames, _Element):
    name: str
    path: tuple[str, ...] = ()
    markers: list[MarkerRef] = Field(default_factory=list)
    anti: list[MarkerRef] = Field(default_factory=list)
    requires: list[Requirement] = Field(default_factory=list)
    vetoes: list[Veto] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    overrides: LevelParams = Field(default_factory=LevelParams)
    override_locs: dict[str, SourceLoc] = Field(default_factory=dict)  # override key -> where written
    cite: list[str] = Field(default_factory=list)
    children: list[CellType] = Field(default_factory=list)

    @property
    def level(self) -> int:
        return len(self.path) - 1

    @property
    def path_str(self) -> str:
        return PATH_SEP.join(self.path)


    def walk(self) -> Iterator[CellType]:
        """This node and all its descendants, depth first, in declaration order."""
        yield self
        for child in self.children:
            yield from child.walk()


class CellState(_MarkerNames, _Element):
    """``state NAME { markers ...  applies_to PATH, ... }``: a condition that cuts across cell types
    (proliferating, exhausted), called per cluster and per cell beside the type.

    ``applies_to`` holds type paths (or names); each brings all its descendants, and an empty list
    (or ``"*"``) means every type. ``excludes`` takes paths back out the same way.
    """

    name: str
    markers: list[MarkerRef] = Field(default_factory=list)
    anti: list[MarkerRef] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    applies_to: list[str] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    description: str = ""
    cite: list[str] = Field(default_factory=list)


class Include(_Element):
    path: str


class Ruleset(_Element):
    name: str
    description: str = ""
    source_file: str | None = None
    source_text: str = ""
    includes: list[Include] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    thresholds: list[Threshold] = Field(default_factory=list)
    scoring: ScoringParams = Field(default_factory=ScoringParams)  # partial: only set fields apply
    gating: GatingParams = Field(default_factory=GatingParams)
    refinement: RefinementParams = Field(default_factory=RefinementParams)
    # where each explicitly set parameter was written, keyed like "scoring.anti_weight",
    # "gating.level_defaults.1.min_gap"
    param_locs: dict[str, SourceLoc] = Field(default_factory=dict)
    roots: list[CellType] = Field(default_factory=list)
    states: list[CellState] = Field(default_factory=list)
    # descriptive metadata kept from the source (the reference tool's ``_marker_map_metadata``, the
    # tool a file was imported from); shown in reports, not part of the rule semantics
    meta: dict[str, str] = Field(default_factory=dict)
    # set when this graph was compiled from the copy an earlier run stored (its checksum): the trace
    # then cites the original file, which the user can compare by checksum
    stored_sha256: str | None = None

    def walk(self) -> Iterator[CellType]:
        for root in self.roots:
            yield from root.walk()

    def node(self, path: tuple[str, ...] | str) -> CellType:
        """Look a cell type up by path (tuple, or the ``" / "``-joined string)."""
        if isinstance(path, str):
            path = tuple(path.split(PATH_SEP))
        for node in self.walk():
            if node.path == tuple(path):
                return node
        raise KeyError(PATH_SEP.join(path))

    @property
    def cell_type_count(self) -> int:
        return sum(1 for _ in self.walk())

    def all_markers(self) -> list[str]:
        """Every marker name mentioned anywhere (markers, anti, requirements, vetoes, conditions,
        thresholds; the members of a marker group, not the group), de-duplicated in first-seen order."""
        from ctr.rules.expr import markers_in

        seen: dict[str, None] = {}
        for node in self.walk():
            for name in node.marker_names + node.anti_names:
                seen.setdefault(name)
            for req in node.requires:
                seen.setdefault(req.marker)
            for veto in node.vetoes:
                for m in veto.markers:
                    seen.setdefault(m)
            for cond in node.conditions:
                for m in markers_in(cond.expr):
                    seen.setdefault(m)
        for state in self.states:
            for name in state.marker_names + state.anti_names:
                seen.setdefault(name)
            for cond in state.conditions:
                for m in markers_in(cond.expr):
                    seen.setdefault(m)
        for thr in self.thresholds:
            seen.setdefault(thr.marker)
        groups = self.marker_groups()
        return list(dict.fromkeys(m for name in seen for m in groups.get(name, [name])))

    def marker_groups(self) -> dict[str, list[str]]:
        """Every marker group (``any(...)``) a cell type or state reads, in its markers, a `require`
        or a condition: group spelling -> its members."""
        from ctr.rules.expr import groups_in

        out: dict[str, list[str]] = {}
        for rule in [*self.walk(), *self.states]:
            out.update(rule.groups)
            for req in getattr(rule, "requires", []):
                if req.any_of:
                    out[req.marker] = req.any_of
            for cond in rule.conditions:
                out.update(groups_in(cond.expr))
        return out

    def canonical(self) -> dict:
        """The graph as plain data without source locations or source text: two rulesets
        that mean the same thing have equal canonical forms (the round-trip property)."""
        data = self.model_dump(mode="json", exclude={"source_text", "source_file", "param_locs", "includes", "stored_sha256", "meta"})
        data["scoring"] = self.scoring.explicit()
        data["gating"] = self.gating.model_dump(mode="json", include=self.gating.model_fields_set)
        if "level_defaults" in data["gating"]:
            data["gating"]["level_defaults"] = {
                str(k): v.explicit() for k, v in sorted(self.gating.level_defaults.items())
            }
        data["refinement"] = self.refinement.explicit()
        return _strip_locs(data)

    @property
    def digest(self) -> str:
        """sha256 of the canonical graph, for provenance and caching."""
        import json

        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()


def _strip_locs(value):
    if isinstance(value, dict):
        return {k: _strip_locs(v) for k, v in value.items() if k not in ("loc", "text", "override_locs")}
    if isinstance(value, list):
        return [_strip_locs(v) for v in value]
    return value


def assign_paths(roots: list[CellType], parent: tuple[str, ...] = ()) -> None:
    """Fill in ``path`` for every node from the tree structure (call after building a tree)."""
    for node in roots:
        node.path = parent + (node.name,)
        assign_paths(node.children, node.path)
