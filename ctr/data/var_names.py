"""The names a panel's variables go by for marker resolution: ``var_names``, or a column of ``var``.

Mass and flow cytometry data converted to AnnData often keep the channel as the variable name
(``Pr141Di``, ``FL1-A``) and the antigen in a column (``var["marker"]``, ``"desc"``,
``"antigen"``), as readfcs, pytometry, FlowKit or CATALYST write them. Such a panel names markers
through that column: chosen with ``--var-names COLUMN`` (scanpy's ``gene_symbols=``), or
automatically when a text column of ``var`` resolves clearly more of the ruleset's markers than
``var_names`` do (:data:`CLEARLY_MORE`). An empty entry (an unstained channel) keeps its
variable name. Only the names the ruleset is matched against change: ``var_names`` stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from ctr.codes import MARKER_NAMES_COLUMN
from ctr.diagnostics import Diagnostic, did_you_mean
from ctr.errors import InputError
from ctr.rules.markers import resolve_markers
from ctr.rules.model import Ruleset

__all__ = ["CLEARLY_MORE", "MIN_RESOLVED", "MarkerNames", "choose_marker_names", "column_names", "text_columns"]

# a column is chosen automatically when it resolves at least CLEARLY_MORE times the markers var_names
# resolve, and at least MIN_RESOLVED of them: a chance match or two never moves a run off var_names
CLEARLY_MORE = 2
MIN_RESOLVED = 3


@dataclass(frozen=True)
class MarkerNames:
    """The marker name of each variable (in var order), and where the names came from."""

    names: list[str]
    var_names: list[str]  # the variables' own names, which stay as they are
    column: str | None = None  # the var column the names were read from; None: var_names
    automatic: bool = False  # the column was chosen because it resolves clearly more markers
    resolved_by_var_names: int | None = None  # ruleset markers resolved through var_names (automatic choice)
    resolved_by_column: int | None = None  # ... and through the column
    of_builtins: bool = False  # counted against the built-in rulesets (no ruleset named): the best of them

    def diagnostics(self) -> list[Diagnostic]:
        """The one-line note of an automatic choice (CTR519), else nothing."""
        if not self.automatic:
            return []
        return [Diagnostic(
            MARKER_NAMES_COLUMN,
            f"marker names read from var['{self.column}']: it names {self.resolved_by_column} of "
            f"{'the best-matching built-in ruleset' if self.of_builtins else 'the ruleset'}'s markers, var_names "
            f"{self.resolved_by_var_names}; var_names stay as they are",
            hint=f"pass --var-names {self.column} to choose it, "
                 "or --var-names none to match var_names")]


def text_columns(var: pd.DataFrame) -> list[str]:
    """The columns of ``var`` that hold text (strings or categories): the candidates for names."""
    return [str(name) for name in var.columns
            if isinstance(var[name].dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(var[name])
            or pd.api.types.is_string_dtype(var[name])]


def column_names(var: pd.DataFrame, var_names: Sequence[str], column: str) -> list[str]:
    """Each variable's name in ``var[column]``; an empty or missing entry keeps its variable name.
    A column ``var`` does not have is an error naming the columns it has."""
    if column not in var.columns:
        have = ", ".join(map(str, var.columns)) or "(none)"
        raise InputError(f"var has no column '{column}'{did_you_mean(column, map(str, var.columns))}; "
                         f"its columns: {have}",
                         hint="name the var column that holds the marker names (--var-names, var_names=), "
                              "or none to match var_names")
    values = var[column].astype(object)
    return [str(name) if pd.isna(value) or not str(value).strip() else str(value).strip()
            for value, name in zip(values, var_names)]


def choose_marker_names(var: pd.DataFrame, var_names: Sequence[str], column: str | None, *, automatic: bool = True,
                        rulesets: Callable[[], list[Ruleset]] = list) -> MarkerNames:
    """The names to match the ruleset against: ``var[column]`` when one is given; else, when
    ``automatic``, the text column that resolves clearly more markers of ``rulesets()`` (the
    ruleset in force, or the built-ins one will be chosen from: a panel's best) than var_names do;
    else var_names."""
    plain = [str(v) for v in var_names]
    if column is not None:
        return MarkerNames(column_names(var, plain, column), plain, column)
    candidates = text_columns(var) if automatic else []
    if not candidates:
        return MarkerNames(plain, plain)
    sets = rulesets()

    def resolved(names: list[str]) -> int:
        return max((len(resolve_markers(rs, names).mapping) for rs in sets), default=0)

    base = resolved(plain)
    best: tuple[int, str, list[str]] | None = None
    for name in candidates:
        names = column_names(var, plain, name)
        if names == plain or len(set(names) - set(plain)) < MIN_RESOLVED:
            continue  # nothing new to match (a copy of var_names, a column of one value such as feature_types)
        n = resolved(names)
        if best is None or n > best[0]:
            best = (n, name, names)
    if best is None or best[0] < max(MIN_RESOLVED, CLEARLY_MORE * base):
        return MarkerNames(plain, plain)
    return MarkerNames(best[2], plain, best[1], True, base, best[0], of_builtins=len(sets) > 1)
