"""Default parameters on synthetic panels of known truth (benchmarks/synthetic_panels.py): a
MIBI-like, a flow-like and an IMC-like panel, each annotated with a marker map written from textbook
immunophenotypes (benchmarks/rulesets_synthetic/) and its impure given clusters. Per-cell lineage
accuracy must stay within a stated margin of the cluster oracle (the best any per-cluster label
could do with these clusters). Small panels, seconds each; docs/accuracy.md has the full table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_panels import PANELS, evaluate_panel, generate  # noqa: E402

N_CELLS = 3000
SEEDS = (0, 1, 2)
# Margins to the cluster oracle with default parameters, at worst over the seeds and on average.
# All three panels reach the oracle at these seeds; the MIBI-like panel lost 0.09 at seed 0 before
# background counts at detection level were told from stained cells (docs/accuracy.md,
# "Synthetic panels of known truth").
MARGIN = {"mibi": 0.02, "flow": 0.01, "imc": 0.02}
MEAN_MARGIN = {"mibi": 0.01, "flow": 0.005, "imc": 0.01}


@pytest.fixture(scope="module")
def panels():
    return {(name, seed): generate(name, N_CELLS, seed) for name in PANELS for seed in SEEDS}


def _gaps(panels, name, params=None):
    gaps = []
    for seed in SEEDS:
        _, evaluation = evaluate_panel(name, panels[name, seed], params=params)
        gaps.append(evaluation.overall["oracle_gap"])
    return gaps


@pytest.mark.parametrize("name", list(PANELS))
def test_defaults_reach_the_cluster_oracle(panels, name):
    gaps = _gaps(panels, name)
    assert max(gaps) <= MARGIN[name], gaps
    assert sum(gaps) / len(gaps) <= MEAN_MARGIN[name], gaps


@pytest.mark.parametrize(("name", "params"), [
    # the first release's positivity (a quantile of the non-zero values) on zero-inflated counts
    # with a keratin-high tumour majority: the failure of the issue that asked for these panels
    ("mibi", {"scoring": {"positivity": "quantile"}}),
    ("imc", {"scoring": {"positivity": "quantile"}}),
    # flow and IMC lineages hold under any positivity rule tried (quantile, one gate for every
    # marker): strong markers and clean clusters; a root gate no textbook map meets still shows
    ("flow", {"gating": {"level_defaults": {"0": {"min_coverage": 1.0}}}}),
])
def test_the_margins_catch_a_wrong_rule(panels, name, params):
    gaps = _gaps(panels, name, params)
    assert max(gaps) > MARGIN[name] or sum(gaps) / len(gaps) > MEAN_MARGIN[name], gaps


def test_panels_have_the_properties_they_imitate(panels):
    import numpy as np

    mibi, flow, imc = (panels[name, 0] for name in ("mibi", "flow", "imc"))
    x = np.asarray(mibi.X)
    assert (x == 0).mean() > 0.5  # counts: most cell x marker values are zero
    assert 0.60 <= (mibi.obs["truth"] == "Tumour").mean() <= 0.70  # the tumour majority
    y = np.asarray(flow.X)
    assert (y < 0).mean() > 0.1 and (y == 0).mean() == 0  # negatives, no true zeros
    shares = flow.obs["population"].value_counts(normalize=True)
    assert 0.02 <= shares["Non-classical monocyte"] <= 0.05 and 0.02 <= shares["Myeloid DC"] <= 0.05
    assert list(imc.var_names[-2:]) == ["DNA1", "DNA2"]
    # impure clusters: the given clusters are not the truth
    for adata in (mibi, flow, imc):
        top = adata.obs.groupby("cluster", observed=True)["truth"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
        assert 0.75 < top.mean() < 0.97


def test_explain_says_which_evidence_settled_a_near_tie(panels):
    # seed 0: a CD36+ fibroblast cluster scores within min_gap of endothelium (both list vimentin);
    # the markers only one of them lists settle it, and explain must not claim the margin was enough
    result, _ = evaluate_panel("mibi", panels["mibi", 0])
    settled = result.trace[result.trace.gate == "tie_break"]
    assert settled.statistic.tolist() == ["distinct_coverage"]
    (line,) = [ln for ln in result.explain(str(settled.cluster.iloc[0])).splitlines() if "Level 0" in ln]
    assert "Fibroblasts chosen: margin 0.20 < min_gap 0.25, but its coverage on the markers that tell them apart" in line
    assert ">= min_gap" not in line
