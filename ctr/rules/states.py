"""Which cell types a cell state applies to (its scope), from the rule graph alone.

A scope entry is a type path (``"Immune / T cells"``, or the reference tool's ``"Immune/T cells"``)
or a type name; it brings the type and all its descendants. ``"*"`` (or no entry) is every type.
"""

from __future__ import annotations

from ctr.rules.model import CellState, CellType, Ruleset, split_path

ALL = "*"


def _matches(ruleset: Ruleset, entry: str) -> list[CellType]:
    parts = split_path(entry)
    nodes = list(ruleset.walk())
    exact = [n for n in nodes if n.path == parts]
    if exact:
        return exact
    return [n for n in nodes if n.name == entry.strip()]


def unknown_scope_paths(ruleset: Ruleset, state: CellState) -> list[str]:
    """The ``applies_to`` / ``excludes`` entries that name no cell type."""
    return [e for e in state.applies_to + state.excludes if e.strip() != ALL and not _matches(ruleset, e)]


def scope_paths(ruleset: Ruleset, state: CellState) -> set[tuple[str, ...]]:
    """The paths of every cell type the state applies to."""
    def below(entries: list[str]) -> set[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        for entry in entries:
            if entry.strip() == ALL:
                return {n.path for n in ruleset.walk()}
            for node in _matches(ruleset, entry):
                out |= {d.path for d in node.walk()}
        return out

    included = below(state.applies_to) if state.applies_to else {n.path for n in ruleset.walk()}
    return included - below(state.excludes)
