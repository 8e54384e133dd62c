"""`ctr demo`: the full pipeline on scanpy's pbmc68k_reduced, and its agreement with the data's
reference labels, printed next to the cluster oracle and shown in the report."""

from __future__ import annotations

import pandas as pd
import pytest

from ctr.cli import main
from ctr.pipeline import DEMO_MAPPING, DEMO_TRUTH, RunSummary

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    import contextlib
    import io

    run_dir = tmp_path_factory.mktemp("demo") / "ctr-demo"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--output-dir", str(run_dir)]) == 0
    return run_dir, out.getvalue()


def _figures(text: str, what: str) -> tuple[float, float]:
    line = next(line for line in text.splitlines() if line.strip().startswith(what))
    words = line.split()
    return float(words[words.index("accuracy") + 1]), float(words[words.index("oracle") + 1])


@pytest.mark.slow
def test_demo_prints_its_agreement_through_ctr_evaluate(demo_run, capsys):
    run_dir, text = demo_run
    assert f"agreement with the demo's reference labels (obs['{DEMO_TRUTH}']" in text
    lineage, fine = _figures(text, "lineage"), _figures(text, "fine")
    # the printed fine-level figures are what `ctr evaluate` says about the run directory
    assert main(["evaluate", str(run_dir), "--truth", DEMO_TRUTH, "--mapping", str(DEMO_MAPPING)]) == 0
    assert _figures(capsys.readouterr().out, "accuracy") == fine
    assert main(["evaluate", str(run_dir), "--truth", DEMO_TRUTH, "--mapping", str(DEMO_MAPPING), "--level", "0"]) == 0
    assert _figures(capsys.readouterr().out, "accuracy") == lineage
    # the bar at lineage level (T, B, NK, myeloid, HSPC); the oracle bounds what rules can do
    assert lineage[0] >= 0.90
    # and within 0.05 of the fine-level oracle (CD4 T, CD8 T, NK, B, monocyte, DC, HSPC): every
    # cluster gets the subtype most of its cells have in the reference (0.567 when the mapping took
    # the reference's "CD14+ Monocyte" and "CD19+ B" for the subtypes it has no class beside)
    assert fine[0] >= fine[1] - 0.05
    assert lineage[0] <= lineage[1] + 1e-9 and fine[0] <= fine[1] + 1e-9
    assert "Accuracy" in (run_dir / "report.html").read_text()


def test_summary_says_how_many_labels_it_leaves_out():
    labels = [f"Type {i}" for i in range(15)]
    clusters = pd.DataFrame({"cluster": [str(i) for i in range(15)], "final_annotation": labels,
                             "n_cells": list(range(100, 115))})
    text = RunSummary(run_dir="run", clusters=clusters, n_cells=sum(range(100, 115))).describe()
    assert "into 15 labels" in text
    assert sum(1 for line in text.splitlines() if line.strip().startswith("Type ")) == 12
    assert "(+3 more labels, 303 cells: see cluster_annotations.csv)" in text


def test_summary_with_unit_cell_counts_the_cells_own_labels():
    clusters = pd.DataFrame({"cluster": ["0", "1"], "final_annotation": ["T Cells", "B Cells"], "n_cells": [3, 2]})
    cells = pd.Series(["CD4+ T Cells", "CD8+ T Cells", "T Cells", "B Cells", "B Cells"])
    text = RunSummary(run_dir="run", clusters=clusters, n_cells=5, cell_labels=cells, unit="cell").describe()
    assert "into 4 labels (each cell's own label: --unit cell)" in text
    assert "CD8+ T Cells" in text


def test_summary_with_unit_cell_points_at_the_cells_labels_for_the_rest():
    # the cluster table cannot list labels only single cells carry: the summary must not send the user there
    clusters = pd.DataFrame({"cluster": ["0"], "final_annotation": ["T Cells"], "n_cells": [14]})
    cells = pd.Series([f"T subtype {i}" for i in range(14)])
    text = RunSummary(run_dir="run", clusters=clusters, n_cells=14, cell_labels=cells, unit="cell").describe()
    assert "(+2 more labels, 2 cells: see the cells' labels in output.h5ad)" in text
