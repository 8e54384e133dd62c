"""What every importer of another tool's marker file shares: drafts of cell types, the tree built
from parent names, and the loss report.

An importer is a pure function ``parse_document(text, file) -> Document``: it reads the other
tool's file into :class:`Draft` cell types and hands them to :func:`assemble`, which builds the
same statements the DSL produces. What our language cannot say exactly is reported as a located
``CTR230`` warning (the loss report); what cannot be read at all is a ``CTR231`` error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctr.codes import IMPORT_BAD, IMPORT_LOSS
from ctr.diagnostics import Diagnostic, SourceLoc
from ctr.lang import dsl
from ctr.lang.document import MAX_TYPE_DEPTH, Document, Setting, Statement, make_type
from ctr.rules.model import CellType, MarkerRef, Threshold



@dataclass
class Draft:
    """One cell type as the other tool declares it; ``parent`` is a name (None for a root).
    Children attach under every type of their parent's name (scimap reuses names)."""

    name: str
    line: int
    parent: str | None = None
    markers: list[str] = field(default_factory=list)
    anti: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)  # DSL expressions
    cite: list[str] = field(default_factory=list)
    overrides: dict[str, float] = field(default_factory=dict)


@dataclass
class Imported:
    """Everything an importer read, before it becomes a :class:`Document`."""

    file: str
    text: str
    tool: str
    drafts: list[Draft] = field(default_factory=list)
    thresholds: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # marker -> (op, value, line)
    settings: list[tuple[str, str, object, int | None]] = field(default_factory=list)  # block, key, value, level
    states: list = field(default_factory=list)  # CellState models
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def loc(self, line: int | None, column: int | None = 1) -> SourceLoc:
        return SourceLoc(file=self.file, line=line, column=column if line is not None else None)

    def loss(self, line: int | None, message: str) -> None:
        """Something the target cannot express exactly, and how it was approximated."""
        self.diagnostics.append(Diagnostic(IMPORT_LOSS, message, self.loc(line)))

    def error(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(IMPORT_BAD, message, self.loc(line), hint=hint))


def assemble(imp: Imported, description: str) -> Document:
    """The statements of the imported file: a ruleset line, thresholds, settings, the type tree."""
    doc = Document(file=imp.file, text=imp.text, diagnostics=list(imp.diagnostics))
    top = imp.loc(1)
    doc.statements.append(Statement("ruleset", top, name=_stem(imp.file), description=description.replace(imp.file, _name(imp.file))))
    for marker, (op, value, line) in imp.thresholds.items():
        thr = Threshold(marker=marker, op=op, value=value, loc=imp.loc(line))
        doc.statements.append(Statement("threshold", thr.loc, payload=thr))
    for block, key, value, level in imp.settings:
        setting = Setting(block, key, value, top, level)
        doc.statements.append(Statement("setting", top, payload=setting))
    for root in build_tree(imp, doc.diagnostics):
        doc.statements.append(Statement("type", root.loc, payload=root))
    for state in imp.states:
        doc.statements.append(Statement("state", state.loc, payload=state))
    doc.syntax_ok = not any(d.code == IMPORT_BAD for d in doc.diagnostics)
    return doc


def build_tree(imp: Imported, diags: list[Diagnostic]) -> list[CellType]:
    names = {d.name for d in imp.drafts}
    children: dict[str | None, list[Draft]] = {}
    for draft in imp.drafts:
        if draft.parent is not None and draft.parent not in names:
            diags.append(Diagnostic(IMPORT_BAD, f"cell type '{draft.name}' is a subtype of '{draft.parent}', "
                                    "which the file never defines", imp.loc(draft.line)))
            continue
        children.setdefault(draft.parent, []).append(draft)

    def build(draft: Draft, depth: int, seen: tuple[str, ...]) -> CellType | None:
        loc = imp.loc(draft.line)
        if draft.name in seen or depth > MAX_TYPE_DEPTH:
            diags.append(Diagnostic(IMPORT_BAD, f"cell type '{draft.name}' is its own ancestor "
                                    f"({' > '.join(seen + (draft.name,))})", loc))
            return None
        conditions = []
        for text in draft.conditions:
            cond = dsl.parse_condition(text, dsl.Offset(imp.file, draft.line), diags)
            if cond is not None:
                conditions.append(cond.model_copy(update={"loc": loc, "text": text}))
        kids = [k for c in children.get(draft.name, []) if (k := build(c, depth + 1, seen + (draft.name,))) is not None]
        overrides = [Setting("override", key, value, loc) for key, value in draft.overrides.items()]
        return make_type(draft.name, loc, markers=refs(draft.markers, loc), anti=refs(draft.anti, loc),
                         conditions=conditions, cite=draft.cite, overrides=overrides, children=kids,
                         diagnostics=diags)

    return [node for d in children.get(None, []) if (node := build(d, 1, ())) is not None]


def refs(names: list[str], loc: SourceLoc) -> list[MarkerRef]:
    return [MarkerRef(name=n, loc=loc) for n in dict.fromkeys(names)]


def _name(file: str) -> str:
    from pathlib import Path

    return Path(file).name


def _stem(file: str) -> str:
    from pathlib import Path

    return Path(file).stem or "imported"


def read_csv_rows(imp: Imported) -> list[tuple[int, list[str]]]:
    """(line, cells) for every non-blank CSV row, with the stdlib reader (quotes, CRLF)."""
    import csv
    import io

    rows = []
    reader = csv.reader(io.StringIO(imp.text.lstrip("\ufeff")))
    for cells in reader:
        if any(c.strip() for c in cells):
            rows.append((reader.line_num, [c.strip() for c in cells]))
    return rows
