"""``ctr import-markers`` and ``ctr export-markers --to``: other tools' marker files in and out.

They join the front end (:mod:`ctr.lang`, its importers and exporters), lint and the atomic
writers, so they live above all of them. The translation itself is pure; here are the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ctr.diagnostics import Diagnostic, DiagnosticList, SourceLoc
from ctr.errors import RulesetError, UsageError
from ctr.lang import compile_ruleset, export_text, load_ruleset, ruleset_files
from ctr.lang.exporters import WRITERS
from ctr.lang.importers import PARSERS, detect
from ctr.lang.importers.common import IMPORT_LOSS
from ctr.rules.model import Ruleset

OUTPUT_FORMATS = {".ctr": "ctr", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@dataclass
class Translation:
    """What an import or export wrote, and the loss report."""

    output: Path
    ruleset: Ruleset
    losses: list[Diagnostic] = field(default_factory=list)
    lint: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def format_report(self) -> str:
        lines = [d.format(self.sources.get(d.loc.file) if d.loc else None) for d in DiagnosticList(self.losses).sorted()]
        n = len(self.losses)
        lines.append(f"loss report: {n} approximation{'s' * (n != 1)}" + ("" if n else " (an exact translation)"))
        return "\n".join(lines)


def _refuse_overwrite(path: Path, force: bool, inputs=()) -> None:
    """Consent before writing ``--output`` (see :func:`ctr.io.rundir.check_output_file`)."""
    from ctr.io.rundir import check_output_file

    check_output_file(path, force=force, inputs=inputs)


def import_markers(source: str, tool: str, output: str, *, force: bool = False) -> Translation:
    """Read another tool's marker file, write it as ``output`` (.ctr/.yaml/.json) with a comment citing
    the source line of every type; raise :class:`RulesetError` when the file cannot be read."""
    from ctr.io.atomic import write_text_atomic
    from ctr.rules.lint import lint

    out = Path(output)
    kind = OUTPUT_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise UsageError(f"cannot tell the output format of '{output}'", hint="use a .ctr, .yaml or .json file name")
    _refuse_overwrite(out, force, inputs=[source])
    path = Path(source)
    if tool == "auto":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesetError(f"cannot read '{source}': {getattr(exc, 'strerror', None) or exc}") from None
        guessed = detect(text, source)
        if guessed is None:
            raise RulesetError(f"{source}: cannot tell which tool's format this is",
                               hint=f"pass --from with one of: {', '.join(PARSERS)}")
        tool = guessed
    result = compile_ruleset(path, fmt=tool)
    if not result.ok:
        error = RulesetError(f"{source}: cannot import it as a {tool} file", diagnostics=result.diagnostics)
        error.sources = result.sources
        raise error
    ruleset = result.ruleset.model_copy(update={"meta": {**result.ruleset.meta, "imported_from": f"{tool}: {path.name}"}})
    notes = {node.path: f"from {path.name}:{node.loc.line}" for node in ruleset.walk()
             if node.loc is not None and node.loc.line is not None}
    write_text_atomic(out, export_text(ruleset, kind, notes))
    losses = [d for d in result.diagnostics if d.level != "error"]
    return Translation(out, ruleset, losses, lint=lint(ruleset), sources=result.sources)


def export_markers(source: str, target: str, output: str, *, force: bool = False) -> Translation:
    """Write ruleset ``source`` in another tool's format; the losses are located at the ruleset."""
    from ctr.io.atomic import write_text_atomic

    if target not in WRITERS:
        raise UsageError(f"unknown target '{target}'", hint=f"use one of: {', '.join(WRITERS)}")
    out = Path(output)
    ruleset = load_ruleset(source)
    _refuse_overwrite(out, force, inputs=ruleset_files(source))
    text, losses = WRITERS[target](ruleset)
    write_text_atomic(out, text)
    where = SourceLoc(file=ruleset.source_file) if ruleset.source_file else None
    return Translation(out, ruleset, [Diagnostic(IMPORT_LOSS, msg, where) for msg in losses])
