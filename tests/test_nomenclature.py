"""Marker nomenclature: the shipped synonym table and nomenclature-aware suggestions."""

import pytest

from ctr.rules.markers import resolve_names
from ctr.rules.nomenclature import TABLE_PATH, entry_for, note_for, suggest_markers, synonym_table, synonyms_of

# protein / CD name -> HGNC symbol, as HCDM and HGNC define them
PROTEIN_TO_GENE = [
    ("CD56", "NCAM1"), ("CD16", "FCGR3A"), ("CD20", "MS4A1"), ("HLA-DR", "HLA-DRA"), ("CD45", "PTPRC"),
    ("CD3", "CD3E"), ("CD8", "CD8A"), ("CD11b", "ITGAM"), ("CD11c", "ITGAX"), ("CD31", "PECAM1"),
    ("SMA", "ACTA2"), ("E-cadherin", "CDH1"), ("Ki67", "MKI67"), ("PD-1", "PDCD1"), ("CD138", "SDC1"),
    ("CD123", "IL3RA"), ("BDCA-1", "CD1C"), ("CD141", "THBD"), ("IgM", "IGHM"), ("CD25", "IL2RA"),
    ("CD127", "IL7R"), ("CD57", "B3GAT1"), ("CD223", "LAG3"), ("PD-L1", "CD274"),
]


def test_table_ships_inside_the_package():
    assert TABLE_PATH.parent.name == "rules" and TABLE_PATH.is_file()
    assert all(entry.source for entry in synonym_table()), "every row names its source"


@pytest.mark.parametrize(("protein", "gene"), PROTEIN_TO_GENE)
def test_protein_and_gene_resolve_to_each_other(protein, gene):
    assert resolve_names([protein], [gene, "OTHER"]).mapping == {protein: gene}
    assert resolve_names([gene], [protein, "OTHER"]).mapping == {gene: protein}


@pytest.mark.parametrize("same_name", ["CD4", "CD14", "CD19", "FOXP3", "CD68", "CD163", "CD34", "CD38", "CD27"])
def test_names_equal_to_their_gene_need_no_row(same_name):
    assert resolve_names([same_name.lower()], [same_name]).mapping == {same_name.lower(): same_name}


def test_genes_of_one_complex_do_not_stand_for_each_other():
    # CD3 may be measured through any subunit gene, but CD3D is not CD3E
    assert resolve_names(["CD3"], ["CD3D"]).mapping == {"CD3": "CD3D"}
    assert resolve_names(["CD3D"], ["CD3"]).mapping == {"CD3D": "CD3"}
    assert resolve_names(["CD3E"], ["CD3D"]).missing == ["CD3E"]
    assert synonyms_of("FCGR3B") == ("CD16",)


@pytest.mark.parametrize("isoform", ["CD45RA", "CD45RO"])
def test_isoforms_are_not_gene_resolvable(isoform):
    assert resolve_names([isoform], ["PTPRC", "CD45"]).missing == [isoform]
    assert not entry_for(isoform).gene_resolvable
    assert "PTPRC" in note_for(isoform)
    assert note_for("CD45") == ""


@pytest.mark.parametrize(
    ("typed", "panel_name"),
    [("CD14", "CD194"), ("CD19", "CD194"), ("CD79A", "CD7"), ("CD1C", "CD11c"), ("CDH5", "CD5"),
     ("C1QB", "CD11b"), ("CDH1", "CD71"), ("FOXJ1", "FOXP3"), ("CD11b", "CD11c"), ("CD79A", "CD79B"),
     ("CD45RA", "CD45"), ("TNFRSF13B", "TNFSF13B"), ("CD8", "CD28"), ("SERPINA1", "SERPINB1"),
     ("PDGFRA", "PDGFRB"), ("HLA-DRA", "HLA-DQA"), ("Synaptophysen", "Synaptophysin")],
)
def test_never_suggests_another_protein(typed, panel_name):
    assert suggest_markers(typed, [panel_name, "UNRELATED"]) == []


@pytest.mark.parametrize(
    ("typed", "panel", "expected"),
    [
        ("pax5", ["PAX5", "PAX6"], "PAX5"),  # case
        ("HLADR", ["HLA-DR", "HLA-DQ"], "HLA-DR"),  # separators
        ("CD45", ["PTPRC", "PTPRD"], "PTPRC"),  # synonym
        ("PanCK", ["Pan-Cytokeratin", "CK7"], "Pan-Cytokeratin"),
        ("CD3", ["CD3E", "CD33"], "CD3E"),
        ("PTRPC", ["PTPRC", "PTPRD"], "PTPRC"),  # swapped letters
        ("PTRPC", ["CD45", "CD4"], "CD45"),  # swapped letters of a synonym
        ("NKGG7", ["NKG7"], "NKG7"),  # doubled letter
        ("Vimentn", ["Vimentin", "CD3"], "Vimentin"),  # a dropped letter in a word-like protein name
        ("Podoplannin", ["Podoplanin"], "Podoplanin"),  # an added one
    ],
)
def test_suggests_case_fixes_synonyms_and_typos(typed, panel, expected):
    assert suggest_markers(typed, panel) == [expected]


def test_docs_list_every_row_of_the_table():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "marker-names.md").read_text()
    listed = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    for entry in synonym_table():
        assert ", ".join(entry.names) in listed, f"docs/marker-names.md lacks the row for {entry.names}"
