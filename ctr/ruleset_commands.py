"""The ruleset commands: ``ctr lint-ruleset`` (compile, lint, optionally against a panel file),
``ctr export-markers`` (write a ruleset in another spelling) and ``ctr rulesets`` (the built-in
rulesets and tissue profiles).

They join the front end (:mod:`ctr.lang`), the rule checks (:mod:`ctr.rules.lint`) and the panel
reader (:mod:`ctr.data.panel`), so they live above all three.
"""

from __future__ import annotations

from pathlib import Path

from ctr.data.checks import check_var_names
from ctr.data.panel import read_panel, read_panel_var
from ctr.data.var_names import choose_marker_names, column_names
from ctr.errors import CtrError, RulesetError, UsageError
from ctr.io.atomic import write_text_atomic
from ctr.lang import builtin_rulesets, compile_ruleset, export_text, format_of, load_ruleset
from ctr.lang.export import source_copy
from ctr.lang.loader import EMPTY_TYPE
from ctr.options import var_names_choice
from ctr.rules.lint import NO_MARKERS, LintReport, lint, panel_verdict
from ctr.rules.markers import resolve_markers
from ctr.rules.tissues import list_tissues


def export_ruleset(ruleset, path: str | Path, fmt: str | None = None) -> Path:
    """Write the ruleset to ``path`` (format from ``fmt`` or the extension), atomically."""
    path = Path(path)
    kind = format_of(path, fmt)
    if kind is None:
        raise RulesetError(f"cannot tell the export format of '{path}'",
                           hint="use a .ctr, .yaml, .yml or .json file name, or pass --format ctr|yaml|json")
    if kind == "ctr":
        copy = source_copy(ruleset)
        if copy is not None:  # the ruleset as its author wrote it, comments and layout included
            return write_text_atomic(path, copy)
    return write_text_atomic(path, export_text(ruleset, kind))


def lint_target(source: str, panel_path: str | None = None, *, var_names: str | None = None) -> LintReport:
    """Compile ruleset ``source`` (built-in name or path), lint it, and lint it against the
    panel file when one is given; an .h5ad panel's marker names are read from its var column
    ``var_names`` when given, else chosen as ``ctr annotate`` chooses them (CTR519). Problems are
    diagnostics in the report, not exceptions, except an unreadable panel file or a missing
    column (:class:`~ctr.errors.InputError`)."""
    column, drop = var_names_choice(var_names)
    var = read_panel_var(panel_path) if panel_path is not None else None
    if var_names is not None and var is None:
        raise UsageError("--var-names needs an .h5ad panel (--panel FILE.h5ad), whose var has the column",
                         hint="a text panel lists marker names already")
    panel = read_panel(panel_path) if panel_path is not None else None
    if var is not None and column is not None:
        column_names(var, list(map(str, var.index)), column)  # a missing column is an error, whatever the ruleset
    result = compile_ruleset(source)
    report = LintReport(
        target=source,
        diagnostics=list(result.diagnostics),
        sources=dict(result.sources or {}),
        ruleset=result.ruleset,
        panel_path=str(panel_path) if panel_path is not None else None,
    )
    if result.ok and var is not None:
        names = choose_marker_names(var, list(map(str, var.index)), column, automatic=not drop,
                                    rulesets=lambda: [result.ruleset])
        panel, report.panel_column = list(dict.fromkeys(names.names)), names.column
        report.diagnostics += names.diagnostics()
        report.diagnostics += check_var_names(names.names, layer_name="X", column=names.column)
    if result.ok:
        # the compiler already reports a leaf without markers (CTR206); do not say it twice
        flagged = {d.loc for d in result.diagnostics if d.code == EMPTY_TYPE}
        report.diagnostics += [
            d for d in lint(result.ruleset, panel) if not (d.code == NO_MARKERS and d.loc in flagged)
        ]
        if panel is not None:
            report.resolution = resolve_markers(result.ruleset, panel).table()
            report.verdict = panel_verdict(result.ruleset, panel)
    return report


def list_catalogue() -> dict:
    """``{"rulesets": [{name, description, cell_types, file}], "tissues": [{name, aliases, ruleset,
    preset, description}]}``; a built-in that fails to compile is listed with its ``error``."""
    rulesets = []
    for name, path in builtin_rulesets().items():
        entry = {"name": name, "description": "", "cell_types": None, "file": str(path)}
        try:
            ruleset = load_ruleset(path)
            entry.update(description=ruleset.description, cell_types=ruleset.cell_type_count)
        except CtrError as exc:
            entry["error"] = exc.message
        rulesets.append(entry)
    tissues = [
        {"name": t.name, "aliases": t.aliases, "ruleset": t.ruleset, "preset": t.preset, "description": t.description}
        for t in list_tissues()
    ]
    return {"rulesets": rulesets, "tissues": tissues}
