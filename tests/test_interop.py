"""Other tools' marker files: read as they are, imported, exported, and the reference tool's formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_file
from ctr.cli import main
from ctr.lang import compile_ruleset, load_ruleset
from ctr.lang.exporters import WRITERS
from ctr.lang.importers import PARSERS, detect
from ctr.rules.lint import lint
from ctr.lang.plan_file import load_plan

GARNETT = """\
>B cells
expressed: CD19, MS4A1
not expressed: CD3E
references: https://example.org/1

>T cells
expressed: CD3E, CD3D

>CD8 T cells
expressed: CD8A
subtype of: T cells
"""

SCIMAP = """\
,,CD45,ASMA,CD3D,CD20,CD4,CD8A
all,Immune,pos,,,,,
all,Stroma,neg,pos,,,,
Immune,T cells,,,pos,,,
Immune,B cells,,,,pos,,
T cells,Double positive,,,,,allpos,allpos
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _compile_ok(path):
    result = compile_ruleset(path)
    assert result.ok, [d.header() for d in result.errors]
    return result


def test_garnett_file_reads_as_a_ruleset_with_its_hierarchy_negatives_and_references(tmp_path):
    result = _compile_ok(_write(tmp_path, "pbmc.txt", GARNETT))
    rs = result.ruleset
    assert [n.path_str for n in rs.walk()] == ["B cells", "T cells", "T cells / CD8 T cells"]
    b = rs.node("B cells")
    assert b.marker_names == ["CD19", "MS4A1"] and b.anti_names == ["CD3E"]
    assert b.cite == ["https://example.org/1"]
    assert rs.node("T cells / CD8 T cells").loc.line == 9
    # 'not expressed' is approximated (anti-marker, not a training-set exclusion): reported at its line
    losses = [d for d in result.diagnostics if d.code == "CTR230"]
    assert [d.loc.line for d in losses] == [3]


def test_garnett_subtype_of_an_undefined_type_is_a_located_error(tmp_path):
    result = compile_ruleset(_write(tmp_path, "bad.txt", ">A\nexpressed: X\nsubtype of: Nope\n"))
    assert not result.ok
    assert any(d.code == "CTR231" and d.loc.line == 1 and "Nope" in d.message for d in result.errors)


@pytest.mark.parametrize("name, tool", [
    ("garnett_pbmc_test.txt", "garnett"), ("celesta_prior_marker_info.csv", "celesta"),
    ("celesta_prior_with_thresholds.csv", "celesta"), ("scyan_aml_default.csv", "scyan"),
    ("scimap_phenotype_workflow.csv", "scimap"), ("astir_jackson_2020_markers.yml", "astir"),
])
def test_every_shared_file_is_recognised_compiles_and_lints_without_errors(name, tool):
    path = shared_file(f"rulesets-by-others/{name}")
    assert detect(path.read_text(), str(path)) == tool
    rs = _compile_ok(path).ruleset
    assert not [d for d in lint(rs) if d.level == "error"]
    assert rs.cell_type_count >= 4


def test_celesta_rounds_become_the_tree_and_zero_means_anti():
    rs = _compile_ok(shared_file("rulesets-by-others/celesta_prior_marker_info.csv")).ruleset
    tregs = rs.node(("immune cells", "CD3+ T cells", "CD4+ T cells", "Tregs"))
    assert tregs.marker_names == ["FOXP3"]
    assert "CD45RO" in tregs.anti_names and "CD4" not in tregs.anti_names  # NA is "don't care"
    assert [n.name for n in rs.roots] == ["vasculature", "tumor cells", "aSMA+ stroma", "lymphatics", "immune cells"]


def test_astir_cell_states_and_hierarchy_groups():
    rs = _compile_ok(shared_file("rulesets-by-others/astir_jackson_2020_markers.yml")).ruleset
    assert [s.name for s in rs.states] == ["RTK_signalling", "proliferation", "mTOR_signalling", "apoptosis"]
    assert rs.states[1].marker_names == ["Ki-67", "phospho Histone"]
    lymph = rs.node(("immune cells", "lymphocytes"))
    assert [c.name for c in lymph.children] == ["B cells", "T cells"] and lymph.marker_names == ["CD45"]
    assert rs.node("stromal").marker_names == ["Vimentin", "Fibronectin"]


def test_astir_lints_clean_against_its_own_marker_names():
    import yaml

    path = shared_file("rulesets-by-others/astir_jackson_2020_markers.yml")
    data = yaml.safe_load(path.read_text())
    panel = sorted({m for ms in list(data["cell_types"].values()) + list(data["cell_states"].values()) for m in ms})
    rs = _compile_ok(path).ruleset
    problems = [d for d in lint(rs, panel) if d.level in ("error", "warning")]
    assert not problems, [d.header() for d in problems]


def _scimap_reference(values: dict[str, float], rows) -> str:
    """scimap's documented rule for one cell, written out independently of the importer."""
    def score(cats):
        parts = []
        for cat, ms in cats.items():
            v = [values[m] for m in ms]
            parts.append({"pos": sum(v) / len(v), "neg": sum(1 - x for x in v) / len(v),
                          "allpos": (max(v) + 0.01) if min(v) >= 0.5 else 0.01}[cat])
        return sum(parts) / len(parts)

    label, group = None, "all"
    while True:
        members = [(name, score(cats)) for g, name, cats in rows if g == group]
        if not members:
            return label
        best = max(members, key=lambda m: m[1])  # first of equals, as idxmax
        if best[1] < 0.5:
            return label
        label = group = best[0]


def test_scimap_workflow_conditions_reproduce_scimaps_rule_cell_by_cell(tmp_path):
    """Each cell its own cluster: the imported conditions give scimap's label for every cell."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from ctr import api

    rows = [("all", "Immune", {"pos": ["CD45"]}), ("all", "Stroma", {"neg": ["CD45"], "pos": ["ASMA"]}),
            ("Immune", "T cells", {"pos": ["CD3D"]}), ("Immune", "B cells", {"pos": ["CD20"]}),
            ("T cells", "Double positive", {"allpos": ["CD4", "CD8A"]})]
    markers = ["CD45", "ASMA", "CD3D", "CD20", "CD4", "CD8A"]
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(400, len(markers)))
    adata = ad.AnnData(x, var=pd.DataFrame(index=markers))
    adata.obs["cell"] = pd.Categorical([str(i) for i in range(adata.n_obs)])
    result = api.annotate(adata, _write(tmp_path, "flow.csv", SCIMAP), cluster_key="cell", skip_refinement=True)
    expected = [_scimap_reference(dict(zip(markers, row)), rows) or "Unassigned" for row in x]
    got = result.cell_labels["label"].astype(str).tolist()
    assert got == expected


def test_import_markers_writes_each_spelling_with_source_comments_and_refuses_to_overwrite(tmp_path, capsys):
    src = _write(tmp_path, "pbmc.txt", GARNETT)
    for suffix in (".ctr", ".yaml", ".json"):
        out = tmp_path / f"out{suffix}"
        assert main(["import-markers", str(src), "--from", "auto", "--output", str(out)]) == 0
        text = out.read_text()
        back = load_ruleset(out)
        assert back.canonical()["roots"] == load_ruleset(src).canonical()["roots"]
        if suffix == ".json":
            assert json.loads(json.loads(text)["_marker_map_metadata"]["sources"])["T cells / CD8 T cells"] == "from pbmc.txt:9"
        else:
            assert text.count("# from pbmc.txt:") == 3 and "# from pbmc.txt:9" in text
    err = capsys.readouterr().err
    assert "CTR230" in err and "loss report: 1 approximation" in err
    before = (tmp_path / "out.ctr").read_text()
    assert main(["import-markers", str(src), "--from", "garnett", "--output", str(tmp_path / "out.ctr")]) == 1
    assert "already exists" in capsys.readouterr().err and (tmp_path / "out.ctr").read_text() == before
    assert main(["import-markers", str(src), "--from", "garnett", "--output", str(tmp_path / "out.ctr"), "--force"]) == 0


def test_import_markers_auto_refuses_a_file_it_cannot_place(tmp_path, capsys):
    src = _write(tmp_path, "notes.txt", "just some words\n")
    assert main(["import-markers", str(src), "--from", "auto", "--output", str(tmp_path / "o.ctr")]) == 1
    assert "cannot tell which tool" in capsys.readouterr().err
    assert not (tmp_path / "o.ctr").exists()


# ---- export --to and round trips -------------------------------------------------------------

ROUND = """\
ruleset round
type Immune {
  markers CD45
  anti EPCAM
  type "T cells" { markers CD3E, CD3D  anti CD19 }
  type "B cells" { markers CD19, MS4A1 }
}
type Epithelium { markers EPCAM, KRT8 }
"""


@pytest.mark.parametrize("tool, suffix", [("garnett", "txt"), ("celesta", "csv")])
def test_markers_anti_markers_and_hierarchy_survive_a_round_trip(tmp_path, tool, suffix):
    src = load_ruleset(_write(tmp_path, "r.ctr", ROUND))
    text, losses = WRITERS[tool](src)
    back = _compile_ok(_write(tmp_path, f"back.{suffix}", text)).ruleset
    shape = lambda rs: [(n.path, n.marker_names, sorted(n.anti_names)) for n in rs.walk()]  # noqa: E731
    assert shape(back) == shape(src)
    assert losses == []


def test_scyan_round_trip_of_a_flat_ruleset_and_the_flattening_is_reported(tmp_path):
    flat = load_ruleset(_write(tmp_path, "f.ctr", 'type A { markers X, Y anti Z }\ntype B { markers Z }\n'))
    text, losses = WRITERS["scyan"](flat)
    back = _compile_ok(_write(tmp_path, "back.csv", text)).ruleset
    assert [(n.name, n.marker_names, n.anti_names) for n in back.walk()] == [("A", ["X", "Y"], ["Z"]), ("B", ["Z"], [])]
    _, losses = WRITERS["scyan"](load_ruleset(_write(tmp_path, "r.ctr", ROUND)))
    assert any("flat" in msg for msg in losses)


def test_scimap_export_reimports_to_the_same_workflow(tmp_path):
    # negatives come back as `when` conditions (scimap's exact rule), not anti-markers: positive markers round-trip
    positive_only = ROUND.replace("  anti EPCAM\n", "").replace("  anti CD19", "")
    src = load_ruleset(_write(tmp_path, "r.ctr", positive_only))
    assert not any(n.anti for n in src.walk()) and src.cell_type_count == 4
    text, losses = WRITERS["scimap"](src)
    again, _ = WRITERS["scimap"](_compile_ok(_write(tmp_path, "w.csv", text)).ruleset)
    assert again == text
    assert any("rescale" in msg for msg in losses)


def test_ct_ref_export_round_trips_with_states_and_root_gates(tmp_path):
    text = ROUND.replace('type Epithelium { markers EPCAM, KRT8 }', 'type Epithelium { markers EPCAM, KRT8 require EPCAM pos_frac >= 0.5 }')
    text += 'state Cycling { markers MKI67 applies_to Immune excludes "Immune / B cells" }\n'
    src = load_ruleset(_write(tmp_path, "r.ctr", text))
    out, losses = WRITERS["ct-ref"](src)
    data = json.loads(out)
    assert list(data)[0] == "_marker_map_metadata" and "subtypes" in data["Immune"]
    assert data["_cell_state_markers"]["states"]["Cycling"]["rules"][0]["scope"]["include"] == ["Immune"]
    back = _compile_ok(_write(tmp_path, "back.json", out)).ruleset
    assert back.canonical() == src.canonical()
    assert losses == []


def test_export_markers_to_cli_reports_losses_and_refuses_to_overwrite(tmp_path, capsys):
    src = _write(tmp_path, "r.ctr", ROUND.replace("markers EPCAM, KRT8", "markers EPCAM, KRT8 when pos_frac(EPCAM) > 0.5"))
    out = tmp_path / "m.txt"
    assert main(["export-markers", "--ruleset", str(src), "--to", "garnett", "--output", str(out)]) == 0
    assert "conditions" in capsys.readouterr().err and out.read_text().startswith(">Immune")
    assert main(["export-markers", "--ruleset", str(src), "--to", "garnett", "--output", str(out)]) == 1
    assert main(["export-markers", "--ruleset", str(src), "--to", "garnett", "--output", str(out), "--force"]) == 0


# ---- the reference tool's own formats --------------------------------------------------------

CT_REF_MAP = {
    "_marker_map_metadata": {"version": "1.0", "tissue": "fallopian tube", "description": "FT panel"},
    "_gating_params": {"root_hard_requirements": {"Epithelium": {"marker": "EPCAM", "min_pos_frac": 0.3}}},
    "_cell_state_markers": {"states": {
        "Proliferating": {"markers": ["Ki67"], "description": "cycling", "applies_to": "all immune and epithelial cells",
                          "rules": [{"rule_id": "p1", "scope": {"include": ["Immune/T cells", "Epithelium"], "match": "prefix",
                                                                "exclude": ["Epithelium/Ciliated"], "exclude_match": "prefix"}}]},
        "Exhausted": {"markers": ["PD-1", "LAG3"], "rules": [{"rule_id": "e1", "scope": {"include": ["*"], "match": "all"}}]},
    }},
    "_notes_for_me": "anything",
    "Epithelium": {"markers": ["EPCAM", "KRT8"], "subtypes": {"Ciliated": {"markers": ["FOXJ1"]}}},
    "Immune": {"markers": ["CD45"], "anti_markers": ["EPCAM"], "subtypes": {"T cells": {"markers": ["CD3E"]}}},
    "Old placeholder": {"subtypes": {}},
}


def test_reference_tool_marker_map_runs_unchanged(tmp_path):
    from ctr.rules.states import scope_paths

    result = compile_ruleset(_write(tmp_path, "map.json", json.dumps(CT_REF_MAP, indent=2)))
    assert result.ok
    rs = result.ruleset
    assert rs.meta["tissue"] == "fallopian tube" and rs.meta["version"] == "1.0"
    warned = {d.code: d for d in result.diagnostics if d.level == "warning"}
    assert "_notes_for_me" in warned["CTR238"].message and "Old placeholder" in warned["CTR239"].message
    assert [n.name for n in rs.roots] == ["Epithelium", "Immune"]
    assert rs.node("Epithelium").requires[0].marker == "EPCAM"
    prolif, exhausted = rs.states
    assert prolif.description == "cycling; all immune and epithelial cells"
    assert scope_paths(rs, prolif) == {("Immune", "T cells"), ("Epithelium",)}
    assert scope_paths(rs, exhausted) == {n.path for n in rs.walk()}


def test_reference_tool_refinement_plan_reads_into_the_same_model_as_ours(tmp_path):
    theirs = _write(tmp_path, "plan.yaml", """\
version: "1.0"
iteration: 2
overrides:
  - {cluster_id: "3", cell_type: "My_Cell_Type", reason: "why"}
merge:
  - {source_clusters: ["5", "6"], target_label: "Combined", reason: "why"}
subcluster:
  - {cluster_id: "12", resolution: 0.3, reason: "why"}
""")
    ours = _write(tmp_path, "ours.yaml", """\
override: [{cluster: "3", label: "My_Cell_Type", reason: "why"}]
merge: [{clusters: ["5", "6"], label: "Combined", reason: "why"}]
subcluster: [{cluster: "12", resolution: 0.3, reason: "why"}]
""")
    a, b = load_plan(theirs), load_plan(ours)
    assert a.model_dump(exclude={"version", "iteration"}) == b.model_dump(exclude={"version", "iteration"})
    assert (a.version, a.iteration) == ("1.0", 2)


def test_merge_with_a_target_label_sets_that_label(pbmc_h5ad):
    import anndata as ad

    from ctr import api

    adata = ad.read_h5ad(pbmc_h5ad)
    plan = {"merge": [{"source_clusters": ["0", "1"], "target_label": "Combined", "reason": "test"}]}
    result = api.annotate(adata, "pbmc", cluster_key="louvain", refinement_plan=plan)
    row = result.clusters.set_index("cluster").loc["0"]
    assert row["final_annotation"] == "Combined"
    assert set(result.cell_labels.loc[adata.obs["louvain"].isin(["0", "1"]).to_numpy(), "label"]) == {"Combined"}


def test_every_importer_is_pure_text_in_document_out():
    for tool, parse in PARSERS.items():
        doc = parse("", f"empty.{tool}")
        assert doc.file == f"empty.{tool}"


def test_annotate_reads_a_garnett_file_directly_and_prints_its_loss_report(tmp_path, pbmc_h5ad, capsys):
    src = _write(tmp_path, "pbmc.txt", GARNETT)
    out = tmp_path / "run"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", str(src), "--annotation-only", "--cluster-key", "louvain",
                 "--output-dir", str(out), "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "CTR230" in printed and "not expressed" in printed
    assert (out / "cluster_annotations.csv").exists()


def test_marker_map_metadata_is_kept_with_the_run_and_shown_in_the_report(tmp_path, pbmc_h5ad):
    map_ = {"_marker_map_metadata": {"version": "2.1", "tissue": "blood", "description": "PBMC panel"},
            "T cells": {"markers": ["CD3E", "CD3D"]}, "B cells": {"markers": ["MS4A1", "CD79A"]}}
    src = _write(tmp_path, "map.json", json.dumps(map_))
    out = tmp_path / "run"
    assert main(["annotate", str(pbmc_h5ad), "--marker-map", str(src), "--annotation-only", "--cluster-key", "louvain",
                 "--output-dir", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["ruleset"]["metadata"] == {"version": "2.1", "tissue": "blood", "description": "PBMC panel"}
    html = (out / "report.html").read_text()
    assert "version 2.1, tissue blood" in html and "PBMC panel" in html


def test_unit_cell_never_moves_a_cell_into_a_type_whose_conditions_fail_on_it(tmp_path):
    """One cluster stopped at 'Immune'; each cell may only descend where the child's condition holds."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from ctr import api

    text = ('threshold CD45 >= 0.5\nthreshold CD3 >= 0.5\nthreshold CD20 >= 0.5\nlevel 1 { min_coverage 0 min_enrichment -10 }\n'
            'type Immune { markers CD45\n  type T { markers CD3 when mean(CD3) >= 0.5 }\n'
            '  type B { markers CD20 when mean(CD20) >= 0.5 } }\n')
    rng = np.random.default_rng(0)
    n = 300
    x = np.column_stack([rng.uniform(0.8, 1.0, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)])
    adata = ad.AnnData(x, var=pd.DataFrame(index=["CD45", "CD3", "CD20"]))
    adata.obs["cluster"] = pd.Categorical(["0"] * n)
    result = api.annotate(adata, _write(tmp_path, "r.ctr", text), cluster_key="cluster", unit="cell", skip_refinement=True)
    labels = result.cell_labels["label"].to_numpy()
    moved_t, moved_b = labels == "T", labels == "B"
    assert moved_t.any() and moved_b.any()
    assert (x[moved_t, 1] >= 0.5).all() and (x[moved_b, 2] >= 0.5).all()
    neither = (x[:, 1] < 0.5) & (x[:, 2] < 0.5)
    assert set(labels[neither]) <= {"Immune"}
