"""The report reads well for a newcomer: a dot plot that fits its column with visible legends and
a colour scale that shows most markers, confidence without "inf", a spatial map when the data
have positions, and a pointer to `ctr evaluate` when the data carry reference labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from real_run import real_adata

from ctr.api import annotate
from ctr.report.html import write_report
from ctr.report.plots import ENRICHMENT_LIMITS, dot_plot, enrichment_limit

pytestmark = pytest.mark.filterwarnings("ignore")


def _svg_width(svg: str) -> int:
    """The width in px an inline SVG figure is shown at."""
    return int(ET.fromstring(svg).get("width"))


def test_one_extreme_marker_does_not_wash_out_the_colour_scale():
    values = np.r_[np.linspace(-1.2, 1.2, 50), 10.0]
    assert enrichment_limit(values) <= ENRICHMENT_LIMITS[1] < 10
    assert enrichment_limit([0.01, -0.02]) == ENRICHMENT_LIMITS[0]


def test_dot_plot_with_many_markers_fits_the_column():
    markers = [f"GENE{i}" for i in range(48)]
    rows = [f"{i} · Type {i}" for i in range(12)]
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"row": r, "marker": m, "pos_frac": rng.random(), "enrichment": rng.normal()}
                          for r in rows for m in markers])
    figure = ET.fromstring(dot_plot(table, rows, markers))
    assert _svg_width(dot_plot(table, rows, markers)) <= 1100  # the report's column is 1100 px wide
    assert len(figure.findall(".//{http://www.w3.org/2000/svg}circle")) == len(table) + 3  # a dot each, 3 in the legend


def test_dot_plot_shows_the_panels_channels_only():
    # a CODEX panel measures CD3 once; the ruleset names CD3D/CD3E/CD3G and markers the panel lacks
    from ctr.report.html import _positive_evidence

    ev = pd.DataFrame({"marker": ["CD3D", "CD3E", "CD3G", "IL7R", "PTPRC"], "panel_name": ["CD3", "CD3", "CD3", "", "CD45"],
                       "role": ["positive", "positive", "positive", "positive", "anti"],
                       "resolved": [True, True, True, False, True], "pos_frac": [0.9, 0.9, 0.9, None, 0.1]})
    assert list(dict.fromkeys(_positive_evidence(ev)["marker"])) == ["CD3"]


def _run(tmp_path, adata, name="run"):
    from real_run import REAL_RULESET

    rules = tmp_path / "tiny.ctr"
    rules.write_text(REAL_RULESET)
    result = annotate(adata, str(rules), cluster_key="cluster", scoring_params={"positive_quantile": 0.1},
                      skip_refinement=True)
    return result, result.write(tmp_path / name, adata=adata)


def test_confidence_csv_has_no_inf_and_reads_back_as_uncontested(tmp_path):
    from ctr.report.rundir_view import load_run

    result, run = _run(tmp_path, real_adata())
    assert np.isinf(result.clusters["confidence"]).any()  # some cluster is uncontested in this run
    raw = pd.read_csv(run / "cluster_annotations.csv", dtype=str, keep_default_na=False)
    assert not raw["confidence"].str.lower().isin(["inf", "nan", "-inf"]).any()
    assert (raw.loc[raw["uncontested"] == "True", "confidence"] == "").all()
    back = load_run(run).clusters
    uncontested = back["uncontested"].astype(str) == "True"
    assert np.isinf(back.loc[uncontested, "confidence"]).all()
    assert "confidence uncontested" in write_report(run).read_text()


def test_evidence_plot_is_not_in_a_scroll_box(tmp_path):
    _, run = _run(tmp_path, real_adata())
    html = write_report(run).read_text()
    evidence = html[html.index('id="evidence"'):html.index('id="embedding"')]
    assert "scroll" not in evidence and "capped" in evidence


def test_spatial_map_when_the_data_have_positions(tmp_path):
    adata = real_adata()
    assert "Spatial map" not in write_report(_run(tmp_path, adata, "plain")[1]).read_text()
    adata.obsm["spatial"] = np.random.default_rng(0).uniform(0, 1000, size=(adata.n_obs, 2))
    html = write_report(_run(tmp_path, adata, "spatial")[1]).read_text()
    assert "Spatial map" in html and 'alt="spatial map coloured by label"' in html


def test_reference_labels_in_the_data_point_to_ctr_evaluate(tmp_path):
    adata = real_adata()
    adata.obs["cell_type"] = np.where(adata.obs["cluster"].astype(str) == "3", "Immune", "Epithelium")
    html = write_report(_run(tmp_path, adata)[1]).read_text()
    assert "reference labels in obs['cell_type']" in html and "--truth cell_type" in html
