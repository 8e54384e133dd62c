"""The DSL grammar: what it accepts, what it builds, and exactly where it reports what it rejects."""

from __future__ import annotations

import pytest

from ctr.errors import RulesetError
from ctr.lang import compile_ruleset, load_ruleset
from ctr.rules import expr as E
from ctr.rules.expr import MAX_DEPTH

FULL = '''# comments run to the end of the line
ruleset fallopian_tube "Human fallopian tube, CODEX panel"
alias PTPRC = CD45
alias "Pan-Cytokeratin" = PanCK, "Pan-CK"
threshold CD45 > 1.2
scoring { anti_weight 0.5  anti_agg top2mean  positive_quantile 0.75 }
gating { max_ambiguity 3  anti_penalty_hard_gate 1.0 }
level 0 { min_coverage 0.45  min_pos_frac 0.30  min_gap 0.35 }
level 1 { min_enrichment -0.5 }
refinement { score_threshold 1.0  min_cells 500 }

type Epithelium {
  markers EPCAM, KRT8, KRT18, CDH1
  anti VIM
  require EPCAM pos_frac >= 0.50
  require KRT8 enrichment >= 0.2 pos_frac >= 0.1
  veto PTPRC, VIM pos_frac > 0.25
  veto CD3E
  cite "doi:10.1038/xxxx"
  min_coverage 0.40
  type "Ciliated Epithelium" {
    markers FOXJ1, TUBB4B, mean, cite
    anti MUC5B
  }
  type "Secretory Epithelium" {
    markers PAX8, MUC16, "CD4+ T cells CD45RO+"
    when pos_frac(PAX8) > 2 * pos_frac(FOXJ1)
    when at_least(2, pos_frac(PAX8) > 0.3, pos_frac(MUC16) > 0.3, enrichment(OVGP1) > 0.5)
    when not score >= 1 or n_cells-5 > 3 and coverage < 0.1
  }
}
'''


def compiled(text: str, name: str = "t.ctr"):
    result = compile_ruleset(name, text=text)
    return result


def only(result, code=None):
    """The single error-or-warning diagnostic of a result (optionally checking its code)."""
    assert len(result.diagnostics) == 1, [d.header() for d in result.diagnostics]
    diag = result.diagnostics[0]
    if code:
        assert diag.code == code, diag.header()
    return diag


def test_full_example_builds_the_graph():
    result = compiled(FULL)
    assert result.diagnostics == []
    rs = result.ruleset
    assert rs.name == "fallopian_tube" and rs.description == "Human fallopian tube, CODEX panel"
    assert [(a.canonical, a.synonyms) for a in rs.aliases] == [("PTPRC", ["CD45"]), ("Pan-Cytokeratin", ["PanCK", "Pan-CK"])]
    assert (rs.thresholds[0].marker, rs.thresholds[0].op, rs.thresholds[0].value) == ("CD45", ">", 1.2)
    assert rs.scoring.explicit() == {"anti_weight": 0.5, "anti_agg": "top2mean", "positive_quantile": 0.75}
    assert rs.gating.model_fields_set == {"max_ambiguity", "anti_penalty_hard_gate", "level_defaults"}
    assert rs.gating.level_defaults[0].explicit() == {"min_coverage": 0.45, "min_pos_frac": 0.30, "min_gap": 0.35}
    assert rs.gating.level_defaults[1].explicit() == {"min_enrichment": -0.5}
    assert rs.refinement.explicit() == {"score_threshold": 1.0, "min_cells": 500}
    assert rs.param_locs["gating.level_defaults.0.min_gap"].line == 8
    assert rs.param_locs["gating.level_defaults.0.min_gap"].column == 49
    assert rs.param_locs["scoring.anti_agg"].column == 28

    epi = rs.node("Epithelium")
    assert epi.marker_names == ["EPCAM", "KRT8", "KRT18", "CDH1"] and epi.anti_names == ["VIM"]
    assert [(r.marker, r.min_pos_frac, r.min_enrichment) for r in epi.requires] == [("EPCAM", 0.5, None), ("KRT8", 0.1, 0.2)]
    assert [(v.markers, v.max_pos_frac) for v in epi.vetoes] == [(["PTPRC", "VIM"], 0.25), (["CD3E"], 0.2)]
    assert epi.cite == ["doi:10.1038/xxxx"]
    assert epi.overrides.explicit() == {"min_coverage": 0.40}
    assert (epi.override_locs["min_coverage"].line, epi.override_locs["min_coverage"].column) == (20, 3)
    assert (epi.loc.line, epi.loc.column) == (12, 1)
    assert (epi.markers[1].loc.line, epi.markers[1].loc.column, epi.markers[1].loc.end_column) == (13, 18, 21)
    # keywords of other contexts are ordinary marker names in a marker list
    assert rs.node("Epithelium / Ciliated Epithelium").marker_names == ["FOXJ1", "TUBB4B", "mean", "cite"]
    sec = rs.node(("Epithelium", "Secretory Epithelium"))
    assert sec.path == ("Epithelium", "Secretory Epithelium") and sec.level == 1
    assert sec.marker_names[-1] == "CD4+ T cells CD45RO+"

    first, second, third = sec.conditions
    assert first.text == "pos_frac(PAX8) > 2 * pos_frac(FOXJ1)"
    assert isinstance(first.expr, E.Compare) and first.expr.op == ">"
    assert first.expr.left.model_dump(exclude={"loc"}) == {"kind": "marker_stat", "func": "pos_frac", "marker": "PAX8"}
    assert isinstance(first.expr.right, E.BinOp) and first.expr.right.op == "*"
    assert E.to_text(first.expr) == first.text
    assert isinstance(second.expr, E.Combinator) and second.expr.func == "at_least" and second.expr.k == 2
    assert len(second.expr.args) == 3
    # precedence: not > and > or; `n_cells-5` is arithmetic, not a name
    top = third.expr
    assert isinstance(top, E.BoolOp) and top.op == "or"
    assert isinstance(top.args[0], E.Not)
    assert isinstance(top.args[1], E.BoolOp) and top.args[1].op == "and"
    sub = top.args[1].args[0].left
    assert isinstance(sub, E.BinOp) and sub.op == "-" and sub.left == E.Var(name="n_cells", loc=sub.left.loc)
    assert (first.loc.line, first.loc.column) == (27, 10)


def test_ruleset_statement_is_optional_and_defaults_to_the_file_stem():
    result = compiled("type A { markers X }\n", name="rules/my_tissue.ctr")
    assert result.diagnostics == [] and result.ruleset.name == "my_tissue"


@pytest.mark.parametrize(
    "text, line, col, code, words",
    [
        # a misspelled keyword: reported at the word itself, with the statements that may start there
        ("ruleset a\ntype A {\n  markrs EPCAM, KRT8\n}\n", 3, 3, "CTR101",
         ["unexpected name 'markrs'", "'markers'", "'anti'", "'}'", "did you mean 'markers'"]),
        # a missing closing brace: reported at the '{' left open, not at the end of the file
        ("ruleset a\ntype A {\n  markers EPCAM\n  type B { markers X }\n", 2, 8, "CTR112",
         ["'{' of type A is never closed", "the file ends at line 4"]),
        # ... also when a later '}' closes it by mistake: the one indented less than its '{'
        ('ruleset a\ntype "T" {\n  markers CD3\n  type "CD4 T" {\n    markers CD4\n  type "CD8 T" {\n'
         '    markers CD8\n  }\n}\ntype "B" {\n  markers CD19 # {\n}\n', 4, 16, "CTR112",
         ["'{' of type \"CD4 T\" is never closed"]),
        # a '}' too many: no block is open, so no list of statements that could start there
        ("type A {\n  markers X\n}\n}\n", 4, 1, "CTR101", ["unexpected '}': no '{' is open here"]),
        # a missing comma between markers: the expected list holds only what may follow a marker name
        ("type A {\n  markers CD3E CD4\n}\n", 2, 16, "CTR101", ["unexpected name 'CD4'", "','"]),
        # a name with spaces must be quoted
        ("type T cells { markers CD3E }\n", 1, 8, "CTR101", ["unexpected name 'cells'", "'{'"]),
        ('type A { markers "EPCAM }\n', 1, 18, "CTR102", ["unterminated string"]),
        ("type A { markers X @ }\n", 1, 20, "CTR103", ["unexpected character '@'"]),
        ("type A { markers X\n  when foo > 1 }\n", 2, 8, "CTR101", ["unexpected name 'foo'", "a marker statistic"]),
        ("type A { markers X\n  when pos_frac(X) > }\n", 2, 22, "CTR101", ["unexpected '}'", "a number"]),
        ("level x { min_gap 0.2 }\n", 1, 7, "CTR101", ["unexpected name 'x'", "a level number"]),
        ("type A { markers X\n  require X pos_frac > 0.3 }\n", 2, 22, "CTR109", [">="]),
        ("threshold CD45 < 1\n", 1, 16, "CTR109", ["threshold uses >"]),
        ("type A { markers X\n  when pos_frac(X) }\n", 2, 8, "CTR110", ["expected a condition"]),
        ("type A { markers X\n  when abs(score > 1) > 0 }\n", 2, 12, "CTR110", ["expected a number"]),
        ('type A { markers "bad \\q escape" }\n', 1, 18, "CTR107", ["invalid escape"]),
    ],
)
def test_rejections_are_located_exactly(text, line, col, code, words):
    diag = compiled(text).diagnostics[0]
    assert diag.code == code, diag.header()
    assert (diag.loc.file, diag.loc.line, diag.loc.column) == ("t.ctr", line, col), diag.header()
    for word in words:
        assert word in diag.message, diag.message


def test_expected_lists_only_what_can_follow():
    diag = compiled("ruleset a\ntype A {\n  markers CD3 CD2\n}\n").diagnostics[0]
    for wrong in ("')'", "'='", "'include'", "'ruleset'", "'{'", "a quoted string"):
        assert wrong not in diag.message, diag.message
    assert "','" in diag.message and "separate names with commas" in diag.hint


def test_syntax_error_makes_the_graph_none_and_load_raises_with_location(tmp_path):
    assert compiled("type A {\n  markrs X\n}\n").ruleset is None
    path = tmp_path / "bad.ctr"
    path.write_text("type A {\n  markrs X\n}\n")
    with pytest.raises(RulesetError) as info:
        load_ruleset(str(path))
    assert str(info.value).startswith(f"{path}:2:3: CTR101 unexpected name 'markrs'")
    assert [d.code for d in info.value.diagnostics] == ["CTR101"]


def test_load_ruleset_raises_summary_for_a_file(tmp_path):
    path = tmp_path / "bad.ctr"
    path.write_text("type A {\n  markers X\n  min_coverag 0.3\n}\n")
    with pytest.raises(RulesetError) as info:
        load_ruleset(path)
    assert str(info.value).startswith(f"{path}:3:3: CTR420 unknown cell type threshold override parameter 'min_coverag'")
    assert "did you mean 'min_coverage'" in str(info.value)


def test_expression_depth_limit_is_located():
    deep = "-" * (MAX_DEPTH + 5) + "score > 1"
    diag = only(compiled(f"type A {{ markers X\n  when {deep} }}\n"), "CTR104")
    assert (diag.loc.line, diag.loc.column) == (2, 8 + 5)
    ok = "-" * (MAX_DEPTH - 3) + "score > 1"
    assert compiled(f"type A {{ markers X\n  when {ok} }}\n").diagnostics == []


def test_very_deep_parentheses_do_not_crash():
    text = "type A { markers X when " + "(" * 5000 + "score > 1" + ")" * 5000 + " }"
    assert compiled(text).diagnostics == []


def test_type_nesting_limit():
    text = "type A { markers X " * 70 + "}" * 70
    codes = {d.code for d in compiled(text).diagnostics}
    assert codes == {"CTR108"}


@pytest.mark.parametrize(
    "block, key_col, code, words",
    [
        ("scoring { anti_weigth 0.3 }", 11, "CTR420", ["'anti_weigth'", "did you mean 'anti_weight'"]),
        ("scoring { anti_agg top3 }", 11, "CTR422", ["'top3'"]),
        ("scoring { positive_quantile 2 }", 11, "CTR421", ["positive_quantile", "less than 1"]),
        ("gating { max_ambiguity many }", 10, "CTR421", ["max_ambiguity"]),
        ("refinement { min_cell 5 }", 14, "CTR420", ["did you mean 'min_cells'"]),
        ("level 2 { min_covrage 0.3 }", 11, "CTR420", ["level 2", "did you mean 'min_coverage'"]),
        ("level 0 { min_gap 11 }", 11, "CTR421", ["min_gap"]),
        ("type A { markers X min_gapp 0.2 }", 20, "CTR420", ["did you mean 'min_gap'"]),
        ("type A { markers X min_pos_frac 1.5 }", 20, "CTR421", ["min_pos_frac"]),
    ],
)
def test_parameter_errors_are_located(block, key_col, code, words):
    diag = only(compiled(block + "\n" + ("" if "type" in block else "type Z { markers Q }\n")), code)
    assert (diag.loc.line, diag.loc.column) == (1, key_col)
    for word in words:
        assert word in diag.message
    if code == "CTR420":
        assert diag.hint.startswith("valid keys: ")
    if code == "CTR422":
        assert diag.hint == "valid values: top_quarter, top2mean, max, mean"


def test_duplicate_siblings_and_empty_type():
    result = compiled("type A { markers X }\ntype B { }\ntype A { markers Y }\ntype C { type D { markers Z } type D { markers W } }\n")
    got = sorted((d.code, d.loc.line, d.loc.column) for d in result.diagnostics)
    assert got == [("CTR201", 3, 1), ("CTR201", 4, 31), ("CTR206", 2, 1)]
    assert "first at t.ctr:1:1" in next(d.message for d in result.diagnostics if d.loc.line == 3)
    # the same name in different branches is fine
    assert compiled("type A { type X { markers P } }\ntype B { type X { markers Q } }\n").diagnostics == []


def test_numbers_and_names():
    rs = compiled('threshold "HLA-DR" >= 1e-3\ntype "3 cells" { markers CD4+, HLA-DR, Ki67, _x.y }\n').ruleset
    assert rs.thresholds[0].value == 0.001 and rs.thresholds[0].marker == "HLA-DR"
    assert rs.roots[0].name == "3 cells" and rs.roots[0].marker_names == ["CD4+", "HLA-DR", "Ki67", "_x.y"]
