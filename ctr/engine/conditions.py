"""The interpreter of custom conditions (``when ...``): a visitor over ``ctr.rules.expr`` nodes.

Evaluating returns an :class:`Evaluated` tree: every node's value next to the sub-values that
produced it, so a failed condition can say which part failed. A marker that is not in the panel
(or has no value in the cluster) evaluates to NaN: arithmetic with it stays NaN and every
comparison involving it is false; the explanation names the missing marker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ctr.rules import expr as E

# (func, marker) -> value, NaN when missing; var name -> value
MarkerLookup = Callable[[str, str], float]


@dataclass(frozen=True)
class Context:
    """What a condition can see for one (cluster, cell type): marker statistics and node statistics."""

    marker_stat: MarkerLookup
    node_vars: dict[str, float]


@dataclass(frozen=True)
class Evaluated:
    node: object
    value: float | bool
    children: tuple[Evaluated, ...] = field(default=())
    missing: tuple[str, ...] = ()  # markers whose value was missing anywhere below

    @property
    def text(self) -> str:
        return E.to_text(self.node)


def evaluate(node, ctx: Context) -> Evaluated:
    """Evaluate an expression node against ``ctx``."""
    if isinstance(node, E.Num):
        return Evaluated(node, float(node.value))
    if isinstance(node, E.MarkerStat):
        value = ctx.marker_stat(node.func, node.marker)
        value = float("nan") if value is None else float(value)
        return Evaluated(node, value, missing=(node.marker,) if math.isnan(value) else ())
    if isinstance(node, E.Var):
        return Evaluated(node, float(ctx.node_vars.get(node.name, float("nan"))))
    if isinstance(node, E.Neg):
        sub = evaluate(node.operand, ctx)
        return Evaluated(node, -sub.value, (sub,), sub.missing)
    if isinstance(node, E.BinOp):
        left, right = evaluate(node.left, ctx), evaluate(node.right, ctx)
        return Evaluated(node, _arith(node.op, left.value, right.value), (left, right), left.missing + right.missing)
    if isinstance(node, E.Call):
        args = tuple(evaluate(a, ctx) for a in node.args)
        values = [a.value for a in args]
        if any(math.isnan(v) for v in values):
            value = float("nan")
        elif node.func == "abs":
            value = abs(values[0])
        else:
            value = max(values) if node.func == "max" else min(values)
        return Evaluated(node, value, args, _missing(args))
    if isinstance(node, E.Compare):
        left, right = evaluate(node.left, ctx), evaluate(node.right, ctx)
        return Evaluated(node, _compare(node.op, left.value, right.value), (left, right), left.missing + right.missing)
    if isinstance(node, E.Not):
        sub = evaluate(node.operand, ctx)
        return Evaluated(node, not sub.value, (sub,), sub.missing)
    if isinstance(node, E.BoolOp):
        args = tuple(evaluate(a, ctx) for a in node.args)
        truth = all(a.value for a in args) if node.op == "and" else any(a.value for a in args)
        return Evaluated(node, truth, args, _missing(args))
    if isinstance(node, E.Combinator):
        args = tuple(evaluate(a, ctx) for a in node.args)
        n_true = sum(bool(a.value) for a in args)
        need = {"all": len(args), "any": 1}.get(node.func, node.k or 0)
        return Evaluated(node, n_true >= need, args, _missing(args))
    raise TypeError(f"not an expression node: {node!r}")


def _missing(args) -> tuple[str, ...]:
    return tuple(m for a in args for m in a.missing)


def _arith(op: str, a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:  # x / 0 is undefined: NaN, so comparisons with it are false
        return float("nan")
    return a / b


def _compare(op: str, a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


def evaluation_tree(ev: Evaluated) -> dict:
    """The evaluation as plain data (JSON-ready), for the trace: each part's text, value, kind
    (``compare``, ``not``, ``all``/``any``/``and``/``or``, ``at_least`` with ``k``, ``value``), the
    markers missing below it, and its parts. ``ctr.report`` turns it into words."""
    node = ev.node
    value = ev.value if isinstance(ev.value, bool) else (None if math.isnan(ev.value) else float(ev.value))
    out: dict = {"text": ev.text, "value": value}
    if isinstance(node, E.Compare):
        out["kind"], out["op"] = "compare", node.op
    elif isinstance(node, E.Not):
        out["kind"] = "not"
    elif isinstance(node, E.Combinator):
        out["kind"] = node.func
        if node.func == "at_least":
            out["k"] = node.k
    elif isinstance(node, E.BoolOp):
        out["kind"] = node.op
    else:
        out["kind"] = "number" if isinstance(node, E.Num) else "value"
    if ev.missing:
        out["missing"] = list(dict.fromkeys(ev.missing))
    if ev.children and out["kind"] not in ("number", "value"):
        out["parts"] = [evaluation_tree(c) for c in ev.children]
    return out
