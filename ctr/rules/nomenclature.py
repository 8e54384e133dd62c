"""Marker nomenclature: the names a marker goes by, and which names are close enough to suggest.

The synonym table ships with the package (``ctr/rules/synonyms.tsv``): each row joins the
protein / CD / antibody names of one molecule with the HGNC gene symbols that encode it, so one
ruleset serves RNA and protein panels. docs/marker-names.md lists the table and its sources.

Suggestions ("did you mean") follow marker nomenclature rather than string similarity: a name
that differs by one character is usually another protein (CD14 / CD194, FOXJ1 / FOXP3, CDH1 /
CD71), so only case or separator fixes, synonyms, and typos that keep every number and the
gene-family letters (a swapped or doubled letter; a dropped or added letter in a long word such
as Vimentin) are suggested.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parent / "synonyms.tsv"

_SEPARATORS = re.compile(r"[-_ .]")
_TOKENS = re.compile(r"[a-z]+|\d+|[^a-z\d]+")


def normalize(name: str) -> str:
    """The comparison key of a marker name: lower case without ``- _ . space``."""
    return _SEPARATORS.sub("", name).lower()


@dataclass(frozen=True)
class SynonymEntry:
    """One row of the synonym table: one molecule."""

    names: tuple[str, ...]  # protein / CD / antibody names and previous symbols: interchangeable
    genes: tuple[str, ...]  # HGNC symbols, preferred first; empty when no gene stands for it
    source: str
    note: str

    @property
    def gene_resolvable(self) -> bool:
        return bool(self.genes)


def _split(cell: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (cell or "").split(";") if part.strip())


@cache
def synonym_table() -> tuple[SynonymEntry, ...]:
    """The shipped synonym table, in file order."""
    with TABLE_PATH.open(encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t")
    return tuple(
        SynonymEntry(_split(r["names"]), _split(r["genes"]), (r["source"] or "").strip(), (r["note"] or "").strip())
        for r in rows
    )


@cache
def _index() -> dict[str, tuple[SynonymEntry, bool]]:
    """normalized name -> (its row, whether the name is one of the row's genes)."""
    out: dict[str, tuple[SynonymEntry, bool]] = {}
    for entry in synonym_table():
        for name in entry.names:
            out.setdefault(normalize(name), (entry, False))
        for gene in entry.genes:
            out.setdefault(normalize(gene), (entry, True))
    return out


def entry_for(name: str) -> SynonymEntry | None:
    """The table row that mentions ``name`` (case and separators ignored), or None."""
    hit = _index().get(normalize(name))
    return hit[0] if hit else None


def synonyms_of(name: str) -> tuple[str, ...]:
    """Names that stand for the same marker as ``name``, in the order to try them.

    A protein name gives the other names, then the genes; a gene gives the names (the genes of
    a multi-gene row are different proteins and do not stand for one another).
    """
    hit = _index().get(normalize(name))
    if hit is None:
        return ()
    entry, is_gene = hit
    key = normalize(name)
    others = tuple(n for n in entry.names if normalize(n) != key)
    return others if is_gene else others + entry.genes


def note_for(name: str) -> str:
    """What a user must know about a marker no gene stands for ('' otherwise)."""
    entry = entry_for(name)
    return entry.note if entry is not None and not entry.gene_resolvable else ""


# ---------------------------------------------------------------------------------------------
# suggestions


def _tokens(name: str) -> list[str | int]:
    """Letters, numbers (as numbers: CD8 = CD08) and other runs of a normalized name."""
    return [int(t) if t.isdigit() else t for t in _TOKENS.findall(normalize(name))]


# A letter run this long is a word (Vimentin, Podoplanin, Synaptophysin), not a gene-symbol stem:
# one dropped or added letter in it is a slip of the keyboard, not another gene. A changed letter
# is not: PDGFRA/PDGFRB, HLA-DRA/HLA-DQA, SERPINA1/SERPINB1 are other proteins.
WORD_LETTERS = 6


def _one_letter_more(a: str, b: str) -> bool:
    """Whether one of ``a`` and ``b`` is the other with one letter added."""
    short, long_ = sorted((a, b), key=len)
    return len(long_) == len(short) + 1 and any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _typo_of(a: str, b: str, min_doubled: int = 3) -> bool:
    """Whether letter runs ``a`` and ``b`` differ by a swap of two neighbours or a doubled letter
    (the shorter run at least ``min_doubled`` letters), or by one dropped letter when both are
    words of at least ``WORD_LETTERS`` letters.

    In short runs substitutions and other insertions are left out on purpose: in gene symbols they
    give another gene (FOXJ/FOXP, CDH/CD, TNFRSF/TNFSF).
    """
    if min(len(a), len(b)) >= WORD_LETTERS and _one_letter_more(a, b):
        return True
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = sorted((a, b), key=len)
    if len(long_) != len(short) + 1 or len(short) < min_doubled:
        return False
    for i, ch in enumerate(long_):
        if long_[:i] + long_[i + 1 :] == short:
            return (i > 0 and long_[i - 1] == ch) or (i + 1 < len(long_) and long_[i + 1] == ch)
    return False


def _same_marker_shape(name: str, other: str) -> bool:
    """Same numbers in the same places and the same letters but for one typo."""
    ta, tb = _tokens(name), _tokens(other)
    if len(ta) != len(tb):
        return False
    different = [(x, y) for x, y in zip(ta, tb) if x != y]
    if len(different) != 1:
        return False
    x, y = different[0]
    # a doubled letter in a short symbol is often another gene (SEL/SELL); in a longer one (MS4AA1) a typo
    min_doubled = 1 if min(len(normalize(name)), len(normalize(other))) >= 4 else 3
    return isinstance(x, str) and isinstance(y, str) and x.isalpha() and y.isalpha() and _typo_of(x, y, min_doubled)


def suggest_markers(name: str, candidates: Iterable[str], n: int = 1) -> list[str]:
    """Candidates that ``name`` plausibly meant, best first (at most ``n``).

    In order: the same name up to case and separators; a synonym from the table; a typo that keeps
    the numbers and the gene family (``PTRPC`` -> ``PTPRC``, also through a candidate's synonyms).
    A different CD number or gene family is never suggested.
    """
    pool = list(dict.fromkeys(candidates))
    key = normalize(name)
    same = [c for c in pool if normalize(c) == key and c != name]
    synonyms = {normalize(s) for s in synonyms_of(name)}
    via_synonym = [c for c in pool if normalize(c) in synonyms]
    typos = [c for c in pool if any(_same_marker_shape(name, k) for k in (c, *synonyms_of(c)))]
    return list(dict.fromkeys(same + via_synonym + typos))[:n]


def did_you_mean_marker(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix for a marker name, or '' when no candidate is plausible."""
    hits = suggest_markers(name, candidates)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(f"'{h}'" for h in hits) + "?)"
