"""scimap's phenotype workflow: rows ``group, phenotype, marker columns`` where a cell holds
``pos``, ``neg``, ``anypos``, ``anyneg``, ``allpos`` or ``allneg``; values are rescaled so that
the manual gate is 0.5.

scimap gives every phenotype of a group a score per cell (``pos``: mean of the values, ``neg``:
mean of 1 - value, ``anypos``: max, ``anyneg``: max of 1 - value, ``allpos``/``allneg``: the max
when every marker is past the gate, plus 0.01; the categories averaged) and labels the cell with
the best phenotype when its score reaches the gate, else leaves it at the group (``GROUP-rest``).
A group applies to every cell labelled with its name; ``X-rest`` to cells of X that none of X's
phenotypes took. The first group holds all cells.

Here each phenotype becomes a cell type whose ``when`` condition is exactly that rule, written
with ``mean(M)`` (the value of a cell when each cell is its own cluster, the cluster mean
otherwise): its score reaches the gate and beats every sibling's (earlier siblings win ties, as
in scimap). Every marker gets ``threshold M >= 0.5``; the level thresholds scimap does not have
are opened (coverage 0, enrichment -10, gap 0) so only the conditions decide, and the automatic
relabel (which scimap does not have) is switched off by an unreachable ``subtype_signal_threshold``.
"""

from __future__ import annotations

from ctr.lang.document import Document
from ctr.lang.importers.common import Draft, Imported, assemble, read_csv_rows
from ctr.rules.expr import quote_name

TOOL = "scimap"
GATE = 0.5
REST = "-rest"
CATEGORIES = ("pos", "neg", "anypos", "anyneg", "allpos", "allneg")
OPEN_LEVEL = {"min_coverage": 0.0, "min_enrichment": -10.0, "min_gap": 0.0}
NO_RELABEL = 1.0e6  # a score no type reaches: ctr's automatic relabel, which scimap does not have, never fires


def looks_like(text: str) -> bool:
    words = set(text.replace("\r", ",").replace("\n", ",").replace(" ", "").split(","))
    return bool(words & {"pos", "neg", "anypos", "allpos", "anyneg", "allneg"})


def _mean(m: str) -> str:
    return f"mean({quote_name(m)})"


def _avg(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else f"({' + '.join(terms)}) / {len(terms)}"


class _Rule:
    """One phenotype's score as pieces ``(guard or None, score expression)``."""

    def __init__(self, cats: dict[str, list[str]]):
        terms, guard, guarded = [], None, None
        for cat in CATEGORIES:
            ms = cats.get(cat, [])
            if not ms:
                continue
            if cat == "pos":
                terms.append(_avg([_mean(m) for m in ms]))
            elif cat == "neg":
                terms.append(_avg([f"(1 - {_mean(m)})" for m in ms]))
            elif cat == "anypos":
                terms.append(_mean(ms[0]) if len(ms) == 1 else f"max({', '.join(_mean(m) for m in ms)})")
            elif cat == "anyneg":
                terms.append(f"(1 - {_mean(ms[0])})" if len(ms) == 1 else f"(1 - min({', '.join(_mean(m) for m in ms)}))")
            else:
                pos = cat == "allpos"
                vals = [_mean(m) if pos else f"(1 - {_mean(m)})" for m in ms]
                guard = "all(" + ", ".join(f"{v} >= {GATE}" for v in vals) + ")"
                best = vals[0] if len(vals) == 1 else f"max({', '.join(vals)})"
                guarded = (f"({best} + 0.01)", "0.01")
                terms.append("@")  # placeholder for the guarded term
        self.n = len(terms)
        if guard is None:
            self.pieces = [(None, _avg(terms))]
        else:
            self.pieces = [(guard, _avg([t if t != "@" else guarded[0] for t in terms])),
                           (f"not {guard}", _avg([t if t != "@" else guarded[1] for t in terms]))]


def _and(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    return " and ".join(f"({p})" if " or " in p else p for p in parts)


def _beats(c: _Rule, others: list[tuple[_Rule, str]]) -> str:
    """c's score reaches the gate and beats each other rule (op '>' or '>=')."""
    options = []
    for guard, score in c.pieces:
        parts = [guard, f"{score} >= {GATE}"]
        for d, op in others:
            for dguard, dscore in d.pieces:
                cmp = f"{score} {op} {dscore}"
                parts.append(f"not {dguard} or {cmp}" if dguard else cmp)
        options.append(_and(parts))
    return options[0] if len(options) == 1 else " or ".join(f"({o})" for o in options)


def _below_gate(d: _Rule) -> str:
    return _and([f"not {g} or {s} < {GATE}" if g else f"{s} < {GATE}" for g, s in d.pieces])


def parse_document(text: str, file: str) -> Document:
    imp = Imported(file=file, text=text, tool=TOOL)
    rows = read_csv_rows(imp)
    description = f"imported from scimap phenotype workflow {file}"
    if len(rows) < 2:
        imp.error(1, "a scimap workflow has a header of markers and one row per phenotype")
        return assemble(imp, description)
    header = rows[0][1]
    markers = header[2:]
    groups: dict[str, list[tuple[int, str, _Rule, dict[str, list[str]]]]] = {}
    used: dict[str, int] = {}
    for line, cells in rows[1:]:
        if len(cells) < 2 or not cells[0] or not cells[1]:
            imp.error(line, "each row starts with the group and the phenotype name")
            continue
        cats: dict[str, list[str]] = {}
        for marker, cell in zip(markers, cells[2:]):
            word = cell.strip().lower()
            if not word:
                continue
            if word not in CATEGORIES:
                imp.error(line, f"'{cells[1]}', {marker}: {cell!r} is not one of {', '.join(CATEGORIES)}")
                continue
            cats.setdefault(word, []).append(marker)
            used.setdefault(marker, line)
        if not cats:
            imp.error(line, f"phenotype '{cells[1]}' uses no marker")
            continue
        if len(cats.get("pos", [])) > 1 or len(cats.get("neg", [])) > 1:
            imp.loss(line, f"'{cells[1]}': scimap labels cells that fail one of several pos/neg markers "
                     f"'likely-{cells[1]}'; here they are '{cells[1]}' when the average score passes")
        if "allpos" in cats and "allneg" in cats:
            imp.loss(line, f"'{cells[1]}': allpos and allneg together are approximated by the allneg rule only")
            cats.pop("allpos")
        groups.setdefault(cells[0], []).append((line, cells[1], _Rule(cats), cats))
    first = rows[1][1][0] if rows[1][1] else ""
    names = {name for members in groups.values() for _, name, _, _ in members}
    for group, members in groups.items():
        base = group[: -len(REST)] if group.endswith(REST) and group[: -len(REST)] in names else group
        parent = None if group == first else base
        outer = [r for _, _, r, _ in groups.get(base, [])] if base != group else []
        for i, (line, name, rule, cats) in enumerate(members):
            others = [(r, ">" if j < i else ">=") for j, (_, _, r, _) in enumerate(members) if j != i]
            conditions = [_beats(rule, others)]
            conditions += [_below_gate(r) for r in outer]
            positives = cats.get("pos", []) + cats.get("anypos", []) + cats.get("allpos", [])
            imp.drafts.append(Draft(name=name, line=line, parent=parent, markers=positives, conditions=conditions))
    for marker, line in used.items():
        imp.thresholds[marker] = (">=", GATE, line)
    for level in range(_depth(imp.drafts)):
        imp.settings += [("level", key, value, level) for key, value in OPEN_LEVEL.items()]
    # scimap has no refinement: a cluster the rules leave at a group is not relabelled by votes
    imp.settings.append(("refinement", "subtype_signal_threshold", NO_RELABEL, None))
    imp.loss(1, "scimap scores each cell; here the same rule reads each cluster's mean values (exact when each "
             "cell is its own cluster, e.g. --cluster-key on a per-cell id with --unit cell)")
    return assemble(imp, description)


def _depth(drafts: list[Draft]) -> int:
    parents: dict[str, set[str | None]] = {}
    for d in drafts:
        parents.setdefault(d.name, set()).add(d.parent)

    def depth(name: str | None, seen: frozenset) -> int:
        if name is None or name in seen:
            return 0
        return 1 + max(depth(p, seen | {name}) for p in parents.get(name, {None}))

    return max((depth(d.name, frozenset()) for d in drafts), default=1)
