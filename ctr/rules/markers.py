"""Marker resolution: which panel variable each ruleset marker refers to.

Order (semantics.md §2): exact name, case-insensitive name, the ruleset's own aliases, the
synonym table shipped with the package (:mod:`ctr.rules.nomenclature`, protein names <-> HGNC gene
symbols, so one ruleset serves RNA and protein panels), and last a match that ignores case and the
separators ``- _ . space`` ("HLA-DR" = "HLADR", "Pan-CK" = "PanCK"). When none of these finds the
marker among the panel's names, the same steps run over the marker parts of its tagged channel
names (``tagged``: ``141Pr_CD45``, ``CD45(Sm152)Di``, ``CD3 FITC-A`` measure CD45, CD45 and CD3;
:mod:`ctr.rules.channel_tags`). Every step is a dict lookup in an index built once per panel.

A marker that two panel columns answer to at the step that resolves it (``141Pr_CD45`` and
``CD45(Sm152)Di``; ``cd3`` and ``Cd3``) takes the first in panel order and is listed in
:attr:`MarkerResolution.ambiguous`, which lint and the run report (CTR308), never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from ctr.rules.channel_tags import marker_part
from ctr.rules.model import Ruleset
from ctr.rules.nomenclature import normalize, synonyms_of

__all__ = ["How", "MarkerResolution", "PanelIndex", "alias_groups", "group_columns", "normalize", "panel_index",
           "resolve_markers", "resolve_names"]

How = Literal["exact", "case", "alias", "builtin_alias", "normalized", "tagged", "group"]

@dataclass
class MarkerResolution:
    """Where each ruleset marker was found in the panel, and how."""

    mapping: dict[str, str] = field(default_factory=dict)  # ruleset marker -> panel var name
    how: dict[str, How] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    # ruleset marker -> every panel column it matched at the step that resolved it (the first is used)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per marker (resolved first, in ruleset order, then missing)."""
        rows = [{"marker": m, "panel_name": p, "how": self.how[m]} for m, p in self.mapping.items()]
        rows += [{"marker": m, "panel_name": None, "how": "missing"} for m in self.missing]
        return rows

    @property
    def resolved(self) -> list[str]:
        return list(self.mapping)


class _GroupIndex:
    """Alias groups indexed by a key function: name key -> the group's members in order."""

    def __init__(self, groups: Iterable[Sequence[str]], key):
        self.key = key
        self.groups: dict[str, tuple[str, ...]] = {}
        for group in groups:
            members = tuple(group)
            for member in members:
                self.groups.setdefault(key(member), members)

    def members(self, name: str) -> tuple[str, ...]:
        return self.groups.get(self.key(name), ())


class _Lookup:
    """Panel columns by the name each goes by (its own, or its marker part when tagged): exactly,
    case-insensitively and normalized. Every key keeps all its columns, so that a name two columns
    answer to is seen as ambiguous rather than silently given to the first."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.exact: dict[str, list[str]] = {}
        self.lower: dict[str, list[str]] = {}
        self.normalized: dict[str, list[str]] = {}
        for name, column in pairs:
            self.exact.setdefault(name, []).append(column)
            self.lower.setdefault(name.lower(), []).append(column)
            self.normalized.setdefault(normalize(name), []).append(column)

    def find(self, name: str) -> list[str]:
        """The columns going by ``name`` exactly, else case-insensitively."""
        return self.exact.get(name) or self.lower.get(name.lower(), [])

    def _via_group(self, name: str, members: tuple[str, ...]) -> list[str]:
        for member in members:
            if member.lower() == name.lower():
                continue
            hit = self.find(member) or self.normalized.get(normalize(member), [])
            if hit:
                return hit
        return []

    def resolve(self, name: str, aliases: _GroupIndex) -> tuple[list[str], How] | None:
        """The columns ``name`` resolves to at the first step that finds any, and the step."""
        steps: tuple[tuple[How, Callable[[], list[str]]], ...] = (
            ("exact", lambda: self.exact.get(name, [])),
            ("case", lambda: self.lower.get(name.lower(), [])),
            ("alias", lambda: self._via_group(name, aliases.members(name))),
            ("builtin_alias", lambda: self._via_group(name, synonyms_of(name))),
            ("normalized", lambda: self.normalized.get(normalize(name), [])),
        )
        for how, step in steps:
            hit = step()
            if hit:
                return hit, how
        return None


@lru_cache(maxsize=8)  # choosing a built-in resolves every ruleset against one panel
def _tagged_columns(panel: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(marker part, column) for each column of ``panel`` whose name carries a recognised tag."""
    parts = ((marker_part(name), name) for name in panel)
    return tuple((part, name) for part, name in parts if part is not None)


class PanelIndex:
    """Dict lookups over one panel's variable names, built once (the tagged names when first needed)."""

    def __init__(self, panel: Sequence[str]):
        self.panel = list(panel)
        self.plain = _Lookup((name, name) for name in self.panel)
        self._tagged: _Lookup | None = None

    @property
    def tagged(self) -> _Lookup:
        """The panel's tagged columns (``141Pr_CD45``, ``CD3 FITC-A``) by the marker they measure."""
        if self._tagged is None:
            self._tagged = _Lookup(_tagged_columns(tuple(self.panel)))
        return self._tagged

    def find(self, name: str) -> str | None:
        """The panel name equal to ``name`` exactly or case-insensitively, else None."""
        hit = self.plain.find(name)
        return hit[0] if hit else None

    def resolve(self, name: str, aliases: _GroupIndex) -> tuple[list[str], How] | None:
        """Every panel column ``name`` resolves to at the first step that finds one, and the step:
        the panel's own names first, then the marker parts of its tagged names (``tagged``)."""
        hit = self.plain.resolve(name, aliases)
        if hit is None:
            tagged = self.tagged.resolve(name, aliases)
            hit = (tagged[0], "tagged") if tagged is not None else None
        return hit


@lru_cache(maxsize=8)  # every built-in, and every var column tried as names, is resolved against one index
def panel_index(panel: tuple[str, ...]) -> PanelIndex:
    """The :class:`PanelIndex` of ``panel``, built once."""
    return PanelIndex(panel)


def alias_groups(ruleset: Ruleset) -> list[tuple[str, ...]]:
    """The ruleset's alias statements as groups (canonical first)."""
    return [(a.canonical, *a.synonyms) for a in ruleset.aliases]


def resolve_names(
    names: Iterable[str], panel: Sequence[str], aliases: Iterable[Sequence[str]] = ()
) -> MarkerResolution:
    """Resolve marker names against a panel, with extra alias groups (ruleset aliases)."""
    index = panel_index(tuple(panel))
    alias_index = _GroupIndex(aliases, str.lower)
    out = MarkerResolution()
    for name in dict.fromkeys(names):
        hit = index.resolve(name, alias_index)
        if hit is None:
            out.missing.append(name)
            continue
        columns, out.how[name] = list(dict.fromkeys(hit[0])), hit[1]
        out.mapping[name] = columns[0]  # panel order; with more than one, the choice is reported (CTR308)
        if len(columns) > 1:
            out.ambiguous[name] = columns
    return out


def resolve_markers(ruleset: Ruleset, panel: Sequence[str]) -> MarkerResolution:
    """Resolve every marker the ruleset mentions (see :meth:`Ruleset.all_markers`) against ``panel``.

    A marker group (``any(A, B)``) resolves, to itself (how ``group``), when at least one of its
    members does: its values are derived from the members' columns (:mod:`ctr.stats.marker_groups`)."""
    out = resolve_names(ruleset.all_markers(), panel, alias_groups(ruleset))
    for group, members in ruleset.marker_groups().items():
        if any(m in out.mapping for m in members):
            out.mapping[group], out.how[group] = group, "group"
        else:
            out.missing.append(group)
    return out


def group_columns(resolution: MarkerResolution, groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each resolved marker group's members as panel columns (the resolved members, in order)."""
    return {g: list(dict.fromkeys(resolution.mapping[m] for m in members if m in resolution.mapping))
            for g, members in groups.items() if resolution.how.get(g) == "group"}
