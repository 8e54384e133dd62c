"""Semantic checks on a compiled rule graph, alone (CTR25x) and against a marker panel (CTR30x).

:func:`lint` returns diagnostics as values; :class:`LintReport` packages them for ``ctr lint-ruleset``
(compiling the named ruleset and reading the panel file is :func:`ctr.ruleset_commands.lint_target`).
Severities are chosen so that an error means "this ruleset cannot work as written" and a warning
means "this probably does not do what you meant"; docs/errors.md explains each code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ctr.codes import (
    ALIAS_CONFLICT,
    AMBIGUOUS_MARKER,
    ALIAS_SHADOWS,
    CODES,
    CONDITION_MISSING,
    CONDITION_UNLISTED,
    EMPTY_RULESET,
    INDISTINGUISHABLE,
    MARKER_REPEATED,
    NEVER_COVERED,
    NO_MARKERS,
    NO_OVERLAP,
    PANEL_MISSING,
    POS_AND_ANTI,
    REQUIRE_MISSING,
    REQUIRE_UNLISTED,
    SAME_PANEL_MARKER,
    SINGLE_CHILD,
    THRESHOLD_DUPLICATE,
    THRESHOLD_UNUSED,
    VETO_POSITIVE,
    VETO_UNLISTED,
)
from ctr.diagnostics import Diagnostic, DiagnosticList, SourceLoc, preview_names
from ctr.rules.expr import groups_in, markers_in, quote_name
from ctr.rules.markers import MarkerResolution, alias_groups, panel_index, resolve_markers
from ctr.rules.nomenclature import did_you_mean_marker, note_for
from ctr.rules.model import PATH_SEP, CellType, Ruleset
from ctr.rules.params import level_params




SUGGESTION_BUDGET = 200_000  # names compared by "did you mean" searches in one lint, all together


class _Suggest:
    """``did_you_mean_marker`` until ``budget`` candidate names have been compared, so that linting
    100,000 misspelt markers against a 30,000-gene panel stays linear (the first suggestions are the
    useful ones)."""

    def __init__(self, budget: int = SUGGESTION_BUDGET):
        self.budget = budget

    def __call__(self, name: str, candidates) -> str:
        self.budget -= len(candidates)
        return did_you_mean_marker(name, candidates) if self.budget >= 0 else ""


def lint(ruleset: Ruleset, panel: Sequence[str] | None = None) -> list[Diagnostic]:
    """Every structural problem of ``ruleset``, plus panel problems when ``panel`` is given.

    The cost is linear in the size of the ruleset plus the panel."""
    if not ruleset.roots:  # every other check would speak of "0 markers"
        return [_empty(ruleset)]
    out: list[Diagnostic] = []
    suggest = _Suggest()
    for node in ruleset.walk():
        out += _check_node(node, suggest, _coverage_free(ruleset, node))
    out += _check_aliases(ruleset)
    out += _check_thresholds(ruleset, suggest)
    if panel is not None:
        out += _check_panel(ruleset, list(panel), _Suggest())  # its own budget: the panel's names are the useful ones
    return out


def _empty(ruleset: Ruleset) -> Diagnostic:
    loc = ruleset.loc or (SourceLoc(file=ruleset.source_file) if ruleset.source_file else None)
    return Diagnostic(EMPTY_RULESET, f"ruleset '{ruleset.name}' defines no cell types, so there is nothing to assign",
                      loc, hint="add `type NAME { markers ... }` blocks (docs/ruleset-language.md), or include a file that has them")


def require_cell_types(ruleset: Ruleset) -> None:
    """Refuse to annotate with a ruleset that defines no cell type (:class:`RulesetError`, CTR261)."""
    if not ruleset.roots:
        from ctr.errors import RulesetError

        diag = _empty(ruleset)
        raise RulesetError(f"{diag.loc}: {diag.code} {diag.message}" if diag.loc else f"{diag.code} {diag.message}",
                           hint=diag.hint, diagnostics=[diag])


# ---------------------------------------------------------------------------------------------
# structure


def _coverage_free(ruleset: Ruleset, node: CellType) -> bool:
    """A type whose conditions decide and whose coverage gate is open (min_coverage 0, as in an
    imported scimap workflow) can pass without positive markers."""
    return bool(node.conditions) and level_params(ruleset.gating, node.level, node.overrides).min_coverage == 0


def _check_node(node: CellType, suggest: _Suggest, coverage_free: bool = False) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    where = f"cell type '{node.path_str}'"
    positives = set(node.marker_names)
    antis = set(node.anti_names)

    if not node.markers and not coverage_free:
        leaf = not node.children
        out.append(
            Diagnostic(
                NO_MARKERS,
                f"{where} has no positive markers, so its coverage is always 0 and it can never pass"
                + ("" if leaf else " (its subtypes are never reached)"),
                node.loc,
                severity="error" if leaf else "warning",
                hint="add a `markers` line with the markers that define this type",
            )
        )
    if len(node.children) == 1:
        child = node.children[0]
        out.append(
            Diagnostic(
                SINGLE_CHILD,
                f"{where} has a single subtype, '{child.name}': a cluster that reaches '{node.name}' "
                f"has no alternative to '{child.name}', so it is labelled '{child.name}' whenever it passes "
                "the gates (as 'uncontested')",
                child.loc or node.loc,
                hint=f"add the sibling types '{child.name}' should be told apart from (e.g. the rest of "
                f"'{node.name}'), or merge '{child.name}' into '{node.name}'",
            )
        )
    for kind, refs in (("markers", node.markers), ("anti", node.anti)):
        counts = Counter(r.name for r in refs)
        for ref in refs:
            if counts[ref.name] > 1:
                counts[ref.name] = 0  # report once
                out.append(
                    Diagnostic(
                        MARKER_REPEATED,
                        f"marker '{ref.name}' is listed more than once in the {kind} of {where}",
                        ref.loc or node.loc,
                        hint="remove the repeat; a repeated marker weighs double in coverage and scores",
                    )
                )
    for ref in node.anti:
        if ref.name in positives:
            out.append(
                Diagnostic(
                    POS_AND_ANTI,
                    f"marker '{ref.name}' is both a positive marker and an anti-marker of {where}",
                    ref.loc or node.loc,
                    hint="keep it in `markers` or in `anti`, not both",
                )
            )
    for req in node.requires:
        if req.marker not in positives:
            out.append(
                Diagnostic(
                    REQUIRE_UNLISTED,
                    f"requirement on '{req.marker}', which is not among the markers of {where}"
                    + suggest(req.marker, positives),
                    req.loc or node.loc,
                    hint=f"add '{req.marker}' to the `markers` of this type, or fix the name",
                )
            )
    for veto in node.vetoes:
        for marker in veto.markers:
            if marker in positives:
                out.append(
                    Diagnostic(
                        VETO_POSITIVE,
                        f"veto on '{marker}', which is a positive marker of {where}: the type vetoes itself",
                        veto.loc or node.loc,
                        hint=f"remove '{marker}' from the veto or from `markers`",
                    )
                )
            elif marker not in antis:
                out.append(
                    Diagnostic(
                        VETO_UNLISTED,
                        f"veto on '{marker}', which is not an anti-marker of {where}"
                        + suggest(marker, antis),
                        veto.loc or node.loc,
                        hint=f"add '{marker}' to the `anti` markers of this type so its score reflects it too",
                    )
                )
    mentioned = positives | antis | {r.marker for r in node.requires} | {m for v in node.vetoes for m in v.markers}
    for cond in node.conditions:
        for marker in dict.fromkeys(markers_in(cond.expr)):
            if marker not in mentioned:
                out.append(
                    Diagnostic(
                        CONDITION_UNLISTED,
                        f"condition `{cond.render()}` uses '{marker}', which {where} does not list"
                        + suggest(marker, mentioned),
                        cond.loc or node.loc,
                        hint=f"check the name, or list '{marker}' in `markers` or `anti`",
                    )
                )
    return out


def _check_aliases(ruleset: Ruleset) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    first_seen: dict[str, tuple[str, SourceLoc | None]] = {}
    for alias in ruleset.aliases:
        for name in (alias.canonical, *alias.synonyms):
            key = name.lower()
            if key in first_seen:
                other, other_loc = first_seen[key]
                where = f" (first in the alias for '{other}' at {other_loc})" if other_loc else f" (first in the alias for '{other}')"
                out.append(
                    Diagnostic(
                        ALIAS_CONFLICT,
                        f"'{name}' appears twice in the alias table{where}; a name may belong to one alias only",
                        alias.loc,
                        hint="merge the two alias lines into one",
                    )
                )
            else:
                first_seen[key] = (alias.canonical, alias.loc)
    return out


def _rule_markers(ruleset: Ruleset) -> set[str]:
    used: set[str] = set()
    for node in ruleset.walk():
        used |= set(node.marker_names) | set(node.anti_names)
        used |= {r.marker for r in node.requires}
        used |= {m for v in node.vetoes for m in v.markers}
        used |= {m for c in node.conditions for m in markers_in(c.expr)}
    # a marker group (in a markers list, a requirement or a condition) uses its members
    groups = ruleset.marker_groups()
    return used | {m for g in used & groups.keys() for m in groups[g]}


def _check_thresholds(ruleset: Ruleset, suggest: _Suggest) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    used = _rule_markers(ruleset)
    seen: dict[str, SourceLoc | None] = {}
    for thr in ruleset.thresholds:
        if thr.marker in seen:
            out.append(
                Diagnostic(
                    THRESHOLD_DUPLICATE,
                    f"second absolute threshold for '{thr.marker}'" + (f" (first at {seen[thr.marker]})" if seen[thr.marker] else ""),
                    thr.loc,
                    hint="keep one `threshold` line per marker",
                )
            )
        seen.setdefault(thr.marker, thr.loc)
        if thr.marker not in used:
            out.append(
                Diagnostic(
                    THRESHOLD_UNUSED,
                    f"threshold on '{thr.marker}', which no cell type uses" + suggest(thr.marker, used),
                    thr.loc,
                    hint="fix the marker name, or remove the threshold",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# panel


def _first_locs(ruleset: Ruleset) -> dict[str, SourceLoc | None]:
    """Where each marker is first mentioned (for a diagnostic about the marker itself), in one pass.
    A marker group's members were written where the group is."""
    out: dict[str, SourceLoc | None] = {}
    for node in ruleset.walk():
        for ref in node.markers + node.anti:
            for name in [ref.name, *ref.any_of]:
                out.setdefault(name, ref.loc or node.loc)
        for req in node.requires:
            for name in [req.marker, *req.any_of]:
                out.setdefault(name, req.loc or node.loc)
        for veto in node.vetoes:
            for marker in veto.markers:
                out.setdefault(marker, veto.loc or node.loc)
        for cond in node.conditions:
            members = [m for ms in groups_in(cond.expr).values() for m in ms]
            for marker in markers_in(cond.expr) + members:
                out.setdefault(marker, cond.loc or node.loc)
    for thr in ruleset.thresholds:
        out.setdefault(thr.marker, thr.loc)
    return out


def _check_panel(ruleset: Ruleset, panel: list[str], suggest: _Suggest) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    res = resolve_markers(ruleset, panel)
    if not res.mapping:
        where = f"({len(panel)} names, e.g. {preview_names(panel[:5])})" if panel else "(the panel lists no names)"
        out.append(
            Diagnostic(
                NO_OVERLAP,
                f"none of the {len(res.missing)} markers of ruleset '{ruleset.name}' is in the panel {where}",
                ruleset.loc,
                hint="check that the panel is the right file (genes vs proteins?), or add `alias` lines",
            )
        )
        return out
    first_loc = _first_locs(ruleset)
    out += ambiguity_diagnostics(res, first_loc)
    index = panel_index(tuple(panel))  # the cached index marker resolution built for this panel
    # a typo is looked for among the panel's names and the marker parts of its tagged ones (143Nd_Vimentin)
    candidates = list(dict.fromkeys(panel + list(index.tagged.exact))) if res.missing else panel
    marker_groups = ruleset.marker_groups()
    for marker in res.missing:
        if marker in marker_groups:  # none of its members is in the panel: each was reported
            continue
        suggestion = suggest(marker, candidates)
        out.append(
            Diagnostic(
                PANEL_MISSING,
                f"marker '{marker}' is not in the panel" + suggestion
                + (f"; {marker} is {note_for(marker)}" if note_for(marker) else ""),
                first_loc.get(marker),
                # a near-identical panel name is a typo, not an absent marker: the type would silently lose it
                severity="error" if suggestion else None,
                hint="fix the name, add an `alias` to the panel's name, or drop the marker if the panel lacks it",
            )
        )
    groups = alias_groups(ruleset)
    for group, alias in zip(groups, ruleset.aliases):
        present = list(dict.fromkeys(p for p in (index.find(n) for n in group) if p is not None))
        if len(present) > 1:
            out.append(
                Diagnostic(
                    ALIAS_SHADOWS,
                    f"the alias for '{alias.canonical}' joins {', '.join(repr(p) for p in present)}, "
                    "which the panel has as separate markers; each name still resolves to its own column",
                    alias.loc,
                    hint="remove the alias, or the names from it that the panel measures separately",
                )
            )
    missing = set(res.missing)
    for node in ruleset.walk():
        out += _check_node_panel(ruleset, node, res.mapping, missing)
    for parent_children in [ruleset.roots] + [n.children for n in ruleset.walk()]:
        out += _check_siblings(parent_children, res.mapping)
    return out


def ambiguity_diagnostics(res: MarkerResolution, locs: dict[str, SourceLoc | None] | None = None) -> list[Diagnostic]:
    """One CTR308 per ruleset marker that several panel columns answer to equally well (the same
    antibody measured twice, ``141Pr_CD45`` and ``CD45(Sm152)Di``): which one is used, and the
    ``alias`` line that chooses another. ``locs``: where each marker is first mentioned."""
    out: list[Diagnostic] = []
    for marker, columns in res.ambiguous.items():
        out.append(
            Diagnostic(
                AMBIGUOUS_MARKER,
                f"marker '{marker}' matches {len(columns)} panel columns equally well "
                f"({preview_names(repr(c) for c in columns)}; {res.how[marker]}); using the first, '{columns[0]}'",
                (locs or {}).get(marker),
                hint=f"name the column to use in an alias, e.g. `alias {quote_name(marker)} = {quote_name(columns[1])}`",
            )
        )
    return out


def _node_blockers(ruleset: Ruleset, node: CellType, mapping: dict[str, str], missing: set[str]) -> list[Diagnostic]:
    """Why ``node`` can never be assigned on this panel (empty when it can)."""
    out: list[Diagnostic] = []
    where = f"cell type '{node.path_str}'"
    positives = list(dict.fromkeys(node.marker_names))
    resolved = [m for m in positives if m in mapping]
    if positives:
        # the engine's panel gate: coverage counts measured markers, so what stops a type is
        # having too few of them measured to be judged at all
        needed = min(ruleset.gating.min_measured_markers, len(positives))
        if len(resolved) < needed:
            absent = [m for m in positives if m not in mapping]
            out.append(
                Diagnostic(
                    NEVER_COVERED,
                    f"{where} can never be assigned: it is not assessable on this panel ({len(resolved)} of its "
                    f"{len(positives)} markers are in the panel, {needed} needed: gating.min_measured_markers); "
                    f"missing: {preview_names(absent)}",
                    node.loc,
                    hint="replace the missing markers with ones the panel measures (or add an `alias`)",
                )
            )
    for req in node.requires:
        if req.marker in missing:
            out.append(
                Diagnostic(
                    REQUIRE_MISSING,
                    f"{where} can never be assigned: it requires '{req.marker}', which is not in the panel",
                    req.loc or node.loc,
                    hint="require a marker the panel measures (or add an `alias`), or drop the requirement",
                )
            )
    for cond in node.conditions:
        absent = [m for m in dict.fromkeys(markers_in(cond.expr)) if m in missing]
        if absent:
            out.append(
                Diagnostic(
                    CONDITION_MISSING,
                    f"{where} can never be assigned: its condition `{cond.render()}` reads "
                    f"{', '.join(repr(m) for m in absent)}, which the panel lacks (a missing value makes every "
                    "comparison false, so the condition fails for every cluster)",
                    cond.loc or node.loc,
                    hint="rewrite the condition over markers the panel measures (or add an `alias`), or drop it",
                )
            )
    return out


def _check_node_panel(ruleset: Ruleset, node: CellType, mapping: dict[str, str], missing: set[str]) -> list[Diagnostic]:
    out = _node_blockers(ruleset, node, mapping, missing)
    where = f"cell type '{node.path_str}'"
    by_panel: dict[str, str] = {}
    for marker in (m for m in dict.fromkeys(node.marker_names) if m in mapping):
        panel_name = mapping[marker]
        if panel_name in by_panel:
            out.append(
                Diagnostic(
                    SAME_PANEL_MARKER,
                    f"'{by_panel[panel_name]}' and '{marker}' of {where} both resolve to the panel marker "
                    f"'{panel_name}', which then counts twice",
                    node.loc,
                    hint="keep one of them",
                )
            )
        else:
            by_panel[panel_name] = marker
    return out


@dataclass
class PanelVerdict:
    """Which cell types a panel can support: the one-line answer before any clustering."""

    n_types: int
    never: dict[str, str]  # cell type path -> why it can never be assigned (first reason)
    missing: list[str]  # ruleset markers the panel lacks
    n_markers: int
    diagnostics: list[Diagnostic] = field(default_factory=list)  # the reasons, located

    @property
    def n_assignable(self) -> int:
        return self.n_types - len(self.never)

    def summary(self) -> str:
        """'18 of 22 cell types can never be assigned on this panel; 40 of 61 markers missing: ...'."""
        if not self.n_types:
            head = "the ruleset defines no cell types"
        elif not self.never:
            head = f"all {self.n_types} cell types can be assigned on this panel"
        else:
            head = f"{len(self.never)} of {self.n_types} cell types can never be assigned on this panel"
            if self.n_assignable:  # which ones (when none can be, the run stops and lists the reasons)
                head += f" ({self._never_named()})"
        if self.missing:
            shown = ", ".join(self.missing[:8]) + (f" (+{len(self.missing) - 8} more)" if len(self.missing) > 8 else "")
            head += f"; {len(self.missing)} of {self.n_markers} ruleset markers missing: {shown}"
        return head


    def _never_named(self, shown: int = 4) -> str:
        """The highest types that can never be assigned ('B, Mono, +2 subtypes'): a subtype of one
        of them is out with it and is only counted."""
        tops = [p for p in self.never if not any(p.startswith(q + PATH_SEP) for q in self.never)]
        names = tops[:shown] + ([f"+{len(tops) - shown} more"] if len(tops) > shown else [])
        below = len(self.never) - len(tops)
        return ", ".join(names + ([f"+{below} subtype{'s' * (below != 1)}"] if below else []))


def panel_verdict(ruleset: Ruleset, panel: Sequence[str]) -> PanelVerdict:
    """How many cell types of ``ruleset`` the panel can support, and why the others cannot.

    A type can never be assigned when its coverage cannot reach ``min_coverage``, it requires or
    reads (in a `when`) a missing marker, or its parent can never be assigned.
    """
    res = resolve_markers(ruleset, list(panel))
    missing = set(res.missing)
    never: dict[str, str] = {}
    diagnostics: list[Diagnostic] = []

    def visit(node: CellType, blocked_by: str | None) -> None:
        if blocked_by is not None:
            never[node.path_str] = f"its parent '{blocked_by}' can never be assigned"
        else:
            reasons = _node_blockers(ruleset, node, res.mapping, missing) if res.mapping else []
            if not res.mapping:
                never[node.path_str] = "no ruleset marker is in the panel"
            elif reasons:
                never[node.path_str] = reasons[0].message
                diagnostics.extend(reasons)
        for child in node.children:
            visit(child, node.path_str if node.path_str in never else None)

    for root in ruleset.roots:
        visit(root, None)
    return PanelVerdict(n_types=sum(1 for _ in ruleset.walk()), never=never, missing=list(res.missing),
                        n_markers=len(res.mapping) + len(res.missing), diagnostics=diagnostics)


def _check_siblings(siblings: list[CellType], mapping: dict[str, str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: dict[frozenset[str], CellType] = {}
    for node in siblings:
        key = frozenset(mapping[m] for m in node.marker_names if m in mapping)
        if not key:
            continue
        if key in seen:
            other = seen[key]
            out.append(
                Diagnostic(
                    INDISTINGUISHABLE,
                    f"'{node.name}' and '{other.name}' have the same markers in this panel "
                    f"({preview_names(sorted(key))}), so only anti-markers and rules can tell them apart",
                    node.loc,
                    hint="add a marker the panel measures that is specific to one of them",
                )
            )
        else:
            seen[key] = node
    return out


# ---------------------------------------------------------------------------------------------
# the lint-ruleset command


@dataclass
class LintReport:
    """What ``ctr lint-ruleset`` prints: compile diagnostics followed by lint diagnostics."""

    target: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # file -> text, for caret excerpts
    ruleset: Ruleset | None = None
    panel_path: str | None = None
    resolution: list[dict] | None = None
    verdict: PanelVerdict | None = None  # with a panel: which types it can support
    panel_column: str | None = None  # the var column of an .h5ad panel the marker names were read from

    def count(self, severity: str) -> int:
        return sum(1 for d in self.diagnostics if d.level == severity)

    def exit_code(self, strict: bool = False) -> int:
        """0 clean, 1 with errors (or with warnings when ``strict``)."""
        if self.count("error") or (strict and self.count("warning")):
            return 1
        return 0

    def summary(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        text = f"{plural(self.count('error'), 'error')}, {plural(self.count('warning'), 'warning')}"
        if self.count("info"):
            text += f", {self.count('info')} info"
        return text

    def sorted_diagnostics(self) -> list[Diagnostic]:
        return DiagnosticList(list(self.diagnostics)).sorted()

    FOLD_AFTER = 10  # warnings/infos of one code shown in full; the rest in one line (JSON lists all)

    def format_text(self) -> str:
        blocks = []
        shown: Counter = Counter()
        folded: dict[str, list[Diagnostic]] = {}
        for diag in self.sorted_diagnostics():
            if diag.level != "error" and shown[diag.code] >= self.FOLD_AFTER:
                folded.setdefault(diag.code, []).append(diag)
                continue
            shown[diag.code] += 1
            source = self.sources.get(diag.loc.file) if diag.loc is not None and diag.loc.file else None
            blocks.append(diag.format(source))
        for code, rest in folded.items():
            where = [f"{d.loc.line}:{d.loc.column}" if d.loc is not None and d.loc.line else "?" for d in rest]
            blocks.append(f"... {len(rest)} more {code} {rest[0].level}s ({CODES[code].title}) at "
                          f"{preview_names(where)}; `--format json` lists each")
        name = self.ruleset.name if self.ruleset is not None else self.target
        panel = f" against panel {self.panel_path}" if self.panel_path else ""
        panel += f" (marker names in var['{self.panel_column}'])" if self.panel_column else ""
        blocks.append(f"{name}{panel}: {self.summary()}")
        if self.verdict is not None:
            blocks.append(f"{name}{panel}: {self.verdict.summary()}")
        return "\n".join(blocks)

    def format_json(self) -> str:
        return json.dumps(
            {
                "target": self.target,
                "ruleset": self.ruleset.name if self.ruleset is not None else None,
                "panel": self.panel_path,
                "panel_var_names": self.panel_column,
                "summary": {s: self.count(s) for s in ("error", "warning", "info")},
                "diagnostics": [d.to_dict() for d in self.sorted_diagnostics()],
                "resolution": self.resolution,
                "panel_verdict": None if self.verdict is None else {
                    "cell_types": self.verdict.n_types,
                    "assignable": self.verdict.n_assignable,
                    "never_assignable": self.verdict.never,
                    "missing_markers": self.verdict.missing,
                },
            },
            indent=2,
        )
