"""`ctr evaluate` and `ctr.evaluate`: figures on hand-built cells whose answers are known, the
mapping file, and one real run on pbmc68k_reduced."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ctr.cli import main
from ctr.errors import InputError, ParameterError
from ctr.evaluation import evaluate_labels
from ctr.evaluation_io import as_mapping, load_mapping

pytestmark = pytest.mark.filterwarnings("ignore")

NODES = [("T",), ("T", "CD4"), ("T", "CD8"), ("B",), ("Myeloid",), ("Myeloid", "Mono")]


def cells(rows):
    """rows of (truth, label, path, cluster, count) -> four per-cell arrays."""
    out = {"truth": [], "label": [], "path": [], "cluster": []}
    for truth, label, path, cluster, count in rows:
        for key, value in zip(out, (truth, label, path, cluster)):
            out[key] += [value] * count
    return out["truth"], out["label"], out["path"], out["cluster"]


# 20 cells; every outcome is present and every figure can be counted by hand
ROWS = [
    ("CD4", "CD4", "T / CD4", "0", 6),    # correct
    ("CD4", "T", "T", "0", 2),            # stopped at the parent: correct ancestor
    ("CD8", "CD4", "T / CD4", "0", 2),    # wrong sibling
    ("B", "B", "B", "1", 4),              # correct
    ("B", "Unassigned", "Unassigned", "1", 1),
    ("Mono", "B~Myeloid", "B~Myeloid", "2", 3),  # ambiguous root
    ("Mono", "Mono", "Myeloid / Mono", "2", 2),  # correct
]


def test_every_figure_on_hand_counted_cells():
    ev = evaluate_labels(*cells(ROWS), NODES)
    o = ev.overall
    assert o["n_cells"] == 20
    assert o["accuracy"] == pytest.approx(12 / 20)
    assert o["ancestor_share"] == pytest.approx(2 / 20)
    assert o["hierarchical_agreement"] == pytest.approx(14 / 20)
    assert o["wrong_share"] == pytest.approx(2 / 20)
    assert o["unassigned_share"] == pytest.approx(1 / 20)
    assert o["ambiguous_share"] == pytest.approx(3 / 20)
    # oracle: cluster 0 -> CD4 (8 of 10), cluster 1 -> B (5), cluster 2 -> Mono (5)
    assert o["cluster_oracle"] == pytest.approx(18 / 20)
    assert o["oracle_gap"] == pytest.approx(6 / 20)
    per = ev.per_class.set_index("name")
    # CD4: 6 correct of 8; 8 cells were predicted on CD4's path (6 + the 2 CD8 cells)
    assert per.loc["CD4", "recall"] == pytest.approx(6 / 8)
    assert per.loc["CD4", "precision"] == pytest.approx(6 / 8)
    assert per.loc["CD8", "recall"] == 0 and per.loc["CD8", "n_predicted"] == 0
    assert per.loc["B", "precision"] == 1 and per.loc["B", "recall"] == pytest.approx(4 / 5)
    assert per.loc["Mono", "recall"] == pytest.approx(2 / 5) and per.loc["Mono", "oracle"] == 1
    f1 = {"CD4": 0.75, "CD8": 0.0, "B": 2 * 0.8 / 1.8, "Mono": 2 * 0.4 / 1.4}
    assert o["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert ev.outcomes.value_counts().to_dict() == {"correct": 12, "ancestor": 2, "wrong": 2, "ambiguous": 3, "unassigned": 1}
    matrix = ev.confusion_matrix()
    assert matrix.loc["CD4", "T"] == 2 and matrix.loc["CD8", "CD4"] == 2 and matrix.loc["Mono", "B~Myeloid"] == 3
    assert int(matrix.to_numpy().sum()) == 20


def test_level_cuts_predictions_and_targets():
    ev = evaluate_labels(*cells(ROWS), NODES, level=0)
    # at the roots CD4/CD8/T all become T: 10 correct; B 4; Mono 2 -> 16 of 20
    assert ev.overall["accuracy"] == pytest.approx(16 / 20)
    assert ev.overall["ancestor_share"] == 0
    assert ev.overall["cluster_oracle"] == pytest.approx(20 / 20)


def test_mapping_to_coarser_types_lists_and_exclusions():
    truth, label, path, cluster = cells([
        ("naive CD4", "CD4", "T / CD4", "0", 3),
        ("memory CD8", "CD4", "T / CD4", "0", 1),   # right lineage, wrong subtype: correct at lineage level
        ("monocyte", "Mono", "Myeloid / Mono", "1", 2),
        ("junk", "B", "B", "1", 5),                 # left out by the mapping
        ("stroma", "B", "B", "2", 2),               # matches nothing: always wrong
    ])
    mapping = as_mapping({"naive CD4": "T", "memory CD8": "T", "monocyte": ["Mono", "B"], "junk": None})
    ev = evaluate_labels(truth, label, path, cluster, NODES, mapping=mapping)
    assert ev.overall["n_cells"] == 8 and ev.overall["n_excluded"] == 5
    assert ev.overall["accuracy"] == pytest.approx(6 / 8)
    assert ev.unmatched_truth == ["stroma"]
    assert any(d.code == "CTR714" for d in ev.diagnostics)
    per = ev.per_class.set_index("name")
    assert per.loc["T", "n_cells"] == 4 and per.loc["T", "recall"] == 1
    assert per.loc["Mono | B", "recall"] == 1
    assert per.loc["stroma", "recall"] == 0
    # the oracle cannot name stroma either: cluster 2 gets nothing right
    assert ev.overall["cluster_oracle"] == pytest.approx(6 / 8)


def test_unmatched_label_suggests_the_type_it_names():
    # spelling alone would offer 'CD123+ HSPCs' for a label that names the HSCs type in full
    from ctr.evaluation import targets_for

    nodes = [("HSPC",), ("HSPC", "HSCs"), ("HSPC", "CD123+ HSPCs"), ("T",), ("T", "CD4+ T Cells")]
    nodes += [("T Cells",)]
    _, diags = targets_for(["CD34+CD38lo HSCs", "CD4 T cells", "tumor cells"], nodes)
    (diag,) = diags
    assert "'CD34+CD38lo HSCs' (did you mean 'HSCs'?)" in diag.message
    assert "'CD4 T cells' (did you mean 'CD4+ T Cells'?)" in diag.message
    assert "'tumor cells'," in diag.message or diag.message.endswith("'tumor cells'")  # not 'T Cells'



def test_names_match_without_a_mapping_ignoring_case():
    ev = evaluate_labels(["cd4", "b"], ["CD4", "B"], ["T / CD4", "B"], ["0", "1"], NODES)
    assert ev.overall["accuracy"] == 1 and ev.unmatched_truth == []


def test_mapping_file_errors_are_located(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("T cells: T\nmonocytes: Monoo\n")
    mapping = load_mapping(bad)
    with pytest.raises(ParameterError) as exc:
        evaluate_labels(["T cells"], ["T"], ["T"], ["0"], NODES, mapping=mapping)
    diag = exc.value.diagnostics[0]
    assert diag.code == "CTR712" and (diag.loc.line, diag.loc.column) == (2, 12) and "did you mean 'Mono'" in diag.message
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParameterError) as exc:
        load_mapping(bad)
    assert exc.value.diagnostics[0].code == "CTR711"
    bad.write_text("T cells: {nested: 1}\n")
    with pytest.raises(ParameterError) as exc:
        load_mapping(bad)
    assert exc.value.diagnostics[0].loc.line == 1
    with pytest.raises(InputError):
        load_mapping(tmp_path / "absent.yaml")


def test_table_has_overall_rows_then_classes():
    table = evaluate_labels(*cells(ROWS), NODES).table()
    overall = table.loc[table["kind"] == "overall"].set_index("name")["value"]
    assert overall["accuracy"] == pytest.approx(0.6) and math.isnan(overall["level"])
    assert list(table.loc[table["kind"] == "class", "name"]) == ["CD4", "B", "Mono", "CD8"]


# --- a real run ----------------------------------------------------------------------------------

PBMC_LINEAGE = """\
"CD4+/CD45RA+/CD25- Naive T": T Cells
"CD4+/CD45RO+ Memory": T Cells
"CD4+/CD25 T Reg": T Cells
"CD8+ Cytotoxic T": T Cells
"CD8+/CD45RA+ Naive Cytotoxic": T Cells
"CD19+ B": B Cells
"CD56+ NK": NK Cells
"CD14+ Monocyte": Myeloid Cells
"Dendritic": Myeloid Cells
"CD34+": HSPCs
"""


@pytest.fixture(scope="module")
def pbmc_run(pbmc_h5ad, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--annotation-only", "--cluster-key", "louvain",
                 "--skip-refinement", "--output-dir", str(out)]) == 0
    return out


def test_cli_on_a_pbmc_run(pbmc_run, tmp_path, capsys):
    mapping = tmp_path / "lineage.yaml"
    mapping.write_text(PBMC_LINEAGE)
    capsys.readouterr()
    assert main(["evaluate", str(pbmc_run), "--truth", "reference_labels", "--mapping", str(mapping)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "cluster oracle" in out
    table = pd.read_csv(pbmc_run / "evaluation.csv")
    overall = table.loc[table["kind"] == "overall"].set_index("name")["value"]
    # louvain clusters of pbmc68k: the pbmc ruleset must keep lineage agreement >= 0.90 (docs/accuracy.md)
    assert overall["accuracy"] >= 0.90
    assert overall["cluster_oracle"] >= overall["accuracy"]
    html = (pbmc_run / "report.html").read_text()
    assert 'id="accuracy"' in html and "Confusion matrix" in html


def test_cli_errors_without_traceback(pbmc_run, tmp_path, capsys):
    assert main(["evaluate", str(pbmc_run), "--truth", "reference_label"]) == 1
    err = capsys.readouterr().err
    assert "reference_labels" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text('"CD19+ B": B Celz\n')
    assert main(["evaluate", str(pbmc_run), "--truth", "reference_labels", "--mapping", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1:12: CTR712" in err and "B Cells" in err
    assert main(["evaluate", str(tmp_path), "--truth", "x"]) == 1
    assert "output.h5ad" in capsys.readouterr().err


def test_python_api_on_a_result_and_on_anndata(pbmc_h5ad):
    import anndata as ad

    import ctr

    adata = ad.read_h5ad(pbmc_h5ad)
    result = ctr.annotate(adata, "pbmc", cluster_key="louvain", skip_refinement=True)
    truth = adata.obs["reference_labels"]
    mapping = {k.strip('"'): v.strip() for k, v in (line.split('": ') for line in PBMC_LINEAGE.splitlines())}
    from_result = ctr.evaluate(result, truth.to_numpy(), mapping=mapping)
    from_adata = ctr.evaluate(adata, "reference_labels", mapping=mapping)
    pd.testing.assert_series_equal(pd.Series(from_result.overall), pd.Series(from_adata.overall))
    assert from_result.overall["accuracy"] >= 0.90
    with pytest.raises(ParameterError):
        ctr.evaluate(result, "reference_labels")


def test_cells_without_a_reference_label_are_left_out():
    ev = evaluate_labels(["B", None, float("nan"), "", "B"], ["B"] * 5, ["B"] * 5, ["0"] * 5, NODES)
    assert ev.overall["n_cells"] == 2 and ev.overall["n_excluded"] == 3 and ev.overall["accuracy"] == 1
    assert ev.unmatched_truth == [] and list(ev.per_class["name"]) == ["B"]


def test_report_hides_an_evaluation_of_an_earlier_run(pbmc_run, tmp_path):
    import shutil

    from ctr.report import load_run, render_report

    run = shutil.copytree(pbmc_run, tmp_path / "run")
    assert main(["evaluate", str(run), "--truth", "reference_labels"]) == 0
    assert "Confusion matrix" in render_report(load_run(run))
    # the run is annotated again into the same directory: the old evaluation must not be shown as its
    params = run / "params.json"
    params.write_text(params.read_text().replace("{", '{"rerun": 1, ', 1))
    html = render_report(load_run(run))
    assert "Confusion matrix" not in html and "earlier run" in html
