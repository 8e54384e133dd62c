"""Marker resolution: which panel variable each ruleset marker refers to.

Order (semantics.md §2): exact name, case-insensitive name, the ruleset's own aliases, the
built-in synonym table (:data:`BUILTIN_SYNONYMS`), and last a match that ignores case and the
separators ``- _ . space`` ("HLA-DR" = "HLADR", "Pan-CK" = "PanCK"). Every step is a dict lookup
in an index built once per panel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ctr.rules.model import Ruleset

How = Literal["exact", "case", "alias", "builtin_alias", "normalized"]

# Groups of names for the same marker: protein / CD name first, then the HGNC gene symbol and
# common spellings. When a ruleset names any member, the panel's member is used (the first one in
# group order when the panel has several). Matching is case-insensitive and ignores - _ . space,
# so each group lists only spellings that differ in letters (Ki67 covers Ki-67).
BUILTIN_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("CD45", "PTPRC", "LCA"),
    ("CD20", "MS4A1"),
    ("CD31", "PECAM1"),
    ("SMA", "ACTA2", "aSMA", "alpha-SMA"),
    ("E-cadherin", "ECAD", "CDH1"),
    ("Pan-Cytokeratin", "PanCK", "Pan-Keratin", "Cytokeratin", "CK"),
    ("CD3", "CD3E", "CD3D", "CD3G"),
    ("CD8", "CD8A"),
    ("CD11c", "ITGAX"),
    ("CD11b", "ITGAM", "MAC-1"),
    ("CD16", "FCGR3A"),
    ("CD56", "NCAM1", "NCAM"),
    ("HLA-DR", "HLA-DRA"),
    ("Ki67", "MKI67"),
    ("Vimentin", "VIM"),
    ("Podoplanin", "PDPN", "D2-40"),
    ("Granzyme B", "GZMB", "GranB"),
    ("Perforin", "PRF1"),
    ("EpCAM", "CD326"),
    ("Collagen IV", "COL4A1", "Col4"),
    ("Collagen I", "COL1A1", "Col1"),
    ("CD15", "FUT4", "SSEA-1"),
    ("CD138", "SDC1", "Syndecan-1"),
    ("CD25", "IL2RA"),
    ("CD127", "IL7R"),
    ("CD197", "CCR7"),
    ("CD194", "CCR4"),
    ("CD1c", "BDCA-1"),
    ("CD123", "IL3RA"),
    ("CD303", "CLEC4C", "BDCA-2"),
    ("CD141", "THBD", "BDCA-3"),
    ("CD206", "MRC1"),
    ("CD64", "FCGR1A"),
    ("CD57", "B3GAT1"),
    ("CD103", "ITGAE"),
    ("CD117", "KIT", "c-Kit"),
    ("CD66b", "CEACAM8"),
    ("CD10", "MME"),
    ("CD21", "CR2"),
    ("CD30", "TNFRSF8"),
    ("CD71", "TFRC"),
    ("PD-1", "PDCD1", "CD279"),
    ("PD-L1", "CD274"),
    ("LAG-3", "CD223"),
    ("TIM-3", "HAVCR2", "CD366"),
    ("CTLA-4", "CD152"),
    ("ICOS", "CD278"),
    ("VISTA", "VSIR", "C10orf54"),
    ("T-bet", "TBX21"),
    ("beta-catenin", "CTNNB1", "b-catenin"),
    ("p53", "TP53"),
    ("Na-K-ATPase", "ATP1A1"),
    ("MUC-1", "CD227"),
    ("Synaptophysin", "SYP"),
    ("Chromogranin A", "CHGA"),
    ("Tryptase", "TPSAB1"),
    ("Myeloperoxidase", "MPO"),
    ("Desmin", "DES"),
    ("von Willebrand factor", "VWF"),
    ("Keratin 8", "KRT8", "CK8"),
    ("Keratin 18", "KRT18", "CK18"),
    ("Keratin 19", "KRT19", "CK19"),
    ("Keratin 5", "KRT5", "CK5"),
    ("Keratin 14", "KRT14", "CK14"),
    ("Keratin 7", "KRT7", "CK7"),
    ("Caveolin-1", "CAV1"),
    ("Lysozyme", "LYZ"),
    ("Calprotectin", "S100A8"),
    # current HGNC symbols and the older ones that hg19-era gene annotations still use
    ("JCHAIN", "IGJ"),
    ("ACKR1", "DARC"),
    ("ACKR3", "CXCR7"),
    ("MCEMP1", "C19orf59"),
    ("SELENOP", "SEPP1"),
    ("PLPP3", "PPAP2B"),
    ("ADGRG1", "GPR56"),
    ("ADGRE5", "CD97"),
    ("NECTIN2", "PVRL2"),
    ("TENT5C", "FAM46C"),
)

_SEPARATORS = re.compile(r"[-_ .]")


def normalize(name: str) -> str:
    """The key of the last resolution step: lower case without ``- _ . space``."""
    return _SEPARATORS.sub("", name).lower()


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

    def resolve(self, name: str, aliases: _GroupIndex, builtin: _GroupIndex) -> tuple[str, How] | None:
        if name in self.exact:
            return name, "exact"
        if name.lower() in self.lower:
            return self.lower[name.lower()], "case"
        hit = self._via_group(name, aliases.members(name))
        if hit is not None:
            return hit, "alias"
        hit = self._via_group(name, builtin.members(name))
        if hit is not None:
            return hit, "builtin_alias"
        if normalize(name) in self.normalized:
            return self.normalized[normalize(name)], "normalized"
        return None


_BUILTIN_INDEX = _GroupIndex(BUILTIN_SYNONYMS, normalize)


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
        hit = index.resolve(name, alias_index, _BUILTIN_INDEX)
        if hit is None:
            out.missing.append(name)
        else:
            out.mapping[name], out.how[name] = hit
    return out


def resolve_markers(ruleset: Ruleset, panel: Sequence[str]) -> MarkerResolution:
    """Resolve every marker the ruleset mentions (see :meth:`Ruleset.all_markers`) against ``panel``."""
    return resolve_names(ruleset.all_markers(), panel, alias_groups(ruleset))
