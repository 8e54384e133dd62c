"""Find a ruleset by name or path, read it in any spelling, apply includes and edits, validate.

:func:`compile_ruleset` never raises for problems in what the user wrote: it returns the graph
(when one could be built) with every diagnostic located at the file, line and column at fault.
:func:`load_ruleset` is the strict form the engine uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ctr.codes import (
    DUPLICATE_NAME,
    DUPLICATE_RULESET,
    DUPLICATE_STATE,
    EMPTY_TYPE,
    FILE_TOO_LARGE,
    INCLUDE_CYCLE,
    INCLUDE_ESCAPES,
    INCLUDE_MISSING,
    INCLUDE_TOO_DEEP,
    NOT_FOUND,
    PATH_NOT_FOUND,
    STATE_SCOPE,
    UNKNOWN_FORMAT,
    UNREADABLE,
)
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.errors import RulesetError
from ctr.lang import dsl, importers, json_map, yaml_spelling
from ctr.lang.document import Document, Setting, check_setting
from ctr.resources import rulesets_dir
from ctr.rules.model import PATH_SEP, Alias, CellType, Include, Ruleset, Threshold, assign_paths, split_path
from ctr.rules.params import GatingParams, LevelParams, RefinementParams, ScoringParams


MAX_INCLUDE_DEPTH = 16
MAX_FILE_BYTES = 2 * 1024 * 1024
FORMATS = {".ctr": "ctr", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
# other tools' files are recognised by their content (Garnett .txt, CELESTA/scyan/scimap .csv, Astir .yml)
IMPORT_SUFFIXES = (".txt", ".csv", ".tsv", ".markers")
_PARSERS = {"ctr": dsl.parse_document, "yaml": yaml_spelling.parse_document, "json": json_map.parse_document,
            **importers.PARSERS}


@dataclass
class CompileResult:
    """The graph (None when syntax errors make it meaningless), all diagnostics, and the text of
    every file read (path -> text) for caret excerpts."""

    ruleset: Ruleset | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "error"]

    @property
    def ok(self) -> bool:
        return self.ruleset is not None and not self.errors


def builtin_rulesets() -> dict[str, Path]:
    """Built-in rulesets by name (the top level of ``rulesets/``; sub-folders hold includable pieces)."""
    folder = rulesets_dir()
    if not folder.is_dir():
        return {}
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in FORMATS and not path.name.startswith("."):
            out.setdefault(path.stem, path)
    return out


def format_of(path: str | Path, fmt: str | None = None) -> str | None:
    """'ctr', 'yaml' or 'json' (or another tool's name given as ``fmt``) from ``fmt`` or the file
    extension; None when unknown."""
    if fmt:
        fmt = fmt.lower().lstrip(".")
        if fmt in importers.TOOLS:
            return fmt
        return {"yml": "yaml", "dsl": "ctr"}.get(fmt, fmt) if fmt in ("ctr", "dsl", "yaml", "yml", "json") else None
    return FORMATS.get(Path(path).suffix.lower())


def compile_ruleset(source: str | Path, *, text: str | None = None, fmt: str | None = None) -> CompileResult:
    """Compile a built-in name, a path, or ``text`` (with ``source`` as its file name)."""
    result = CompileResult(ruleset=None)
    if text is not None:
        path = Path(source)
        file = str(source)
    else:
        path = _locate(source, result)
        if path is None:
            return result
        file = str(path)
    kind = format_of(path, fmt) or ("ctr" if text is not None and fmt is None and not path.suffix else None)
    if kind is None and (fmt is not None or path.suffix.lower() not in IMPORT_SUFFIXES):
        result.diagnostics.append(_unknown_format(file))
        return result
    if text is None:
        text = _read(path, file, result.diagnostics, None)
        if text is None:
            return result
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        result.diagnostics.append(_too_large(file, None))
        return result
    if fmt is None and kind in (None, "yaml"):
        kind = importers.detect(text, file, yaml=kind == "yaml") or kind  # another tool's file, read as it is
    if kind is None:
        result.diagnostics.append(_unknown_format(file))
        return result
    asm = _Assembly(top_dir=path.resolve().parent, result=result)
    asm.load(_PARSERS[kind](text, file), [path.resolve() if text is None else path.absolute()])
    result.ruleset = asm.finish(default_name=path.stem or "ruleset", file=file, text=text)
    return result


def ruleset_files(source: str | Path) -> list[str]:
    """The files compiling ``source`` reads (the file itself and its includes): outputs never replace them."""
    return list(compile_ruleset(source).sources or {})


def load_ruleset(source: str | Path, warnings: list[Diagnostic] | None = None) -> Ruleset:
    """Compile and return the graph; raise :class:`RulesetError` if there is any error.
    ``warnings``, when given, receives the warnings (an imported file's loss report among them)."""
    result = compile_ruleset(source)
    if warnings is not None:
        warnings.extend(d for d in result.diagnostics if d.level != "error")
    errors = result.errors
    if errors or result.ruleset is None:
        first = errors[0] if errors else Diagnostic(NOT_FOUND, f"ruleset '{source}' could not be compiled")
        where = f"{first.loc}: " if first.loc is not None else ""
        more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        error = RulesetError(f"{where}{first.code} {first.message}{more}", hint=first.hint, diagnostics=result.diagnostics)
        error.sources = result.sources  # the CLI prints the source line under each diagnostic
        raise error
    return result.ruleset


# ---------------------------------------------------------------------------------------------


def _locate(source: str | Path, result: CompileResult) -> Path | None:
    path = Path(source)
    builtins = builtin_rulesets()
    if isinstance(source, str) and source in builtins and not path.exists():
        return builtins[source]
    if path.is_file():
        return path
    if isinstance(source, str) and source in builtins:
        return builtins[source]
    if path.is_dir():
        result.diagnostics.append(Diagnostic(NOT_FOUND, f"ruleset '{source}' is a directory, not a ruleset file",
                                             SourceLoc(file=str(source)), hint="give a .ctr, .yaml or .json file"))
        return None
    msg = f"ruleset '{source}' not found: no such file and no built-in ruleset of that name"
    near = did_you_mean(str(source), list(builtins))
    hint = ("built-in rulesets: " + ", ".join(builtins)) if builtins else None
    result.diagnostics.append(Diagnostic(NOT_FOUND, msg + near, SourceLoc(file=str(source)), hint=hint))
    return None


def _unknown_format(file: str) -> Diagnostic:
    return Diagnostic(UNKNOWN_FORMAT, f"cannot tell the format of '{file}': use .ctr, .yaml, .yml or .json, or "
                      f"a marker file of {', '.join(importers.TOOLS)}", SourceLoc(file=file),
                      hint="ctr import-markers FILE --from TOOL translates another tool's file; see docs/interop.md")


def _too_large(file: str, loc: SourceLoc | None) -> Diagnostic:
    return Diagnostic(FILE_TOO_LARGE, f"'{file}' is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
                      "a ruleset this big is not supported", loc or SourceLoc(file=file))


def _read(path: Path, file: str, diags: list[Diagnostic], loc: SourceLoc | None) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            diags.append(_too_large(file, loc))
            return None
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as exc:
        diags.append(Diagnostic(UNREADABLE, f"'{file}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                loc or SourceLoc(file=file)))
    except OSError as exc:
        diags.append(Diagnostic(UNREADABLE, f"cannot read '{file}': {exc.strerror or exc}", loc or SourceLoc(file=file)))
    return None


@dataclass
class _Assembly:
    """Applies the statements of the top file and its includes, in order, to one growing graph."""

    top_dir: Path
    result: CompileResult
    roots: list[CellType] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    thresholds: list[Threshold] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    settings: dict[str, tuple[Setting, object]] = field(default_factory=dict)
    states: list = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    description: str = ""
    syntax_ok: bool = True

    @property
    def diags(self) -> list[Diagnostic]:
        return self.result.diagnostics

    def load(self, doc: Document, stack: list[Path]) -> None:
        self.result.sources[doc.file] = doc.text
        self.diags.extend(doc.diagnostics)
        self.syntax_ok &= doc.syntax_ok
        top = len(stack) == 1
        for st in doc.statements:
            if st.kind == "ruleset":
                if top:
                    if self.name is not None:
                        self.diags.append(Diagnostic(DUPLICATE_RULESET, "the ruleset is named twice; the first name is kept", st.loc))
                    else:
                        self.name = st.name or None
                        self.description = st.description or ""
            elif st.kind == "include":
                self.includes.append(Include(path=st.name, loc=st.loc))
                self._include(st.name, st.loc, stack)
            elif st.kind == "alias":
                self.aliases.append(st.payload)
            elif st.kind == "threshold":
                self.thresholds.append(st.payload)
            elif st.kind == "setting":
                value, diag = check_setting(st.payload)
                if diag is not None:
                    self.diags.append(diag)
                else:
                    self.settings[st.payload.param_key] = (st.payload, value)
            elif st.kind == "type":
                self.roots.append(st.payload)
            elif st.kind == "state":
                self.states.append(st.payload)
            elif st.kind == "meta":
                if top:
                    self.meta.update(st.payload)
            else:
                self._edit(st)

    # -- includes ------------------------------------------------------------------------------
    def _include(self, rel: str, loc: SourceLoc | None, stack: list[Path]) -> None:
        including = stack[-1]
        if Path(rel).is_absolute() or rel.startswith(("/", "\\")) or ":" in rel[:3]:
            self.diags.append(Diagnostic(INCLUDE_ESCAPES, f"include escapes the ruleset folder: '{rel}' is an absolute path", loc,
                                         hint="write the path relative to the including file"))
            return
        target = (including.parent / rel).resolve()
        if not target.is_relative_to(self.top_dir):
            self.diags.append(Diagnostic(INCLUDE_ESCAPES, f"include escapes the ruleset folder: '{rel}' resolves outside {self.top_dir}",
                                         loc, hint="included files must live in the top ruleset's folder or below it"))
            return
        if target in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(target):]) + f" -> {target.name}"
            self.diags.append(Diagnostic(INCLUDE_CYCLE, f"include cycle: {chain}", loc))
            return
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.diags.append(Diagnostic(INCLUDE_TOO_DEEP, f"includes are nested more than {MAX_INCLUDE_DEPTH} deep", loc))
            return
        if target.is_dir():
            self.diags.append(Diagnostic(INCLUDE_MISSING, f"include '{rel}' names a directory ({target}), not a ruleset file",
                                         loc, hint="include a .ctr, .yaml or .json file, e.g. 'folder/file.ctr'"))
            return
        if not target.is_file():
            near = did_you_mean(Path(rel).stem, [p.name for p in target.parent.glob("*")] if target.parent.is_dir() else [],
                                key=lambda name: Path(name).stem)
            self.diags.append(Diagnostic(INCLUDE_MISSING, f"include file '{rel}' not found (looked for {target}){near}", loc))
            return
        kind = format_of(target)
        if kind is None:
            self.diags.append(Diagnostic(UNKNOWN_FORMAT, f"cannot include '{rel}': use a .ctr, .yaml or .json file", loc))
            return
        text = _read(target, str(target), self.diags, loc)
        if text is not None:
            self.load(_PARSERS[kind](text, str(target)), stack + [target])

    # -- extend / replace / remove -------------------------------------------------------------
    def _find(self, path: str) -> tuple[list[CellType], int] | None:
        parts = split_path(path)
        siblings = self.roots
        for depth, name in enumerate(parts):
            idx = next((i for i, n in enumerate(siblings) if n.name == name), None)
            if idx is None:
                return None
            if depth == len(parts) - 1:
                return siblings, idx
            siblings = siblings[idx].children
        return None

    def _edit(self, st) -> None:
        found = self._find(st.name)
        if found is None:
            known = [PATH_SEP.join(p) for p in _paths(self.roots)]
            self.diags.append(Diagnostic(PATH_NOT_FOUND, f"{st.kind} '{st.name}': no cell type has this path{did_you_mean(st.name, known)}",
                                         st.loc, hint="paths join names from the root with ' / ', e.g. \"Immune / T cells\""))
            return
        siblings, idx = found
        if st.kind == "remove":
            del siblings[idx]
        elif st.kind == "replace":
            siblings[idx] = st.payload
        else:
            siblings[idx] = _extended(siblings[idx], st.payload)

    # -- the graph -----------------------------------------------------------------------------
    def finish(self, default_name: str, file: str, text: str) -> Ruleset | None:
        if not self.syntax_ok:
            return None
        blocks: dict[str, dict] = {"scoring": {}, "gating": {}, "refinement": {}}
        levels: dict[int, dict] = {}
        locs: dict[str, SourceLoc] = {}
        for key, (setting, value) in self.settings.items():
            if setting.block == "level":
                levels.setdefault(setting.level, {})[setting.key] = value
            else:
                blocks[setting.block][setting.key] = value
            if setting.loc is not None:
                locs[key] = setting.loc
        if levels:
            blocks["gating"]["level_defaults"] = {lvl: LevelParams(**vals) for lvl, vals in sorted(levels.items())}
        ruleset = Ruleset(
            name=self.name or default_name,
            description=self.description,
            source_file=file,
            source_text=text,
            includes=self.includes,
            aliases=self.aliases,
            thresholds=self.thresholds,
            scoring=ScoringParams(**blocks["scoring"]),
            gating=GatingParams(**blocks["gating"]),
            refinement=RefinementParams(**blocks["refinement"]),
            param_locs=locs,
            roots=self.roots,
            states=self.states,
            meta=self.meta,
        )
        assign_paths(ruleset.roots)
        self._check_tree(ruleset.roots)
        self._check_states(ruleset)
        return ruleset

    def _check_states(self, ruleset: Ruleset) -> None:
        """Every state name once; every path a state names is a cell type of the ruleset."""
        from ctr.rules.states import unknown_scope_paths

        seen: dict[str, object] = {}
        for state in ruleset.states:
            if state.name in seen:
                self.diags.append(Diagnostic(DUPLICATE_STATE, f"cell state '{state.name}' is declared twice "
                                             f"(first at {seen[state.name]})", state.loc))
            seen.setdefault(state.name, state.loc)
            for path in unknown_scope_paths(ruleset, state):
                known = [n.path_str for n in ruleset.walk()]
                self.diags.append(Diagnostic(STATE_SCOPE, f"cell state '{state.name}' applies to '{path}', "
                                             f"which is not a cell type of this ruleset{did_you_mean(path, known)}",
                                             state.loc, hint="paths join names from the root with ' / '"))

    def _check_tree(self, siblings: list[CellType]) -> None:
        todo = [siblings]
        while todo:
            group = todo.pop()
            seen: dict[str, CellType] = {}
            for node in group:
                if node.name in seen:
                    first = seen[node.name]
                    self.diags.append(Diagnostic(
                        DUPLICATE_NAME,
                        f"cell type '{node.path_str}' is defined twice among its siblings (first at {first.loc})",
                        node.loc, hint="rename one, or use `replace type \"PATH\" { ... }` to redefine an included type"))
                else:
                    seen[node.name] = node
                if not node.markers and not node.anti and not node.requires and not node.children:
                    self.diags.append(Diagnostic(EMPTY_TYPE, f"cell type '{node.path_str}' has no markers and no children", node.loc))
                todo.append(node.children)


def _extended(node: CellType, body: CellType) -> CellType:
    """The node with the body's items appended (a new LevelParams keeps only written keys set)."""
    return node.model_copy(update={
        "markers": node.markers + body.markers,
        "anti": node.anti + body.anti,
        "requires": node.requires + body.requires,
        "vetoes": node.vetoes + body.vetoes,
        "conditions": node.conditions + body.conditions,
        "cite": node.cite + body.cite,
        "overrides": LevelParams(**{**node.overrides.explicit(), **body.overrides.explicit()}),
        "override_locs": {**node.override_locs, **body.override_locs},
        "children": node.children + body.children,
    })


def _paths(roots: list[CellType], parent: tuple[str, ...] = ()):
    for node in roots:
        path = parent + (node.name,)
        yield path
        yield from _paths(node.children, path)
