"""YAML and the guide's JSON marker map compile to the same graph as the DSL; includes and edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctr.lang import builtin_rulesets, compile_ruleset, load_ruleset

DATA = Path(__file__).parent / "data"

DSL = '''ruleset ft "Fallopian tube"
alias PTPRC = CD45
threshold CD45 > 1.2
scoring { anti_weight 0.8 }
level 0 { min_coverage 0.45 }
level 1 { min_gap 0.25 }
type Epithelium {
  markers EPCAM, KRT8
  anti VIM
  require EPCAM pos_frac >= 0.5
  veto PTPRC, VIM pos_frac > 0.25
  cite "doi:10/x"
  min_coverage 0.4
  type "Ciliated Epithelium" { markers FOXJ1 }
  type "Secretory Epithelium" {
    markers PAX8
    when pos_frac(PAX8) > 2 * pos_frac(FOXJ1)
  }
}
'''

YAML = '''ruleset: ft
description: Fallopian tube
aliases: {PTPRC: [CD45]}
thresholds: {CD45: "> 1.2"}
scoring: {anti_weight: 0.8}
levels: {0: {min_coverage: 0.45}, "1": {min_gap: 0.25}}
types:
  Epithelium:
    markers: [EPCAM, KRT8]
    anti: [VIM]
    require: ["EPCAM pos_frac >= 0.5"]
    veto: [{markers: [PTPRC, VIM], pos_frac: 0.25}]
    cite: ["doi:10/x"]
    min_coverage: 0.4
    types:
      Ciliated Epithelium: {markers: [FOXJ1]}
      Secretory Epithelium:
        markers: [PAX8]
        when: ["pos_frac(PAX8) > 2 * pos_frac(FOXJ1)"]
'''

JSON = '''{
  "_ruleset": "ft",
  "_description": "Fallopian tube",
  "_aliases": {"PTPRC": ["CD45"]},
  "_thresholds": {"CD45": "> 1.2"},
  "_scoring_params": {"anti_weight": 0.8},
  "_gating_params": {
    "root_hard_requirements": {"Epithelium": {"marker": "EPCAM", "min_pos_frac": 0.5}},
    "root_veto_markers": {"Epithelium": {"markers": ["PTPRC", "VIM"], "max_pos_frac": 0.25}},
    "level_defaults": {"0": {"min_coverage": 0.45}, "1": {"min_gap": 0.25}}
  },
  "Epithelium": {
    "markers": ["EPCAM", "KRT8"],
    "anti_markers": ["VIM"],
    "cite": ["doi:10/x"],
    "overrides": {"min_coverage": 0.4},
    "subtypes": {
      "Ciliated Epithelium": {"markers": ["FOXJ1"]},
      "Secretory Epithelium": {"markers": ["PAX8"], "when": ["pos_frac(PAX8) > 2 * pos_frac(FOXJ1)"]}
    }
  }
}
'''


def compiled(name: str, text: str):
    return compile_ruleset(name, text=text)


def test_three_spellings_one_graph():
    graphs = [compiled(n, t) for n, t in (("ft.ctr", DSL), ("ft.yaml", YAML), ("ft.json", JSON))]
    for result in graphs:
        assert result.diagnostics == [], [d.header() for d in result.diagnostics]
    canon = [r.ruleset.canonical() for r in graphs]
    assert canon[0] == canon[1] == canon[2]
    rs = graphs[1].ruleset
    assert rs.gating.level_defaults[1].explicit() == {"min_gap": 0.25}
    assert rs.param_locs["gating.level_defaults.1.min_gap"].line == 6
    assert rs.param_locs["scoring.anti_weight"].line == 5
    # YAML locations: the type's key, a marker in a flow list, the override key
    epi = rs.node("Epithelium")
    assert (epi.loc.line, epi.loc.column) == (8, 3)
    assert (epi.markers[1].loc.line, epi.markers[1].loc.column) == (9, 22)
    assert epi.override_locs["min_coverage"].line == 14
    js = graphs[2].ruleset
    assert (js.node("Epithelium").markers[1].loc.line, js.node("Epithelium").markers[1].loc.column) == (13, 26)


def test_level_keys_may_be_strings_or_ints():
    as_str = compiled("a.json", '{"_gating_params": {"level_defaults": {"0": {"min_gap": 0.3}}}, "A": {"markers": ["X"]}}')
    as_int = compiled("a.yaml", "gating: {level_defaults: {0: {min_gap: 0.3}}}\ntypes: {A: {markers: [X]}}\n")
    for result in (as_str, as_int):
        assert result.diagnostics == []
        assert result.ruleset.gating.level_defaults == {0: result.ruleset.gating.level_defaults[0]}
        assert result.ruleset.gating.level_defaults[0].explicit() == {"min_gap": 0.3}
    bad = compiled("a.json", '{"_gating_params": {"level_defaults": {"one": {"min_gap": 0.3}}}}')
    assert bad.diagnostics[0].code == "CTR421" and "'one'" in bad.diagnostics[0].message


@pytest.mark.parametrize(
    "fixture, roots, warnings",
    [
        ("guide_fallopian_tube.json", ["Epithelium"], 2),  # requirements for Immune Cells / Fibroblasts: not in the map
        ("guide_fix_2_3.json", ["Epithelium"], 0),
        ("guide_fix_3_1.json", ["T Cells", "B Cells"], 0),
        ("guide_lung.json", [], 4),  # gating-only blocks: every entry names a type defined elsewhere
        ("guide_tumor.json", [], 1),
    ],
)
def test_guide_json_examples_import(fixture, roots, warnings):
    result = compile_ruleset(DATA / fixture)
    assert result.ruleset is not None and not result.errors
    assert [r.name for r in result.ruleset.roots] == roots
    assert len([d for d in result.diagnostics if d.code == "CTR212"]) == warnings


def test_guide_fallopian_tube_content():
    rs = load_ruleset(DATA / "guide_fallopian_tube.json")
    epi = rs.node("Epithelium")
    assert [(r.marker, r.min_pos_frac, r.min_enrichment) for r in epi.requires] == [("EPCAM", 0.5, 0.0)]
    assert [(v.markers, v.max_pos_frac) for v in epi.vetoes] == [(["PTPRC", "VIM"], 0.25)]
    assert rs.node("Epithelium / Ciliated Epithelium").anti_names == ["MUC5B", "SCGB2A1", "OVGP1"]
    assert rs.gating.level_defaults[0].explicit() == {"min_coverage": 0.45, "min_pos_frac": 0.30, "min_gap": 0.35}
    assert rs.gating.level_defaults[1].explicit() == {"min_coverage": 0.35, "min_pos_frac": 0.25, "min_gap": 0.25}
    assert rs.name == "guide_fallopian_tube"
    warning = next(d for d in compile_ruleset(DATA / "guide_fallopian_tube.json").diagnostics if "Fibroblasts" in d.message)
    assert (warning.loc.line, warning.loc.column) == (20, 28)


def test_misspelled_json_key_is_a_located_error_with_did_you_mean():
    text = '{\n  "T Cells": {\n    "markers": ["CD3D"],\n    "Anti_markers": ["CD19"]\n  }\n}\n'
    diag = compiled("map.json", text).diagnostics[0]
    assert diag.code == "CTR202"
    assert (diag.loc.file, diag.loc.line, diag.loc.column) == ("map.json", 4, 5)
    assert "did you mean 'anti_markers'" in diag.message
    inner = compiled("map.json", '{"_gating_params": {"root_hard_requirements": {"A": {"markers": "X"}}}, "A": {"markers": ["X"]}}')
    assert any(d.code == "CTR202" and "did you mean 'marker'" in d.message for d in inner.diagnostics)
    meta = compiled("map.json", '{"_gating_param": {}}')
    assert "did you mean '_gating_params'" in meta.diagnostics[0].message


def test_json_comments_are_read_as_blanks_and_errors_keep_their_place():
    """The user guide's JSON examples carry '//' comments: they are read, "//" inside a string is text."""
    text = ('{\n  "_gating_params": {"root_hard_requirements": {"A": {\n    "marker": "X",\n'
            '    "min_pos_frac": 0.30,  // Lower from 0.50 if X is low\n    "min_enrichment": 0.0\n  }}},\n'
            '  "A": {"markers": ["X", "Y"]},  // the root\n  "B": {"markers": ["http://z"]}\n}\n')
    result = compiled("m.json", text)
    assert [d.code for d in result.diagnostics if d.level == "error"] == []
    assert [(r.marker, r.min_pos_frac) for r in result.ruleset.node("A").requires] == [("X", 0.30)]
    assert result.ruleset.node("B").marker_names == ["http://z"]
    # a trailing comma left by a comment is still an error, at the comma's line and column
    diag = compiled("m.json", '{\n  "A": {"markers": ["X"]},  // comment\n}').diagnostics[0]
    assert diag.code == "CTR106" and (diag.loc.line, diag.loc.column) == (3, 1)


def test_invalid_json_and_yaml_are_located():
    diag = compiled("m.yaml", "types:\n  A: {markers: [X]\n  B: 1\n").diagnostics[0]
    assert diag.code == "CTR105" and diag.loc.line == 3
    diag = compiled("m.yaml", "a: &x [1]\nb: *x\n").diagnostics[0]
    assert diag.code == "CTR105" and (diag.loc.line, diag.loc.column) == (2, 4)
    diag = compiled("m.yaml", "types: !!python/object:os.system {}\n").diagnostics[0]
    assert diag.code == "CTR105"


def test_yaml_condition_errors_point_into_the_yaml_file():
    text = 'types:\n  A:\n    markers: [X]\n    when: ["pos_frac(X) > > 1"]\n'
    diag = compiled("c.yaml", text).diagnostics[0]
    assert diag.code == "CTR101" and (diag.loc.line, diag.loc.column) == (4, 27)
    text = "types:\n  A:\n    markers: [X]\n    markrs: [Y]\n"
    diag = compiled("c.yaml", text).diagnostics[0]
    assert diag.code == "CTR202" and (diag.loc.line, diag.loc.column) == (4, 5) and "'markers'" in diag.message


def test_duplicate_yaml_keys_are_reported():
    diag = compiled("d.yaml", "types:\n  A: {markers: [X]}\n  A: {markers: [Y]}\n").diagnostics[0]
    assert diag.code == "CTR215" and diag.loc.line == 3


# ---------------------------------------------------------------------------------------------
# includes and edits


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


IMMUNE = '''type Immune {
  markers PTPRC
  type "T cells" { markers CD3E }
  type "NK cells" { markers NCAM1 }
  type "Mast cells" { markers KIT }
}
'''


def test_include_extend_replace_remove(tmp_path):
    write(tmp_path, {
        "common/immune.ctr": IMMUNE,
        "top.ctr": '''ruleset top
include "common/immune.ctr"
extend "Immune / T cells" {
  anti CD19
  min_gap 0.3
  type "Gamma-delta T cells" { markers TRDC, TRGC1 }
}
replace type "Immune / NK cells" { markers NCAM1, KLRD1 }
remove "Immune / Mast cells"
type Epithelium { markers EPCAM }
''',
    })
    result = compile_ruleset(tmp_path / "top.ctr")
    assert result.diagnostics == []
    rs = result.ruleset
    assert [n.path_str for n in rs.walk()] == [
        "Immune", "Immune / T cells", "Immune / T cells / Gamma-delta T cells", "Immune / NK cells", "Epithelium"]
    tcells = rs.node("Immune / T cells")
    assert tcells.anti_names == ["CD19"] and tcells.overrides.explicit() == {"min_gap": 0.3}
    assert rs.node("Immune / NK cells").marker_names == ["NCAM1", "KLRD1"]
    assert rs.node("Immune").loc.file.endswith("common/immune.ctr")
    assert [i.path for i in rs.includes] == ["common/immune.ctr"]
    assert str(tmp_path / "common/immune.ctr") in result.sources


def test_replace_with_unspaced_path_keeps_the_node_name():
    """ "Immune/NK" finds the node like "Immune / NK"; the replacement is named NK, not "Immune/NK"."""
    yaml_text = "types:\n  Immune:\n    markers: [PTPRC]\n    types:\n      NK: {markers: [NCAM1]}\nreplace:\n  Immune/NK: {markers: [KLRD1]}\n"
    dsl_text = 'type Immune { markers PTPRC\n  type NK { markers NCAM1 }\n}\nreplace type "Immune/NK" { markers KLRD1 }\n'
    for name, text in (("t.ctr", dsl_text), ("t.yaml", yaml_text)):
        result = compile_ruleset(name, text=text)
        assert result.diagnostics == [], name
        assert [n.path_str for n in result.ruleset.walk()] == ["Immune", "Immune / NK"], name
        assert result.ruleset.node("Immune / NK").marker_names == ["KLRD1"], name


def test_edit_path_not_found_has_did_you_mean(tmp_path):
    write(tmp_path, {"common/immune.ctr": IMMUNE, "top.ctr": 'include "common/immune.ctr"\nremove "Immune / T cell"\n'})
    diag = compile_ruleset(tmp_path / "top.ctr").diagnostics[0]
    assert diag.code == "CTR205" and (diag.loc.line, diag.loc.column) == (2, 1)
    assert "did you mean 'Immune / T cells'" in diag.message


def test_included_duplicate_needs_replace(tmp_path):
    write(tmp_path, {"common/immune.ctr": IMMUNE, "top.ctr": 'include "common/immune.ctr"\ntype Immune { markers CD45 }\n'})
    diag = compile_ruleset(tmp_path / "top.ctr").diagnostics[0]
    assert diag.code == "CTR201" and diag.loc.line == 2 and "immune.ctr:1:1" in diag.message


def test_include_cycle_shows_the_chain(tmp_path):
    write(tmp_path, {
        "a.ctr": 'include "b.ctr"\ntype A { markers X }\n',
        "b.ctr": 'include "c.ctr"\n',
        "c.ctr": '\ninclude "b.ctr"\n',
    })
    diags = compile_ruleset(tmp_path / "a.ctr").diagnostics
    assert [d.code for d in diags] == ["CTR204"]
    assert diags[0].message == "include cycle: b.ctr -> c.ctr -> b.ctr"
    assert diags[0].loc.file == str(tmp_path / "c.ctr") and diags[0].loc.line == 2


def test_missing_and_escaping_includes(tmp_path):
    write(tmp_path, {"rules/top.ctr": 'include "common/immune.ctr"\ninclude "../outside.ctr"\ninclude "/etc/passwd"\n',
                     "outside.ctr": "type O { markers X }\n"})
    diags = compile_ruleset(tmp_path / "rules/top.ctr").diagnostics
    assert [(d.code, d.loc.line, d.loc.column) for d in diags] == [("CTR203", 1, 1), ("CTR207", 2, 1), ("CTR207", 3, 1)]
    assert "include escapes the ruleset folder" in diags[1].message


def test_include_of_yaml_and_json_pieces(tmp_path):
    write(tmp_path, {
        "parts/a.yaml": "types: {A: {markers: [X]}}\n",
        "parts/b.json": '{"B": {"markers": ["Y"]}}',
        "top.yaml": "include: [parts/a.yaml, parts/b.json]\ntypes: {C: {markers: [Z]}}\n",
    })
    rs = load_ruleset(tmp_path / "top.yaml")
    assert [r.name for r in rs.roots] == ["A", "B", "C"]


def test_unknown_name_and_format(tmp_path):
    diag = compile_ruleset("no_such_ruleset").diagnostics[0]
    assert diag.code == "CTR211"
    (tmp_path / "r.txt").write_text("type A { markers X }")
    assert compile_ruleset(tmp_path / "r.txt").diagnostics[0].code == "CTR213"
    assert compile_ruleset(tmp_path / "r.txt", fmt="ctr").diagnostics == []


def test_file_size_limit(tmp_path):
    big = tmp_path / "big.ctr"
    big.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    assert compile_ruleset(big).diagnostics[0].code == "CTR209"


def test_builtin_rulesets_compile():
    for name, path in builtin_rulesets().items():
        result = compile_ruleset(name)
        assert result.ruleset is not None and not result.errors, [d.header() for d in result.errors]
        assert result.ruleset.source_file == str(path)
