"""Panel channel names that carry a measurement tag (metal isotope, fluorochrome, detector, FCS's
``$PnN :: $PnS``): the `tagged` resolution step (ctr.rules.channel_tags, ctr.rules.markers)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import ctr
from ctr.cli import main
from ctr.codes import AMBIGUOUS_MARKER
from ctr.lang import compile_ruleset
from ctr.rules.channel_tags import is_tag, marker_part
from ctr.rules.lint import lint, panel_verdict
from ctr.rules.markers import resolve_markers, resolve_names

RULESET_MARKERS = ["CD3", "CD45", "CD8", "CD20", "CD19", "HLA-DR"]

RULES = """ruleset tagged_panel
type "Leukocytes" {
  markers CD45
  type "T cells" {
    markers CD3
    anti CD20, CD19
    type "CD8 T" { markers CD8 anti CD4 }
    type "CD4 T" { markers CD4 anti CD8 }
  }
  type "B cells" { markers CD20, CD19, HLA-DR anti CD3 }
  type "Monocytes" { markers CD14, HLA-DR anti CD3, CD20 }
}
"""


def _ruleset(text: str = RULES):
    result = compile_ruleset("t.ctr", text=text, fmt="ctr")
    assert result.ok, result.diagnostics
    return result.ruleset


MASS_CYTOMETRY = {  # ruleset marker -> how mass cytometry and IMC exports spell the channel
    "CD45": ["141Pr_CD45", "CD45(Sm152)Di", "Sm152_CD45", "CD45_Sm152", "154Sm_CD45", "X141Pr_CD45", "Pr141Di :: 141Pr_CD45"],
    "CD3": ["170Er_CD3", "CD3(Er170)Di"],
    "CD8": ["146Nd_CD8a", "CD8a_Nd146"],  # CD8a is CD8 by the synonym table (CD8 = CD8A, CD8B)
    "HLA-DR": ["HLA-DR(Yb174)Di", "174Yb_HLADR"],
    "CD20": ["Dy161_CD20", "CD20 (161Dy)"],
    "CD19": ["142Nd_CD19"],
}
FLOW = {
    "CD3": ["FITC-A CD3", "CD3 FITC-A", "CD3 :: FITC-A", "CD3-PE/Cy7", "CD3 Alexa Fluor 488", "FL1-H :: CD3", "B530-A :: CD3"],
    "CD45": ["CD45 PerCP", "CD45 PerCP-Cy5.5", "CD45 (V500)"],
    "CD20": ["CD20-BV421", "CD20 BUV395-A"],
    "HLA-DR": ["HLA-DR_APC-Cy7", "HLA-DR APC-H7"],
    "CD19": ["Comp-PE-A :: CD19", "PE-Cy7-A CD19", "CD19 Spark NIR 685"],
    "CD8": ["CD8 eFluor 450", "CD8a Super Bright 600"],
}
TECHNICAL = ["191Ir", "Ir193", "Ir191Di", "(Ir193)Di", "Event_length", "Time", "FSC-A", "SSC-A", "FSC-H", "Center",
             "beadDist", "Comp-PE-A", "PE-Cy7", "B530-A", "140Ce_140Ce"]


@pytest.mark.parametrize("table", [MASS_CYTOMETRY, FLOW], ids=["mass_cytometry", "flow"])
def test_tagged_panels_resolve(table):
    for column_index in range(max(map(len, table.values()))):
        panel = [names[column_index % len(names)] for names in table.values()] + TECHNICAL
        res = resolve_names(RULESET_MARKERS, panel)
        expected = {m: names[column_index % len(names)] for m, names in table.items()}
        assert res.mapping == expected
        assert set(res.how.values()) == {"tagged"} and not res.ambiguous


def test_plain_names_resolve_before_tags():
    # the earlier steps are unchanged, and a plain column wins over a tagged one (exact beats tagged)
    res = resolve_names(["CD3", "CD20", "HLA-DR", "CD45"], ["cd3", "MS4A1", "HLADR", "CD45", "141Pr_CD45", "170Er_CD3"])
    assert res.mapping == {"CD3": "cd3", "CD20": "MS4A1", "HLA-DR": "HLADR", "CD45": "CD45"}
    assert res.how == {"CD3": "case", "CD20": "builtin_alias", "HLA-DR": "normalized", "CD45": "exact"}
    assert not res.ambiguous


def test_tagged_gene_symbols_and_aliases():
    # the marker part goes through case, ruleset aliases, the synonym table and normalisation
    res = resolve_markers(
        _ruleset('ruleset a\nalias PanCK = "Keratin mix"\ntype "T" { markers cd3, PTPRC, PanCK, Ki-67 }\n'),
        ["170Er_CD3", "89Y_CD45", "Keratin mix (Pt195)", "Ki67 AF647"],
    )
    assert res.mapping == {"cd3": "170Er_CD3", "PTPRC": "89Y_CD45", "PanCK": "Keratin mix (Pt195)", "Ki-67": "Ki67 AF647"}
    assert set(res.how.values()) == {"tagged"}


@pytest.mark.parametrize("name", TECHNICAL)
def test_technical_channels_have_no_marker(name):
    assert marker_part(name) is None
    res = resolve_names(RULESET_MARKERS + ["DNA", "Ir", "Time"], [name])
    assert res.mapping == {} or res.how == {m: "exact" for m in res.mapping}


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("CD45RA", None),  # no tag: the isoform is never stripped to CD45
        ("141Pr_CD45RA", "CD45RA"),
        ("PE", None),  # a tag alone measures nothing
        ("APC", None),  # and the gene APC (adenomatous polyposis coli) keeps its name
        ("150Nd_APC", "APC"),  # APC measured by a metal-tagged antibody
        ("ECD", None),
        ("CD45R_B220", None),  # B220 is a marker (a CD45 isoform), not a detector: detectors carry -A/-H/-W
        ("CD111(Cd111)Di", "CD111"),  # cadmium is Cd, CD111 is a CD molecule
        ("Cd45_CD3", None),  # cadmium has no isotope 45
        ("HLA-A", None),  # a pulse measure only follows a dye or detector
        ("141Pr_HLA-A", "HLA-A"),
        ("CD3_CD45", None),
        ("Histone H3 (In113)", "Histone H3"),
        ("DNA1(Ir191)Di", "DNA1"),
    ],
)
def test_only_recognised_tags_are_stripped(name, part):
    assert marker_part(name) == part


def test_looks_tagged_but_is_a_marker():
    # a panel column literally named APC resolves the ruleset marker APC exactly; PE and CD45RA stay themselves
    res = resolve_names(["APC", "CD45", "PE"], ["APC", "CD45RA", "CD3 PE", "PE"])
    assert res.mapping == {"APC": "APC", "PE": "PE"} and res.how == {"APC": "exact", "PE": "exact"}
    assert res.missing == ["CD45"]
    # APC the gene, measured with a metal tag, beside a flow channel stained with the APC dye
    res = resolve_names(["APC", "CD3"], ["150Nd_APC", "CD3 APC"])
    assert res.mapping == {"APC": "150Nd_APC", "CD3": "CD3 APC"}
    assert is_tag("APC") and is_tag("Comp-APC-Cy7-A") and not is_tag("APC2")


def test_the_same_marker_twice_is_reported_not_silently_picked():
    rs = _ruleset()
    panel = ["141Pr_CD45", "170Er_CD3", "CD45(Sm152)Di"]
    res = resolve_markers(rs, panel)
    assert res.mapping["CD45"] == "141Pr_CD45" and res.ambiguous == {"CD45": ["141Pr_CD45", "CD45(Sm152)Di"]}
    diags = [d for d in lint(rs, panel) if d.code == AMBIGUOUS_MARKER]
    assert len(diags) == 1 and diags[0].level == "warning"
    assert "'141Pr_CD45'" in diags[0].message and "'CD45(Sm152)Di'" in diags[0].message
    assert diags[0].loc is not None and diags[0].loc.line == 3
    assert 'alias CD45 = "CD45(Sm152)Di"' in diags[0].hint
    # the hint's alias line chooses, and nothing is ambiguous any more
    chosen = _ruleset(RULES.replace("ruleset tagged_panel\n", 'ruleset tagged_panel\nalias CD45 = "CD45(Sm152)Di"\n'))
    res = resolve_markers(chosen, panel)
    assert res.mapping["CD45"] == "CD45(Sm152)Di" and res.how["CD45"] == "alias" and not res.ambiguous
    assert not [d for d in lint(chosen, panel) if d.code == AMBIGUOUS_MARKER]
    # an exact column wins without a warning
    res = resolve_markers(rs, ["CD45", "141Pr_CD45"])
    assert res.mapping["CD45"] == "CD45" and not res.ambiguous


def test_two_spellings_of_one_name_are_ambiguous_too():
    res = resolve_names(["Cd3"], ["CD3", "cd3"])
    assert res.how == {"Cd3": "case"} and res.ambiguous == {"Cd3": ["CD3", "cd3"]}


def test_panel_verdict_counts_tagged_markers():
    verdict = panel_verdict(_ruleset(), [names[0] for names in MASS_CYTOMETRY.values()] + ["145Nd_CD4", "CD14_Nd144"])
    assert verdict.missing == [] and verdict.n_assignable == verdict.n_types


# ---- end to end -------------------------------------------------------------------------------

PLAIN = ["CD45", "CD3", "CD8", "CD4", "CD20", "CD19", "HLA-DR", "CD14"]
METAL = ["89Y_CD45", "170Er_CD3", "146Nd_CD8a", "CD4(Nd145)Di", "Sm152_CD20", "CD19_Nd142", "HLA-DR(Yb174)Di", "Nd144_CD14"]
TECH = ["191Ir", "Ir193", "Event_length"]
TRUTH = {"CD8 T": ["CD45", "CD3", "CD8"], "CD4 T": ["CD45", "CD3", "CD4"], "B cells": ["CD45", "CD20", "CD19", "HLA-DR"],
         "Monocytes": ["CD45", "CD14", "HLA-DR"], "Unassigned": []}


def _cells(names: list[str], n: int = 60, seed: int = 0) -> ad.AnnData:
    """One cluster per cell type of TRUTH: its markers high, the rest (and DNA, event length) low."""
    rng = np.random.default_rng(seed)
    blocks, clusters, truth = [], [], []
    for k, (label, high) in enumerate(TRUTH.items()):
        x = rng.gamma(1.0, 0.15, size=(n, len(PLAIN) + len(TECH)))
        for marker in high:
            x[:, PLAIN.index(marker)] += rng.normal(3.0, 0.4, n)
        x[:, len(PLAIN):] += 5.0  # the technical channels are bright in every cell
        blocks.append(x)
        clusters += [str(k)] * n
        truth += [label] * n
    obs = pd.DataFrame({"cluster": pd.Categorical(clusters), "truth": truth}, index=[f"c{i}" for i in range(len(truth))])
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=names + TECH))


def test_metal_tagged_panel_annotates_like_plain_names():
    rs = _ruleset()
    plain = ctr.annotate(_cells(PLAIN), rs, cluster_key="cluster", skip_refinement=True)
    tagged = ctr.annotate(_cells(METAL), rs, cluster_key="cluster", skip_refinement=True)
    labels = dict(zip(plain.clusters["cluster"].astype(str), plain.clusters["final_annotation"]))
    assert labels == {str(k): label for k, label in enumerate(TRUTH)}  # the plain run is right
    assert dict(zip(tagged.clusters["cluster"].astype(str), tagged.clusters["final_annotation"])) == labels
    how = dict(zip(tagged.markers["marker"], tagged.markers["how"]))
    assert set(how.values()) == {"tagged"} and len(how) == len(PLAIN)
    assert dict(zip(tagged.markers["marker"], tagged.markers["panel_name"]))["CD8"] == "146Nd_CD8a"


def annotate_on_disk(adata, tmp_path: Path, capsys) -> tuple[Path, Path, Path, str, str]:
    """``adata`` and the test ruleset written to ``tmp_path``, then `ctr annotate --annotation-only`
    on them, which must succeed: (the .h5ad, the ruleset, the run directory, stdout, stderr)."""
    h5ad, rules, run_dir = tmp_path / "cells.h5ad", tmp_path / "t.ctr", tmp_path / "run"
    adata.write_h5ad(h5ad)
    rules.write_text(RULES)
    code = main(["annotate", str(h5ad), "--ruleset", str(rules), "--annotation-only", "--cluster-key", "cluster",
                 "--output-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return h5ad, rules, run_dir, out, err


def test_cli_annotate_and_lint_with_tagged_names(tmp_path: Path, capsys):
    ambiguous = _cells(METAL)
    ambiguous.var_names = ["141Pr_CD45", *METAL[1:], "CD45(Sm152)Di", *TECH[1:]]
    h5ad, rules, run_dir, out, err = annotate_on_disk(ambiguous, tmp_path, capsys)
    assert "CTR308" in out + err and "'CD45(Sm152)Di'" in out + err
    table = pd.read_csv(run_dir / "marker_resolution.csv")
    assert set(table["how"]) == {"tagged"}
    assert dict(zip(table["marker"], table["panel_name"]))["HLA-DR"] == "HLA-DR(Yb174)Di"
    # the report says which column each marker was read from
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<td>CD3</td><td>170Er_CD3</td><td>tagged</td>" in report and "(8 tagged)" in report
    # explain names the tagged channels
    assert main(["explain", str(run_dir), "--markers"]) == 0
    assert "170Er_CD3" in capsys.readouterr().out
    # lint against the same file: the warning, located in the ruleset, and the resolution table
    code = main(["lint-ruleset", str(rules), "--panel", str(h5ad), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [d["code"] for d in report["diagnostics"]] == ["CTR308"]
    assert {row["marker"]: row["how"] for row in report["resolution"]}["CD3"] == "tagged"
    # the panel check before clustering sees the tagged names (no "never assigned")
    assert panel_verdict(_ruleset(), list(ambiguous.var_names)).n_assignable == 6


def test_tag_tables_match_the_docs():
    from ctr.rules.channel_tags import FLUOROCHROMES, METALS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "marker-names.md").read_text(encoding="utf-8")
    for family, _, examples in FLUOROCHROMES:
        assert f"| {family} | {examples}" in doc, family
        for example in examples.split(", "):
            assert is_tag(example) and is_tag(f"Comp-{example}-A") and marker_part(f"CD3 {example}") == "CD3", example
    for element, (low, high) in METALS.items():
        assert f"{element} {low}" + (f"-{high}" if high != low else "") in doc, element
        assert marker_part(f"{low}{element}_CD3") == "CD3" and marker_part(f"CD3({element}{high})Di") == "CD3"
        assert marker_part(f"{low - 1}{element}_CD3") is None  # not one of the element's isotopes
    for detector in ("B530-A", "YG586-A", "BL1-H", "FL1-H", "V7-A"):
        assert is_tag(detector) and marker_part(f"{detector} :: CD3") == "CD3"


def test_a_typo_is_suggested_from_the_marker_part():
    rs = _ruleset('ruleset a\ntype "Stroma" { markers Vimentn, CD31 }\n')
    [diag] = [d for d in lint(rs, ["143Nd_Vimentin", "151Eu_CD31"]) if d.code == "CTR300"]
    assert "did you mean 'Vimentin'?" in diag.message and diag.level == "error"
    assert resolve_markers(_ruleset('ruleset a\ntype "Stroma" { markers Vimentin }\n'), ["143Nd_Vimentin"]).how == {
        "Vimentin": "tagged"}


def test_long_names_are_not_channel_names():
    # exports write a few dozen characters; a pasted paragraph or a hostile panel is not tagged
    assert marker_part("CD3 " + " " * 250 + "FITC") is None and marker_part("CD3 FITC") == "CD3"
    assert marker_part("_".join(["141Pr"] * 30_000) + "_CD45") is None
    assert marker_part("a" + " " * 100_000 + "(b)") is None
