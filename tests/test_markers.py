"""Marker resolution (ctr.rules.markers) and panel files (ctr.data.panel)."""

from pathlib import Path

import anndata
import numpy as np
import pytest

from ctr.data.panel import read_panel
from ctr.errors import InputError
from ctr.rules.markers import normalize, resolve_markers, resolve_names
from ctr.rules.nomenclature import synonym_table
from ctr.rules.model import Alias, CellType, MarkerRef, Ruleset, assign_paths


def _ruleset(markers, aliases=()):
    root = CellType(name="A", markers=[MarkerRef(name=m) for m in markers])
    assign_paths([root])
    return Ruleset(name="t", roots=[root], aliases=[Alias(canonical=c, synonyms=list(s)) for c, s in aliases])


def test_exact_beats_case_and_alias():
    res = resolve_names(["CD45"], ["cd45", "CD45", "PTPRC"])
    assert res.mapping == {"CD45": "CD45"} and res.how == {"CD45": "exact"}


def test_case_insensitive():
    res = resolve_names(["epcam"], ["EPCAM"])
    assert res.mapping == {"epcam": "EPCAM"} and res.how["epcam"] == "case"


def test_ruleset_alias_both_directions():
    aliases = [("PTPRC", ["CD45"])]
    # canonical in the ruleset, synonym in the panel
    res = resolve_markers(_ruleset(["PTPRC"], aliases), ["CD45", "CD3"])
    assert res.mapping == {"PTPRC": "CD45"} and res.how["PTPRC"] == "alias"
    # synonym in the ruleset, canonical in the panel
    res = resolve_markers(_ruleset(["CD45"], aliases), ["PTPRC"])
    assert res.mapping == {"CD45": "PTPRC"} and res.how["CD45"] == "alias"


def test_ruleset_alias_between_two_synonyms_and_case():
    res = resolve_markers(_ruleset(["panck"], [("Pan-Cytokeratin", ["PanCK", "KRT_mix"])]), ["krt_mix"])
    assert res.mapping == {"panck": "krt_mix"} and res.how["panck"] == "alias"


def test_ruleset_alias_wins_over_builtin():
    # the builtin table says CD45 = PTPRC; the ruleset says CD45 is the panel's "LCA-647"
    res = resolve_markers(_ruleset(["CD45"], [("CD45", ["LCA-647"])]), ["PTPRC", "LCA-647"])
    assert res.mapping == {"CD45": "LCA-647"} and res.how["CD45"] == "alias"


@pytest.mark.parametrize(
    ("marker", "panel", "expected"),
    [
        ("CD45", ["PTPRC"], "PTPRC"),
        ("PTPRC", ["CD45"], "CD45"),
        ("MS4A1", ["CD20"], "CD20"),
        ("PECAM1", ["CD31"], "CD31"),
        ("ACTA2", ["aSMA"], "aSMA"),
        ("alpha-SMA", ["ACTA2"], "ACTA2"),
        ("CDH1", ["E-cadherin"], "E-cadherin"),
        ("PanCK", ["Pan-Cytokeratin"], "Pan-Cytokeratin"),
        ("Pan-CK", ["Cytokeratin"], "Cytokeratin"),
        ("GZMB", ["Granzyme B"], "Granzyme B"),
        ("MKI67", ["Ki67"], "Ki67"),
        ("HLA-DRA", ["HLA-DR"], "HLA-DR"),
        ("JCHAIN", ["IGJ"], "IGJ"),
        ("ACKR1", ["DARC"], "DARC"),
        ("COL4A1", ["Collagen IV"], "Collagen IV"),
        ("ptprc", ["cd45"], "cd45"),
    ],
)
def test_builtin_synonyms(marker, panel, expected):
    res = resolve_names([marker], panel + ["UNRELATED"])
    assert res.mapping == {marker: expected}
    assert res.how[marker] == "builtin_alias"


def test_normalized_last_step():
    res = resolve_names(["HLA_DQ", "Pan.CK.2", "CD45RO"], ["HLADQ", "PanCK2", "CD45"])
    assert res.mapping == {"HLA_DQ": "HLADQ", "Pan.CK.2": "PanCK2"}
    assert set(res.how.values()) == {"normalized"}
    # CD45RO is an isoform, never the pan-CD45 channel
    assert res.missing == ["CD45RO"]


def test_missing_and_table_order():
    res = resolve_markers(_ruleset(["FOXJ1", "EPCAM", "NOPE"]), ["EPCAM", "FOXJ1"])
    assert res.missing == ["NOPE"]
    assert res.table() == [
        {"marker": "FOXJ1", "panel_name": "FOXJ1", "how": "exact"},
        {"marker": "EPCAM", "panel_name": "EPCAM", "how": "exact"},
        {"marker": "NOPE", "panel_name": None, "how": "missing"},
    ]


def test_synonym_table_has_no_name_twice():
    seen = {}
    for entry in synonym_table():
        for name in entry.names + entry.genes:
            assert normalize(name) not in seen, f"{name} is in {seen.get(normalize(name))} and {entry}"
            seen[normalize(name)] = entry


def test_read_panel_text(tmp_path: Path):
    path = tmp_path / "panel.txt"
    path.write_text("# my panel\nCD3, CD4 ,CD8\n\nHLA-DR  # the MHC-II channel\nCD3\n")
    assert read_panel(path) == ["CD3", "CD4", "CD8", "HLA-DR"]


def test_read_panel_h5ad(tmp_path: Path):
    adata = anndata.AnnData(np.zeros((3, 2), dtype=np.float32))
    adata.var_names = ["CD45", "Pan-CK"]
    path = tmp_path / "p.h5ad"
    adata.write_h5ad(path)
    assert read_panel(path) == ["CD45", "Pan-CK"]


def test_read_panel_errors(tmp_path: Path):
    with pytest.raises(InputError, match="not found"):
        read_panel(tmp_path / "absent.txt")
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match=r"bad\.h5ad.*cannot read.*one marker per line"):
        read_panel(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="no marker names"):
        read_panel(empty)
