"""Lint checks (ctr.rules.lint): each code triggered on a tiny rule graph, with its location."""

import json


from ctr.codes import CODES
from ctr.diagnostics import SourceLoc
from ctr.rules import lint as L
from ctr.rules.expr import Compare, MarkerStat, Num
from ctr.rules.lint import LintReport, lint
from ctr.rules.model import Alias, CellType, Condition, LevelParams, MarkerRef, Requirement, Ruleset, Threshold, Veto, assign_paths
from ctr.rules.params import GatingParams


def loc(line: int, col: int = 1) -> SourceLoc:
    return SourceLoc(file="t.ctr", line=line, column=col)


def node(name, markers=(), anti=(), children=(), line=1, **kw) -> CellType:
    return CellType(
        name=name,
        loc=loc(line),
        markers=[MarkerRef(name=m, loc=loc(line, 3 + i)) for i, m in enumerate(markers)],
        anti=[MarkerRef(name=m, loc=loc(line, 30 + i)) for i, m in enumerate(anti)],
        children=list(children),
        **kw,
    )


def ruleset(*roots, **kw) -> Ruleset:
    assign_paths(list(roots))
    return Ruleset(name="t", roots=list(roots), loc=loc(1), **kw)


def codes(diags) -> list[str]:
    return [d.code for d in diags]


def only(diags, code):
    hits = [d for d in diags if d.code == code]
    assert len(hits) == 1, diags
    return hits[0]


CLEAN = ruleset(
    node("T", ["CD3", "CD2"], ["CD20"], line=2, requires=[Requirement(marker="CD3", loc=loc(3))],
         vetoes=[Veto(markers=["CD20"], loc=loc(4))]),
    node("B", ["CD20", "CD19"], ["CD3"], line=5),
)


def test_clean_ruleset_has_no_diagnostics():
    assert lint(CLEAN) == []
    assert lint(CLEAN, ["CD3", "CD2", "CD20", "CD19"]) == []


def test_every_lint_code_is_registered():
    for name in dir(L):
        value = getattr(L, name)
        if isinstance(value, str) and value.startswith("CTR") and name.isupper():
            assert value in CODES


def test_positive_and_anti():
    d = only(lint(ruleset(node("T", ["CD3", "CD2"], ["CD2"], line=7))), L.POS_AND_ANTI)
    assert d.level == "error" and d.loc == loc(7, 30) and "'CD2'" in d.message and d.hint


def test_no_markers_leaf_is_error_parent_is_warning():
    leaf = only(lint(ruleset(node("Empty", line=4))), L.NO_MARKERS)
    assert leaf.level == "error" and leaf.loc == loc(4)
    parent = only(lint(ruleset(node("Group", children=[node("A", ["X"], line=5)], line=3))), L.NO_MARKERS)
    assert parent.level == "warning" and parent.loc == loc(3) and "subtypes" in parent.message


def test_requirement_on_unlisted_marker():
    rs = ruleset(node("T", ["CD3"], requires=[Requirement(marker="CD3E", loc=loc(9, 3))]))
    d = only(lint(rs), L.REQUIRE_UNLISTED)
    assert d.level == "warning" and d.loc == loc(9, 3) and "did you mean 'CD3'" in d.message


def test_veto_unlisted_and_veto_positive():
    rs = ruleset(node("T", ["CD3", "CD4"], vetoes=[Veto(markers=["CD20", "CD4"], loc=loc(6, 3))]))
    diags = lint(rs)
    assert only(diags, L.VETO_UNLISTED).loc == loc(6, 3)
    d = only(diags, L.VETO_POSITIVE)
    assert d.level == "error" and "'CD4'" in d.message


def test_alias_in_two_groups():
    rs = ruleset(node("T", ["CD3"]), aliases=[
        Alias(canonical="PTPRC", synonyms=["CD45"], loc=loc(2)),
        Alias(canonical="LCA", synonyms=["cd45"], loc=loc(3)),
    ])
    d = only(lint(rs), L.ALIAS_CONFLICT)
    assert d.level == "error" and d.loc == loc(3) and "t.ctr:2" in d.message


def test_alias_cycle_to_itself():
    rs = ruleset(node("T", ["CD3"]), aliases=[Alias(canonical="CD45", synonyms=["CD45"], loc=loc(2))])
    assert codes(lint(rs)) == [L.ALIAS_CONFLICT]


def test_threshold_unused_and_duplicate():
    rs = ruleset(node("T", ["CD3"]), thresholds=[
        Threshold(marker="CD33", value=1.0, loc=loc(2)),
        Threshold(marker="CD3", value=1.0, loc=loc(3)),
        Threshold(marker="CD3", value=2.0, loc=loc(4)),
    ])
    diags = lint(rs)
    unused = only(diags, L.THRESHOLD_UNUSED)
    # CD33 is another protein than CD3: no suggestion across CD numbers
    assert unused.loc == loc(2) and "did you mean" not in unused.message
    assert only(diags, L.THRESHOLD_DUPLICATE).loc == loc(4)


def test_condition_on_unlisted_marker_is_info():
    expr = Compare(op=">", left=MarkerStat(func="pos_frac", marker="PAX8"), right=Num(value=0.3))
    rs = ruleset(node("S", ["OVGP1"], conditions=[Condition(expr=expr, text="pos_frac(PAX8) > 0.3", loc=loc(5, 3))]))
    d = only(lint(rs), L.CONDITION_UNLISTED)
    assert d.level == "info" and d.loc == loc(5, 3) and "pos_frac(PAX8) > 0.3" in d.message


def test_marker_repeated():
    d = only(lint(ruleset(node("T", ["CD3", "CD2", "CD3"], line=3))), L.MARKER_REPEATED)
    assert d.loc == loc(3, 3)


# --- with a panel --------------------------------------------------------------------------


def test_missing_marker_did_you_mean():
    rs = ruleset(node("T", ["CD3", "CD2", "NKGG7"], line=2))
    d = only(lint(rs, ["CD3", "CD2", "NKG7"]), L.PANEL_MISSING)
    assert d.loc == loc(2, 5) and "'NKGG7'" in d.message and "did you mean 'NKG7'" in d.message
    d = only(lint(ruleset(node("T", ["CD3", "CD7"], line=2)), ["CD3", "CD77"]), L.PANEL_MISSING)
    assert "did you mean" not in d.message


def test_missing_isoform_says_why():
    d = only(lint(ruleset(node("T", ["CD3", "CD45RA"], line=2)), ["CD3", "PTPRC"]), L.PANEL_MISSING)
    assert "isoform of PTPRC" in d.message


def test_not_assessable_follows_the_measured_markers():
    # coverage counts measured markers: 2 of 5 measured is enough to judge the type by default
    assert L.NEVER_COVERED not in codes(lint(ruleset(node("T", ["CD3", "CD2", "X1", "X2", "X3"])), ["CD3", "CD2"]))
    # none measured: not assessable
    d = only(lint(ruleset(node("T", ["X1", "X2", "X3"], line=2), node("B", ["CD19"])), ["CD19"]), L.NEVER_COVERED)
    assert d.loc == loc(2) and "not assessable" in d.message and "0 of its 3 markers" in d.message and "X1, X2, X3" in d.message
    # the ruleset can ask for more measured markers
    strict = ruleset(node("T", ["CD3", "CD2", "X1", "X2", "X3"]), gating=GatingParams(min_measured_markers=3))
    d = only(lint(strict, ["CD3", "CD2"]), L.NEVER_COVERED)
    assert "2 of its 5 markers are in the panel, 3 needed" in d.message


def test_indistinguishable_siblings_after_resolution():
    # CD45 and PTPRC are the same panel marker; the children differ only in spelling
    parent = node("Immune", ["CD45"], children=[node("A", ["CD45", "CD3"], line=3), node("B", ["PTPRC", "CD3"], line=4)])
    d = only(lint(ruleset(parent), ["CD45", "CD3"]), L.INDISTINGUISHABLE)
    assert d.loc == loc(4) and "'B' and 'A'" in d.message


def test_requirement_on_missing_marker():
    rs = ruleset(node("Epi", ["EPCAM", "KRT8"], requires=[Requirement(marker="EPCAM", loc=loc(5, 3))]))
    diags = lint(rs, ["KRT8"])
    d = only(diags, L.REQUIRE_MISSING)
    assert d.loc == loc(5, 3) and "can never be assigned" in d.message


def test_no_overlap_is_a_single_error():
    d = lint(CLEAN, ["GAPDH", "ACTB"])
    assert codes(d) == [L.NO_OVERLAP] and d[0].level == "error"


def test_alias_joining_two_panel_markers():
    rs = ruleset(node("T", ["CD3"]), aliases=[Alias(canonical="CD3", synonyms=["CD3E"], loc=loc(2))])
    d = only(lint(rs, ["CD3", "CD3E"]), L.ALIAS_SHADOWS)
    assert d.loc == loc(2) and d.level == "warning"


def test_two_markers_on_one_panel_column():
    rs = ruleset(node("T", ["CD3D", "CD3E"], line=2))
    d = only(lint(rs, ["CD3"]), L.SAME_PANEL_MARKER)
    assert d.loc == loc(2) and "'CD3'" in d.message


# --- the report ------------------------------------------------------------------------------


def test_report_text_json_and_exit_codes():
    source = 'ruleset t\ntype T {\n  markers CD3, CD2\n  anti CD2\n}\n'
    rs = ruleset(node("T", ["CD3"], ["CD3"], line=4))
    report = LintReport(target="t.ctr", diagnostics=lint(rs) + [
        L.Diagnostic("CTR252", "warn me", loc(3, 3))], sources={"t.ctr": source}, ruleset=rs)
    text = report.format_text()
    assert "t.ctr:3:3: CTR252 warning: warn me" in text
    assert "t.ctr:4:30: CTR250 error:" in text
    assert "   4 |   anti CD2" in text
    assert text.splitlines()[-1] == "t: 1 error, 1 warning"
    assert report.exit_code(strict=False) == 1
    data = json.loads(report.format_json())
    assert data["summary"] == {"error": 1, "warning": 1, "info": 0}
    assert [d["code"] for d in data["diagnostics"]] == ["CTR252", "CTR250"]
    warn_only = LintReport(target="x", diagnostics=[L.Diagnostic("CTR252", "w", loc(1))])
    assert warn_only.exit_code(strict=False) == 0 and warn_only.exit_code(strict=True) == 1
    assert LintReport(target="x").exit_code(strict=True) == 0
