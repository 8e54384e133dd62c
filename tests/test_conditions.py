"""The condition interpreter: values, NaN safety and explanations that name the failing part."""

from __future__ import annotations

import math

import pytest

from ctr.engine.conditions import Context, evaluate, evaluation_tree
from ctr.report.sentences import condition_words
from ctr.rules import expr as E


def explain(result) -> str:
    """The evaluation as the trace records it, in the words the report uses."""
    return condition_words(evaluation_tree(result))


STATS = {("pos_frac", "PAX8"): 0.5, ("pos_frac", "FOXJ1"): 0.2, ("enrichment", "OVGP1"): 0.7, ("median", "PAX8"): 2.5}
CTX = Context(lambda func, marker: STATS.get((func, marker), math.nan), {"coverage": 0.6, "n_cells": 120.0})


def pf(marker):
    return E.MarkerStat(func="pos_frac", marker=marker)


def cmp(op, left, right):
    return E.Compare(op=op, left=left, right=right)


def num(v):
    return E.Num(value=v)


def test_arithmetic_and_comparison():
    expr = cmp(">", pf("PAX8"), E.BinOp(op="*", left=num(2), right=pf("FOXJ1")))
    result = evaluate(expr, CTX)
    assert result.value is True
    assert result.children[1].value == pytest.approx(0.4)
    assert explain(result) == "pos_frac(PAX8)=0.50 > 2 * pos_frac(FOXJ1)=0.40 is true"


def test_failed_comparison_names_the_values():
    expr = cmp(">", pf("FOXJ1"), num(0.3))
    result = evaluate(expr, CTX)
    assert result.value is False
    assert explain(result) == "pos_frac(FOXJ1)=0.20 > 0.3 is false"


def test_missing_marker_makes_comparisons_false_and_says_so():
    for op in ("<", "<=", ">", ">=", "==", "!="):
        assert evaluate(cmp(op, pf("NOPE"), num(0.1)), CTX).value is False
    result = evaluate(cmp("<", E.BinOp(op="+", left=pf("NOPE"), right=num(1)), num(5)), CTX)
    assert result.value is False
    assert math.isnan(result.children[0].value)
    assert "marker NOPE missing" in explain(result)


def test_node_variables_and_functions():
    expr = E.BoolOp(op="and", args=[
        cmp(">=", E.Var(name="coverage"), num(0.5)),
        cmp("==", E.Call(func="max", args=[pf("PAX8"), pf("FOXJ1")]), num(0.5)),
        cmp("==", E.Call(func="abs", args=[E.Neg(operand=num(3))]), num(3)),
        cmp(">", E.Var(name="n_cells"), num(100)),
    ])
    assert evaluate(expr, CTX).value is True


def test_and_explains_only_the_failing_parts():
    expr = E.BoolOp(op="and", args=[cmp(">", pf("PAX8"), num(0.3)), cmp(">", pf("FOXJ1"), num(0.3))])
    result = evaluate(expr, CTX)
    assert result.value is False
    assert explain(result) == "pos_frac(FOXJ1)=0.20 > 0.3 is false"


def test_or_and_not():
    expr = E.BoolOp(op="or", args=[cmp(">", pf("FOXJ1"), num(0.3)), cmp(">", pf("PAX8"), num(0.3))])
    assert evaluate(expr, CTX).value is True
    assert explain(evaluate(expr, CTX)) == "pos_frac(PAX8)=0.50 > 0.3 is true"
    assert evaluate(E.Not(operand=expr), CTX).value is False


def test_at_least_counts_true_conditions():
    conds = [cmp(">", pf("PAX8"), num(0.3)), cmp(">", pf("FOXJ1"), num(0.3)), cmp(">", E.MarkerStat(func="enrichment", marker="OVGP1"), num(0.5))]
    two = evaluate(E.Combinator(func="at_least", k=2, args=conds), CTX)
    three = evaluate(E.Combinator(func="at_least", k=3, args=conds), CTX)
    assert two.value is True and three.value is False
    assert explain(three).startswith("2 of 3 true, at least 3 needed: pos_frac(FOXJ1)=0.20 > 0.3 is false")
    assert evaluate(E.Combinator(func="all", args=conds), CTX).value is False
    assert evaluate(E.Combinator(func="any", args=conds), CTX).value is True


def test_division_by_zero_is_missing_not_a_crash():
    expr = cmp(">", E.BinOp(op="/", left=pf("PAX8"), right=num(0)), num(1))
    assert evaluate(expr, CTX).value is False


def test_other_marker_statistics():
    assert evaluate(cmp(">", E.MarkerStat(func="median", marker="PAX8"), num(2)), CTX).value is True
