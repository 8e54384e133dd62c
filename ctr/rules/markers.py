"""Marker resolution: which panel variable each ruleset marker refers to.

Order (semantics.md §2): exact name, case-insensitive name, the ruleset's own aliases, the
synonym table shipped with the package (:mod:`ctr.rules.nomenclature`, protein names <-> HGNC gene
symbols, so one ruleset serves RNA and protein panels), and last a match that ignores case and the
separators ``- _ . space`` ("HLA-DR" = "HLADR", "Pan-CK" = "PanCK"). Every step is a dict lookup
in an index built once per panel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ctr.rules.model import Ruleset
from ctr.rules.nomenclature import normalize, synonyms_of

__all__ = ["How", "MarkerResolution", "PanelIndex", "alias_groups", "normalize", "resolve_markers", "resolve_names"]

How = Literal["exact", "case", "alias", "builtin_alias", "normalized"]

@dataclass
class MarkerResolution:
    """Where each ruleset marker was found in the panel, and how."""

    mapping: dict[str, str] = field(default_factory=dict)  # ruleset marker -> panel var name
    how: dict[str, How] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

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


class PanelIndex:
    """Dict lookups over one panel's variable names, built once."""

    def __init__(self, panel: Sequence[str]):
        self.panel = list(panel)
        self.exact = set(self.panel)
        self.lower: dict[str, str] = {}
        self.normalized: dict[str, str] = {}
        for name in self.panel:
            self.lower.setdefault(name.lower(), name)
            self.normalized.setdefault(normalize(name), name)

    def find(self, name: str) -> str | None:
        """The panel name equal to ``name`` exactly or case-insensitively, else None."""
        if name in self.exact:
            return name
        return self.lower.get(name.lower())

    def _via_group(self, name: str, members: tuple[str, ...]) -> str | None:
        for member in members:
            if member.lower() == name.lower():
                continue
            hit = self.find(member) or self.normalized.get(normalize(member))
            if hit is not None:
                return hit
        return None

    def resolve(self, name: str, aliases: _GroupIndex) -> tuple[str, How] | None:
        if name in self.exact:
            return name, "exact"
        if name.lower() in self.lower:
            return self.lower[name.lower()], "case"
        hit = self._via_group(name, aliases.members(name))
        if hit is not None:
            return hit, "alias"
        hit = self._via_group(name, synonyms_of(name))
        if hit is not None:
            return hit, "builtin_alias"
        if normalize(name) in self.normalized:
            return self.normalized[normalize(name)], "normalized"
        return None


def alias_groups(ruleset: Ruleset) -> list[tuple[str, ...]]:
    """The ruleset's alias statements as groups (canonical first)."""
    return [(a.canonical, *a.synonyms) for a in ruleset.aliases]


def resolve_names(
    names: Iterable[str], panel: Sequence[str], aliases: Iterable[Sequence[str]] = ()
) -> MarkerResolution:
    """Resolve marker names against a panel, with extra alias groups (ruleset aliases)."""
    index = PanelIndex(panel)
    alias_index = _GroupIndex(aliases, str.lower)
    out = MarkerResolution()
    for name in dict.fromkeys(names):
        hit = index.resolve(name, alias_index)
        if hit is None:
            out.missing.append(name)
        else:
            out.mapping[name], out.how[name] = hit
    return out


def resolve_markers(ruleset: Ruleset, panel: Sequence[str]) -> MarkerResolution:
    """Resolve every marker the ruleset mentions (see :meth:`Ruleset.all_markers`) against ``panel``."""
    return resolve_names(ruleset.all_markers(), panel, alias_groups(ruleset))
