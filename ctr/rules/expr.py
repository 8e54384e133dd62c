"""The expression tree of custom conditions (``when ...``), shared by the parser and the interpreter.

A dozen node kinds, each carrying its source location. The interpreter lives in
``ctr.engine.conditions``; nothing here evaluates anything.

Vocabulary: numbers; marker statistics ``pos_frac(M)``, ``enrichment(M)``, ``median(M)``,
``mean(M)``, ``de_z(M)`` (M a marker name, quoted when it has spaces); node statistics as bare
names (``coverage``, ``mean_enrichment``, ``anti_penalty``, ``score``, ``n_cells``); arithmetic
``+ - * /`` and unary minus; ``max(...)``, ``min(...)``, ``abs(x)``; comparisons
``< <= > >= == !=``; ``and``, ``or``, ``not``; combinators ``all(c, ...)``, ``any(c, ...)``,
``at_least(K, c, ...)``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ctr.diagnostics import SourceLoc

MARKER_FUNCS = ("pos_frac", "enrichment", "median", "mean", "de_z")
NODE_VARS = ("coverage", "panel_coverage", "mean_enrichment", "mean_positive", "anti_penalty", "score", "n_cells")
MAX_DEPTH = 32  # expressions nested deeper than this are rejected by the parser (CTR104)


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True)
    loc: SourceLoc | None = None


class Num(_Node):
    kind: Literal["num"] = "num"
    value: float


class MarkerStat(_Node):
    kind: Literal["marker_stat"] = "marker_stat"
    func: Literal["pos_frac", "enrichment", "median", "mean", "de_z"]
    marker: str
    # a marker group's members (``pos_frac(any(A, B))``); ``marker`` is its spelling, which names
    # them all, so dumps leave the field out
    any_of: tuple[str, ...] = Field((), exclude=True)


class Var(_Node):
    kind: Literal["var"] = "var"
    name: Literal["coverage", "panel_coverage", "mean_enrichment", "mean_positive", "anti_penalty", "score", "n_cells"]


class Neg(_Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class BinOp(_Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


class Call(_Node):
    """max(...), min(...), abs(x) over numeric expressions."""

    kind: Literal["call"] = "call"
    func: Literal["max", "min", "abs"]
    args: list[Expr]


class Compare(_Node):
    kind: Literal["compare"] = "compare"
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: Expr
    right: Expr


class BoolOp(_Node):
    kind: Literal["boolop"] = "boolop"
    op: Literal["and", "or"]
    args: list[Expr]


class Not(_Node):
    kind: Literal["not"] = "not"
    operand: Expr


class Combinator(_Node):
    """all(c, ...), any(c, ...), at_least(k, c, ...) over boolean conditions."""

    kind: Literal["combinator"] = "combinator"
    func: Literal["all", "any", "at_least"]
    k: int | None = None
    args: list[Expr]


Expr = Annotated[
    Union[Num, MarkerStat, Var, Neg, BinOp, Call, Compare, BoolOp, Not, Combinator],
    Field(discriminator="kind"),
]

for _cls in (Neg, BinOp, Call, Compare, BoolOp, Not, Combinator):
    _cls.model_rebuild()


def markers_in(expr) -> list[str]:
    """Every marker name an expression refers to, in order of appearance."""
    if isinstance(expr, MarkerStat):
        return [expr.marker]
    out: list[str] = []
    for child in _children(expr):
        out.extend(markers_in(child))
    return out


def groups_in(expr) -> dict[str, list[str]]:
    """The marker groups an expression reads (``pos_frac(any(A, B))``): group spelling -> members."""
    if isinstance(expr, MarkerStat):
        return {expr.marker: list(expr.any_of)} if expr.any_of else {}
    out: dict[str, list[str]] = {}
    for child in _children(expr):
        out.update(groups_in(child))
    return out


def _children(expr) -> list:
    if isinstance(expr, (Neg, Not)):
        return [expr.operand]
    if isinstance(expr, (BinOp, Compare)):
        return [expr.left, expr.right]
    if isinstance(expr, (Call, BoolOp, Combinator)):
        return list(expr.args)
    return []


def to_text(expr) -> str:
    """Render an expression back to DSL text (used by the exporters and by explanations)."""
    if isinstance(expr, Num):
        v = expr.value
        return str(int(v)) if float(v).is_integer() else repr(v)
    if isinstance(expr, MarkerStat):
        return f"{expr.func}({expr.marker if expr.any_of else _name(expr.marker)})"
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Neg):
        return f"-{_wrap(expr.operand)}"
    if isinstance(expr, Not):
        return f"not {_wrap(expr.operand)}"
    if isinstance(expr, BinOp):
        return f"{_wrap(expr.left)} {expr.op} {_wrap(expr.right)}"
    if isinstance(expr, Compare):
        return f"{to_text(expr.left)} {expr.op} {to_text(expr.right)}"
    if isinstance(expr, BoolOp):
        return f" {expr.op} ".join(_wrap(a) for a in expr.args)
    if isinstance(expr, Call):
        return f"{expr.func}({', '.join(to_text(a) for a in expr.args)})"
    if isinstance(expr, Combinator):
        args = ([str(expr.k)] if expr.func == "at_least" else []) + [to_text(a) for a in expr.args]
        return f"{expr.func}({', '.join(args)})"
    raise TypeError(f"not an expression node: {expr!r}")


def _wrap(expr) -> str:
    text = to_text(expr)
    return f"({text})" if isinstance(expr, (BinOp, BoolOp, Compare)) else text


# A marker or type name may be written bare when it matches this; otherwise it is quoted.
# The grammar's NAME terminal is the same pattern.
BARE_NAME = r"[A-Za-z_][A-Za-z0-9_.+\-]*"


def quote_name(name: str) -> str:
    """The DSL spelling of a name: bare when possible, else a double-quoted string."""
    import json
    import re

    keywords = {"and", "or", "not", "type", "markers", "anti", "require", "veto", "when", "cite", "true", "false"}
    if re.fullmatch(BARE_NAME, name) and name not in keywords:
        return name
    return json.dumps(name)


_name = quote_name
