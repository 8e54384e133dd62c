"""The panel check before any clustering: a one-line verdict, lint errors and empty panels stop
the run (unless --force), and data warnings come before the expensive stages."""

from __future__ import annotations

import numpy as np
import pytest

from ctr.cli import main
from ctr.rules import lint as L
from ctr.rules.lint import lint, panel_verdict
from ctr.lang import compile_ruleset
from test_hostile_input import RULES, annotate, ruleset, tiny, write  # noqa: F401 (ruleset: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore")

TREE = """ruleset tree
type "T" {
  markers CD3, CD2
  type "CD4 T" { markers CD4 anti CD8 }
  type "CD8 T" { markers CD8 anti CD4 }
}
type "B" {
  markers CD19, MS4A1
  require MS4A1 pos_frac >= 0.3
  type "Plasma" { markers SDC1, MZB1 }
  type "Naive B" { markers IGHD, TCL1A }
}
type "Mono" {
  markers CD14, LYZ
  when pos_frac(FCGR3A) < 0.5
}
"""


def _ruleset(text: str):
    result = compile_ruleset("t.ctr", text=text, fmt="ctr")
    assert result.ok, result.diagnostics
    return result.ruleset


def test_verdict_counts_types_and_follows_parents():
    verdict = panel_verdict(_ruleset(TREE), ["CD3", "CD2", "CD4", "CD8", "CD19", "CD14", "LYZ", "SDC1", "MZB1"])
    # B requires MS4A1 (missing), so B and both its children are out; Mono reads FCGR3A in a condition
    assert set(verdict.never) == {"B", "B / Plasma", "B / Naive B", "Mono"}
    assert verdict.n_types == 7 and verdict.n_assignable == 3
    assert "parent 'B'" in verdict.never["B / Plasma"]
    assert "FCGR3A" in verdict.never["Mono"]
    # which types are out, the highest ones named (a `when` over a missing marker silently loses Mono)
    assert verdict.summary().startswith("4 of 7 cell types can never be assigned on this panel (B, Mono, +2 subtypes); "
                                        "4 of 13 ruleset markers missing")


def test_condition_over_a_missing_marker_is_reported():
    diags = [d for d in lint(_ruleset(TREE), ["CD3", "CD14", "LYZ"]) if d.code == L.CONDITION_MISSING]
    assert len(diags) == 1 and "FCGR3A" in diags[0].message and diags[0].loc.line == 15


def test_single_subtype_is_a_warning():
    text = 'ruleset s\ntype "CD4 T" {\n  markers CD4, CD3\n  type "Tregs" { markers FOXP3, IL2RA }\n}\n'
    diags = [d for d in lint(_ruleset(text)) if d.code == L.SINGLE_CHILD]
    assert len(diags) == 1 and diags[0].loc.line == 4 and "'Tregs'" in diags[0].message
    assert not [d for d in lint(_ruleset(TREE)) if d.code == L.SINGLE_CHILD]


def test_lint_ruleset_panel_ends_with_the_verdict(tmp_path, capsys):
    rules = tmp_path / "tree.ctr"
    rules.write_text(TREE)
    panel = tmp_path / "panel.txt"
    panel.write_text("CD3\nCD2\nCD4\nCD8\nCD19\nCD14\nLYZ\nSDC1\nMZB1\n")
    main(["lint-ruleset", str(rules), "--panel", str(panel)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "4 of 7 cell types can never be assigned on this panel" in last


def test_marker_typo_stops_annotate_and_says_how_to_override(tmp_path, capsys):
    rules = tmp_path / "typo.ctr"
    rules.write_text(RULES.replace("markers CD19, MS4A1", "markers CD19, MS4AA1"))
    h5ad = write(tiny(), tmp_path / "in.h5ad")
    code, _, err = annotate(capsys, h5ad, tmp_path / "run", ruleset=rules)
    assert code == 1
    assert "typo.ctr:8:" in err and "CTR300 error" in err and "did you mean 'MS4A1'" in err and "--force" in err
    assert not (tmp_path / "run").exists()
    code, _, _ = annotate(capsys, h5ad, tmp_path / "run", "--force", ruleset=rules)
    assert code == 0


def test_no_assignable_type_stops_before_clustering(tmp_path, capsys):
    rules = tmp_path / "other.ctr"
    rules.write_text('ruleset other\ntype "Epi" { markers EPCAM, KRT8 }\ntype "Fib" { markers DCN, LUM, CD3  require DCN }\n')
    h5ad = write(tiny(), tmp_path / "in.h5ad")
    code, _, err = annotate(capsys, h5ad, tmp_path / "run", ruleset=rules, annotation_only=False)
    assert code == 1
    assert "2 of 2 cell types can never be assigned on this panel" in err
    assert "no cell type of ruleset 'other' can be assigned" in err and "--force" in err
    assert "cluster" not in [line.split("]")[-1].split()[0] for line in err.splitlines() if "s] " in line]
    code, out, _ = annotate(capsys, h5ad, tmp_path / "run", "--force", ruleset=rules)
    assert code == 0 and "Unassigned" in out


def test_untransformed_warning_comes_before_clustering(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X = adata.X * 5000 + 1.5
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset,
                            annotation_only=False)
    assert code == 0
    lines = err.splitlines()
    warned = next(i for i, line in enumerate(lines) if "CTR506" in line)
    clustering = next(i for i, line in enumerate(lines) if "] cluster (" in line)
    assert warned < clustering
    assert "CTR506" not in capsys.readouterr().out  # said once, not again at the end


def test_transform_silences_the_untransformed_warning(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X = np.round(adata.X * 5000)
    code, out, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", "--transform", "arcsinh:150",
                              ruleset=ruleset, annotation_only=False)
    assert code == 0 and "CTR505" not in err + out and "CTR506" not in err + out


def test_many_warnings_of_one_kind_are_folded_in_text_but_listed_in_json(tmp_path, capsys):
    import json

    markers = ", ".join(f"GENE{i}" for i in range(15))
    rules = tmp_path / "wide.ctr"
    rules.write_text(f'ruleset wide\ntype "A" {{\n  markers CD3, {markers}\n}}\n')
    panel = tmp_path / "panel.txt"
    panel.write_text("CD3\n")
    main(["lint-ruleset", str(rules), "--panel", str(panel)])
    text = capsys.readouterr().out
    assert text.count("CTR300 warning:") == 10
    assert "... 5 more CTR300 warnings (marker not found in the panel) at 3:" in text and "--format json" in text
    main(["lint-ruleset", str(rules), "--panel", str(panel), "--format", "json"])
    listed = json.loads(capsys.readouterr().out)["diagnostics"]
    assert sum(d["code"] == "CTR300" for d in listed) == 15
