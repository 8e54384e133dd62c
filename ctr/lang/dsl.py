"""The DSL spelling: lark LALR parser over ``grammar/ctr.lark`` and a transformer to a :class:`Document`.

Every element gets a :class:`~ctr.diagnostics.SourceLoc` from lark's positions (1-based line and
column; ``end_column`` is the last character, inclusive). Syntax errors become located diagnostics
listing the expected tokens in plain words; nothing here raises for bad input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.visitors import Transformer_NonRecursive, v_args

from ctr.codes import (
    BAD_ESCAPE,
    BAD_NUMBER,
    BAD_OPERATOR,
    BAD_PARAM,
    KIND_MISMATCH,
    TOO_DEEP,
    TYPES_TOO_DEEP,
    UNCLOSED_BRACE,
    UNEXPECTED_CHAR,
    UNEXPECTED_TOKEN,
    UNTERMINATED_STRING,
)
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.lang.document import MAX_TYPE_DEPTH, Document, Setting, Statement, make_type, valid_keys
from ctr.resources import grammar_path
from ctr.rules import expr as E
from ctr.rules.model import (Alias, CellState, CellType, Condition, MarkerRef, Requirement, Threshold, Veto, group_name,
                             split_path)


START_RULES = ("start", "condition", "require_spec", "veto_spec", "threshold_spec", "marker_item")

# Words for the parser's terminal names in "expected ..." lists.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "SIGNED_NUMBER": "a number",
    "INT": "a level number",
    "COMP_OP": "a comparison (> >= < <= == !=)",
    "OVERRIDE_KEY": "a threshold override (min_coverage, min_pos_frac, min_enrichment, min_gap)",
    "MARKER_FUNC": "a marker statistic (pos_frac, enrichment, median, mean, de_z)",
    "NODE_VAR": "a cell-type statistic (coverage, score, n_cells, ...)",
    "NUM_FUNC": "'max', 'min', 'abs'",
    "COMBINATOR": "'all', 'any'",
    "$END": "end of file",
}


@cache
def parser() -> Lark:
    """The ruleset parser, built once from the grammar file."""
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        start=list(START_RULES),
    )


@cache
def _terminal_words() -> dict[str, str]:
    words = dict(_TERMINAL_WORDS)
    for term in parser().terminals:
        if isinstance(term.pattern, PatternStr):
            words.setdefault(term.name, f"'{term.pattern.value}'")
    return words


@dataclass
class Offset:
    """Where a string parsed on its own sits in its file (conditions written in YAML/JSON)."""

    file: str
    line: int = 1  # line of the string's first character
    column: int = 1  # column of the string's first character


def _loc(offset: Offset, line: int, column: int, end_line: int | None = None, end_column: int | None = None) -> SourceLoc:
    def shift(ln, col):
        if ln is None:
            return None, None
        return offset.line + ln - 1, (offset.column + col - 1 if ln == 1 else col)

    l0, c0 = shift(line, column)
    l1, c1 = shift(end_line, end_column)
    return SourceLoc(file=offset.file, line=l0, column=c0, end_line=l1, end_column=c1)


def syntax_diagnostic(exc: UnexpectedInput, text: str, offset: Offset) -> Diagnostic:
    """A located diagnostic for a lark parse error, with the expected tokens in words."""
    words = _terminal_words()
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        loc = _loc(offset, exc.line, exc.column, exc.line, exc.column)
        if char == '"':
            return Diagnostic(UNTERMINATED_STRING, "unterminated string: a closing '\"' is missing on this line", loc)
        expected = sorted({words.get(t, t) for t in exc.allowed or ()})
        hint = "a name with spaces or punctuation must be quoted: \"CD4+ T cells\"" if char.isprintable() else None
        return Diagnostic(UNEXPECTED_CHAR, f"unexpected character {char!r}", loc, hint=hint)
    if isinstance(exc, (UnexpectedToken, UnexpectedEOF)):
        token = getattr(exc, "token", None)
        # `accepts` (what the parser takes after its pending reductions) is the short, true list;
        # `expected` also holds tokens of states the parser has already left
        accepted = getattr(exc, "accepts", None) or exc.expected
        at_end = token is None or token.type == "$END"
        if at_end and "RBRACE" in accepted:
            unclosed = unclosed_brace(text)
            if unclosed is not None:
                line, col, opener = unclosed
                end_line, _ = _end_position(text)
                return Diagnostic(
                    UNCLOSED_BRACE,
                    f"'{{' of {opener} is never closed: a '}}' is missing (the file ends at line {end_line})",
                    _loc(offset, line, col, line, col),
                    hint="add the '}' where the block should end",
                )
        if (token is not None and token.type == "RBRACE" and "RBRACE" not in accepted
                and unclosed_brace(text[: token.start_pos]) is None):
            # every '{' is closed already: listing the statements that may start here hides the cause
            return Diagnostic(UNEXPECTED_TOKEN, "unexpected '}': no '{' is open here",
                              _loc(offset, token.line, token.column, token.line, token.column),
                              hint="remove this '}', or the one above it that closes its block too early")
        expected = sorted({words.get(t, t) for t in accepted})
        if at_end:
            line, col = _end_position(text)
            loc = _loc(offset, line, col, line, col)
            msg = "unexpected end of file"
        else:
            loc = _loc(offset, token.line, token.column, token.end_line, (token.end_column or 1) - 1)
            msg = f"unexpected {_describe(token)}"
        if expected:
            msg += "; expected " + _join(expected)
        hint = None
        if (token is not None and token.type == "RPAR" and set(accepted) == {"COMMA"}
                and re.search(r"\bany\s*\([^()]*$", text[: token.start_pos])):
            hint = "a marker group lists two or more markers: any(FAP, ACTA2); a single marker needs no group"
        if token is not None and token.type in ("NAME", "OVERRIDE_KEY", "NODE_VAR", "MARKER_FUNC"):
            keywords = [w.strip("'") for w in expected if w.startswith("'") and w[1:-1].isidentifier()]
            keywords += valid_keys("override") if "OVERRIDE_KEY" in exc.expected else []
            near = did_you_mean(str(token), keywords)
            if near:
                msg += near
            elif token.type == "NAME" and "NAME" not in exc.expected and (
                "MARKER_FUNC" in exc.expected or "NODE_VAR" in exc.expected
            ):
                hint = "markers are named inside a statistic, e.g. pos_frac(CD3E) > 0.3"
            elif token.type == "NAME" and "COMMA" in accepted:
                hint = "separate names with commas: markers CD3E, CD2"
            elif token.type == "NAME" and "'type'" in expected:
                hint = "names that are keywords or contain spaces must be quoted"
        return Diagnostic(UNEXPECTED_TOKEN, msg, loc, hint=hint)
    return Diagnostic(UNEXPECTED_TOKEN, str(exc).splitlines()[0], _loc(offset, 1, 1))


def _describe(token: Token) -> str:
    if token.type == "NAME":
        return f"name '{token}'"
    if token.type == "STRING":
        return f"string {token}"
    if token.type in ("NUMBER", "SIGNED_NUMBER", "INT"):
        return f"number {token}"
    return f"'{token}'"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def unclosed_brace(text: str) -> tuple[int, int, str] | None:
    """Where the '{' that lacks its '}' opens: (line, column, what it opens), or None.

    Braces are matched as written (outside strings and comments). A '}' indented less than the
    line of the '{' it closes belonged to an outer block, so that '{' is the one whose '}' is
    missing; otherwise the innermost brace left open at the end of the file is.
    """
    lines = text.splitlines()
    stack: list[tuple[int, int]] = []  # (line index, column index) of open braces
    suspects: list[tuple[int, int]] = []
    for li, raw in enumerate(lines):
        for ci, ch, quoted in _code(raw):
            if quoted:
                continue
            if ch == "{":
                stack.append((li, ci))
            elif ch == "}" and stack:
                oli, oci = stack.pop()
                if _indent(raw) < _indent(lines[oli]) and oli != li:
                    suspects.append((oli, oci))
    if not stack:
        return None
    li, ci = suspects[0] if suspects else stack[-1]
    opener = " ".join(_strip_comment(lines[li])[:ci].split()) or "a block"
    return li + 1, ci + 1, opener


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _end_position(text: str) -> tuple[int, int]:
    """The position just after the last character that is not whitespace or a comment."""
    lines = text.splitlines() or [""]
    for idx in range(len(lines) - 1, -1, -1):
        code = _strip_comment(lines[idx]).rstrip()
        if code:
            return idx + 1, len(code) + 1
    return 1, 1


def _code(line: str):
    """(column index, character, whether inside a string) for each character before a comment."""
    in_string = escaped = False
    for i, ch in enumerate(line):
        if ch == "#" and not in_string:
            return
        yield i, ch, in_string
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True


def _strip_comment(line: str) -> str:
    end = 0
    for i, _, _ in _code(line):
        end = i + 1
    return line[:end]


# ---------------------------------------------------------------------------------------------
# Parse tree -> Document


@dataclass
class _Ex:
    """An expression while it is being built: the node, its depth and whether it is a condition."""

    node: Any
    depth: int
    boolean: bool
    loc: SourceLoc
    too_deep: SourceLoc | None = None


_BOOLEAN = (E.Compare, E.BoolOp, E.Not, E.Combinator)


@v_args(meta=True)
class _ToDocument(Transformer_NonRecursive):
    def __init__(self, text: str, offset: Offset, diagnostics: list[Diagnostic]):
        super().__init__()
        self.text = text
        self.offset = offset
        self.diags = diagnostics
        self.type_depth: dict[int, int] = {}

    # -- locations and names -----------------------------------------------------------------
    def _mloc(self, meta) -> SourceLoc:
        if getattr(meta, "empty", True):
            return _loc(self.offset, 1, 1)
        return _loc(self.offset, meta.line, meta.column, meta.end_line, meta.end_column - 1)

    def _tloc(self, tok: Token) -> SourceLoc:
        return _loc(self.offset, tok.line, tok.column, tok.end_line, (tok.end_column or 1) - 1)

    def bare_name(self, meta, children):
        tok = children[0]
        return (str(tok), self._tloc(tok))

    def quoted_name(self, meta, children):
        tok = children[0]
        return (self._unquote(tok), self._tloc(tok))

    def _unquote(self, tok: Token) -> str:
        try:
            return json.loads(str(tok), strict=False)
        except json.JSONDecodeError as exc:
            self.diags.append(Diagnostic(BAD_ESCAPE, f"invalid escape in string {tok}: {exc.msg}", self._tloc(tok)))
            return str(tok)[1:-1]

    def _number(self, tok: Token) -> float | int:
        text = str(tok)
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            self.diags.append(Diagnostic(BAD_NUMBER, f"number {text} is not finite", self._tloc(tok)))
            return 0.0
        if text.lstrip("+-").isdigit():
            return int(text)
        return value

    def _op(self, tok: Token, allowed: tuple[str, ...], what: str) -> str:
        op = str(tok)
        if op not in allowed:
            self.diags.append(
                Diagnostic(BAD_OPERATOR, f"{what} uses {' or '.join(allowed)}, not '{op}'", self._tloc(tok))
            )
            return allowed[0]
        return op

    # -- top level ---------------------------------------------------------------------------
    def start(self, meta, children):
        out: list[Statement] = []
        for child in children:
            out.extend(child if isinstance(child, list) else [child])
        return out

    def ruleset_decl(self, meta, children):
        name, _ = children[0]
        desc = self._unquote(children[1]) if len(children) > 1 else None
        return Statement("ruleset", self._mloc(meta), name=name, description=desc)

    def include(self, meta, children):
        return Statement("include", self._mloc(meta), name=self._unquote(children[0]))

    def alias(self, meta, children):
        (canonical, _), *syns = children
        alias = Alias(canonical=canonical, synonyms=[s for s, _ in syns], loc=self._mloc(meta))
        return Statement("alias", alias.loc, payload=alias)

    def threshold(self, meta, children):
        (marker, _), op_tok, num = children
        op = self._op(op_tok, (">", ">="), "threshold")
        thr = Threshold(marker=marker, op=op, value=self._number(num), loc=self._mloc(meta))
        return Statement("threshold", thr.loc, payload=thr)

    def threshold_spec(self, meta, children):
        op_tok, num = children
        return (self._op(op_tok, (">", ">="), "threshold"), self._number(num))

    def _settings(self, block, children, level=None):
        out = []
        for tree_loc, key, value in children:
            out.append(Statement("setting", tree_loc, payload=Setting(block, key, value, tree_loc, level)))
        return out

    def setting(self, meta, children):
        return (self._mloc(meta), str(children[0]), children[1])

    def number(self, meta, children):
        return self._number(children[0])

    def word(self, meta, children):
        return str(children[0])

    def text(self, meta, children):
        return self._unquote(children[0])

    def scoring_block(self, meta, children):
        return self._settings("scoring", children)

    def gating_block(self, meta, children):
        return self._settings("gating", children)

    def refinement_block(self, meta, children):
        return self._settings("refinement", children)

    def level_block(self, meta, children):
        level_tok, *settings = children
        return self._settings("level", settings, level=int(level_tok))

    # -- cell types --------------------------------------------------------------------------
    def _body(self, name, loc, items) -> CellType:
        parts: dict[str, list] = {k: [] for k in ("markers", "anti", "requires", "vetoes", "conditions", "cite", "overrides", "children")}
        for item in items:
            kind, value = ("children", [item.payload]) if isinstance(item, Statement) else item
            if value is None:
                continue
            if kind in ("markers", "anti", "requires", "vetoes", "children"):
                parts[kind].extend(value)
            else:
                parts[kind].append(value)
        depth = 1 + max((self.type_depth.get(id(c), 1) for c in parts["children"]), default=0)
        if depth > MAX_TYPE_DEPTH:
            self.diags.append(
                Diagnostic(TYPES_TOO_DEEP, f"cell types are nested more than {MAX_TYPE_DEPTH} levels deep", loc)
            )
            parts["children"] = []
            depth = 1
        node = make_type(name, loc, diagnostics=self.diags, **parts)
        self.type_depth[id(node)] = depth
        return node

    def state_decl(self, meta, children):
        (name, _), *items = children
        parts: dict[str, list] = {"markers": [], "anti": [], "conditions": [], "cite": [], "applies_to": [],
                                  "excludes": [], "description": []}
        for kind, value in items:
            if value is None:
                continue
            parts[kind].extend(value if isinstance(value, list) else [value])
        loc = self._mloc(meta)
        state = CellState(name=name, loc=loc, description=" ".join(parts.pop("description")), **parts)
        return Statement("state", loc, payload=state)

    def applies_to(self, meta, children):
        return ("applies_to", [n for n, _ in children])

    def excludes(self, meta, children):
        return ("excludes", [n for n, _ in children])

    def description(self, meta, children):
        return ("description", self._unquote(children[0]))

    def type_decl(self, meta, children):
        (name, _), *items = children
        return Statement("type", self._mloc(meta), payload=self._body(name, self._mloc(meta), items))

    def extend(self, meta, children):
        (path, _), *items = children
        body = self._body(split_path(path)[-1], self._mloc(meta), items)
        return Statement("extend", self._mloc(meta), name=path, payload=body)

    def replace(self, meta, children):
        (path, _), *items = children
        body = self._body(split_path(path)[-1], self._mloc(meta), items)
        return Statement("replace", self._mloc(meta), name=path, payload=body)

    def remove(self, meta, children):
        (path, _) = children[0]
        return Statement("remove", self._mloc(meta), name=path)

    def markers(self, meta, children):
        return ("markers", [self._marker_ref(item) for item in children])

    def _marker_ref(self, item) -> MarkerRef:
        return item if isinstance(item, MarkerRef) else MarkerRef(name=item[0], loc=item[1])

    def any_group(self, meta, children):
        members = list(dict.fromkeys(n for n, _ in children))
        return MarkerRef(name=group_name(members), any_of=members, loc=self._mloc(meta))

    def marker_item(self, meta, children):
        return self._marker_ref(children[0])

    def anti(self, meta, children):
        return ("anti", [MarkerRef(name=n, loc=loc) for n, loc in children])

    def require(self, meta, children):
        return ("requires", [self._requirement(children, self._mloc(meta))])

    def require_spec(self, meta, children):
        return self._requirement(children, self._mloc(meta))

    def _requirement(self, children, loc) -> Requirement:
        first, *clauses = children
        ref = self._marker_ref(first)
        marker = ref.name
        values: dict[str, Any] = {"any_of": ref.any_of}
        for stat, value, clause_loc in clauses:
            values["min_pos_frac" if stat == "pos_frac" else "min_enrichment"] = value
        try:
            return Requirement(marker=marker, loc=loc, **values)
        except ValueError:
            self.diags.append(
                Diagnostic(
                    BAD_PARAM,
                    f"require {marker}: pos_frac must be between 0 and 1 (got {values.get('min_pos_frac')})",
                    loc,
                )
            )
            return Requirement(marker=marker, loc=loc, min_enrichment=values.get("min_enrichment"), any_of=ref.any_of)

    def req_stat(self, meta, children):
        return str(children[0])

    def require_clause(self, meta, children):
        stat, op_tok, num = children
        self._op(op_tok, (">=",), f"require ... {stat}")
        return (str(stat), self._number(num), self._mloc(meta))

    def veto(self, meta, children):
        return ("vetoes", [self._veto(children, self._mloc(meta))])

    def veto_spec(self, meta, children):
        return self._veto(children, self._mloc(meta))

    def _veto(self, children, loc) -> Veto:
        names = [c[0] for c in children if isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str)]
        limits = [c for c in children if isinstance(c, float | int) and not isinstance(c, bool)]
        if limits:
            try:
                return Veto(markers=names, max_pos_frac=limits[0], loc=loc)
            except ValueError:
                self.diags.append(
                    Diagnostic(BAD_PARAM, f"veto pos_frac must be between 0 and 1 (got {limits[0]})", loc)
                )
        return Veto(markers=names, loc=loc)

    def veto_clause(self, meta, children):
        op_tok, num = children
        self._op(op_tok, (">",), "veto ... pos_frac")
        return self._number(num)

    def when(self, meta, children):
        return ("conditions", self._condition(children[0]))

    def condition(self, meta, children):
        return self._condition(children[0])

    def _condition(self, ex: _Ex) -> Condition | None:
        if ex.too_deep is not None:
            self.diags.append(
                Diagnostic(TOO_DEEP, f"condition is nested more than {E.MAX_DEPTH} levels deep", ex.too_deep)
            )
            return None
        if not ex.boolean:
            self._mismatch(ex, "a condition (a comparison, and/or/not, all/any/at_least)")
        src = self._source(ex.loc)
        return Condition(expr=ex.node, text=src, loc=ex.loc)

    def _source(self, loc: SourceLoc) -> str:
        """The text of an expression as written (single-string spellings: the whole string)."""
        if self.offset.line != 1 or self.offset.column != 1:
            return self.text.strip()
        lines = self.text.splitlines()
        if loc.line is None or loc.end_line is None or loc.end_line > len(lines):
            return ""
        if loc.line == loc.end_line:
            return lines[loc.line - 1][loc.column - 1 : loc.end_column]
        parts = [lines[loc.line - 1][loc.column - 1 :]] + lines[loc.line : loc.end_line - 1]
        parts.append(lines[loc.end_line - 1][: loc.end_column])
        return "\n".join(parts)

    def cite(self, meta, children):
        return ("cite", self._unquote(children[0]))

    def override(self, meta, children):
        key, num = children
        return ("overrides", Setting("override", str(key), self._number(num), self._mloc(meta)))

    # -- expressions ---------------------------------------------------------------------------
    def _mismatch(self, ex: _Ex, wanted: str) -> None:
        self.diags.append(Diagnostic(KIND_MISMATCH, f"expected {wanted} here", ex.loc))

    def _make(self, meta, cls, parts: list[_Ex], boolean: bool, need_bool: bool | None, **fields) -> _Ex:
        loc = self._mloc(meta)
        too_deep = next((a.too_deep for a in parts if a.too_deep is not None), None)
        depth = 1 + max((a.depth for a in parts), default=0)
        if too_deep is None and depth > E.MAX_DEPTH:
            too_deep = loc
        if too_deep is not None:
            return _Ex(None, depth, boolean, loc, too_deep)
        if need_bool is not None:
            for a in parts:
                if a.boolean != need_bool:
                    self._mismatch(a, "a condition" if need_bool else "a number")
        return _Ex(cls(loc=loc, **fields), depth, boolean, loc)

    def num(self, meta, children):
        value = float(self._number(children[0]))
        return _Ex(E.Num(value=value, loc=self._mloc(meta)), 1, False, self._mloc(meta))

    def var(self, meta, children):
        return _Ex(E.Var(name=str(children[0]), loc=self._mloc(meta)), 1, False, self._mloc(meta))

    def marker_stat(self, meta, children):
        func, item = children
        ref = self._marker_ref(item)
        node = E.MarkerStat(func=str(func), marker=ref.name, any_of=tuple(ref.any_of), loc=self._mloc(meta))
        return _Ex(node, 1, False, self._mloc(meta))

    def _nodes(self, args):
        return [a.node for a in args]

    def neg(self, meta, children):
        (a,) = children
        return self._make(meta, E.Neg, [a], False, False, operand=a.node)

    def _binop(self, meta, children, op):
        left, right = children
        return self._make(meta, E.BinOp, [left, right], False, False, op=op, left=left.node, right=right.node)

    def add(self, meta, children):
        return self._binop(meta, children, "+")

    def sub(self, meta, children):
        return self._binop(meta, children, "-")

    def mul(self, meta, children):
        return self._binop(meta, children, "*")

    def div(self, meta, children):
        return self._binop(meta, children, "/")

    def call(self, meta, children):
        func, *args = children
        if str(func) == "abs" and len(args) != 1:
            self.diags.append(Diagnostic(KIND_MISMATCH, "abs(x) takes exactly one argument", self._mloc(meta)))
        return self._make(meta, E.Call, args, False, False, func=str(func), args=self._nodes(args))

    def compare(self, meta, children):
        left, op, right = children
        return self._make(meta, E.Compare, [left, right], True, False, op=str(op), left=left.node, right=right.node)

    def or_expr(self, meta, children):
        return self._make(meta, E.BoolOp, children, True, True, op="or", args=self._nodes(children))

    def and_expr(self, meta, children):
        return self._make(meta, E.BoolOp, children, True, True, op="and", args=self._nodes(children))

    def not_(self, meta, children):
        (a,) = children
        return self._make(meta, E.Not, [a], True, True, operand=a.node)

    def combinator(self, meta, children):
        func, *args = children
        return self._make(meta, E.Combinator, args, True, True, func=str(func), args=self._nodes(args))

    def at_least(self, meta, children):
        k_tok, *args = children
        k = float(self._number(k_tok))
        if not k.is_integer() or k < 0:
            self.diags.append(Diagnostic(BAD_NUMBER, f"at_least needs a whole number first, got {k_tok}", self._tloc(k_tok)))
        return self._make(meta, E.Combinator, args, True, True, func="at_least", k=int(k), args=self._nodes(args))


def _parse(text: str, start: str, offset: Offset, diagnostics: list[Diagnostic]) -> tuple[Any, bool]:
    try:
        tree = parser().parse(text, start=start)
    except UnexpectedInput as exc:
        diagnostics.append(syntax_diagnostic(exc, text, offset))
        return None, False
    return _ToDocument(text, offset, diagnostics).transform(tree), True


def parse_document(text: str, file: str) -> Document:
    """Parse DSL text into a :class:`Document` (statements in file order plus diagnostics)."""
    doc = Document(file=file, text=text)
    statements, ok = _parse(text, "start", Offset(file), doc.diagnostics)
    doc.syntax_ok = ok
    doc.statements = statements or []
    return doc


def parse_condition(text: str, offset: Offset, diagnostics: list[Diagnostic]) -> Condition | None:
    """Parse one ``when`` expression written as a string (YAML/JSON spellings)."""
    return _parse(text, "condition", offset, diagnostics)[0]


def parse_require(text: str, offset: Offset, diagnostics: list[Diagnostic]) -> Requirement | None:
    """Parse ``"EPCAM pos_frac >= 0.5"``."""
    return _parse(text, "require_spec", offset, diagnostics)[0]


def parse_veto(text: str, offset: Offset, diagnostics: list[Diagnostic]) -> Veto | None:
    """Parse ``"PTPRC, VIM pos_frac > 0.25"``."""
    return _parse(text, "veto_spec", offset, diagnostics)[0]


def parse_marker_group(text: str, offset: Offset, diagnostics: list[Diagnostic]) -> MarkerRef | None:
    """Parse ``"any(FAP, ACTA2, CD36)"`` (a marker group written in a YAML/JSON ``markers`` list)."""
    return _parse(text, "marker_item", offset, diagnostics)[0]


def parse_threshold(text: str, offset: Offset, diagnostics: list[Diagnostic]) -> tuple[str, float] | None:
    """Parse ``"> 1.2"`` into (op, value)."""
    return _parse(text, "threshold_spec", offset, diagnostics)[0]
