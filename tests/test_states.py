"""Cell states: declared in every spelling, called per cluster and per cell, written and explained."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ctr import api
from ctr.cli import main
from ctr.lang import compile_ruleset, export_text, load_ruleset

RULES = """\
threshold CD45 >= 0.5
threshold CD3 >= 0.5
threshold CD19 >= 0.5
threshold Ki67 >= 0.5
type Immune {
  markers CD45
  type "T cells" { markers CD3 }
  type "B cells" { markers CD19 }
}
state Proliferating {
  markers Ki67
  applies_to "Immune / T cells"
  description "in cycle"
}
"""


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.ctr"
    path.write_text(RULES)
    return path


def _data(seed: int = 0) -> ad.AnnData:
    """Three clusters of 100 cells: cycling T cells (Ki67 high in 90%), resting T cells, cycling B cells."""
    rng = np.random.default_rng(seed)
    blocks, clusters = [], []
    for name, cd3, cd19, ki67_share in (("t_cyc", 1, 0, 0.9), ("t_rest", 1, 0, 0.0), ("b_cyc", 0, 1, 0.9)):
        n = 100
        ki67 = (rng.uniform(size=n) < ki67_share) * rng.uniform(0.7, 1.0, n) + rng.uniform(0, 0.2, n)
        x = np.column_stack([rng.uniform(0.7, 1.0, n), cd3 * rng.uniform(0.7, 1.0, n) + rng.uniform(0, 0.2, n),
                             cd19 * rng.uniform(0.7, 1.0, n) + rng.uniform(0, 0.2, n), ki67])
        blocks.append(x)
        clusters += [name] * n
    adata = ad.AnnData(np.vstack(blocks), var=pd.DataFrame(index=["CD45", "CD3", "CD19", "Ki67"]))
    adata.obs["cluster"] = pd.Categorical(clusters)
    return adata


@pytest.mark.parametrize("fmt", ["ctr", "yaml", "json"])
def test_a_state_means_the_same_in_every_spelling(rules, tmp_path, fmt):
    rs = load_ruleset(rules)
    path = tmp_path / f"again.{fmt}"
    path.write_text(export_text(rs, fmt))
    again = load_ruleset(path)
    assert again.canonical() == rs.canonical()
    (state,) = again.states
    assert (state.name, state.marker_names, state.applies_to, state.description) == (
        "Proliferating", ["Ki67"], ["Immune / T cells"], "in cycle")


def test_a_state_naming_an_unknown_type_is_a_located_error(tmp_path):
    path = tmp_path / "bad.ctr"
    path.write_text('type A { markers X }\nstate S { markers Y applies_to "A / Nope" }\n')
    result = compile_ruleset(path)
    (err,) = result.errors
    assert err.code == "CTR236" and err.loc.line == 2 and "A / Nope" in err.message


def test_states_are_called_per_cluster_within_their_scope_and_per_cell(rules):
    adata = _data()
    result = api.annotate(adata, rules, cluster_key="cluster", skip_refinement=True)
    calls = result.states.set_index("cluster")
    assert calls.loc["t_cyc", "called"] and calls.loc["t_cyc", "applies"]
    assert calls.loc["t_rest", "applies"] and not calls.loc["t_rest", "called"]
    # cycling B cells carry Ki67 but the state applies to T cells only
    assert not calls.loc["b_cyc", "applies"] and not calls.loc["b_cyc", "called"]
    per_cell = adata.obs["ctr_state_Proliferating"].to_numpy()
    ki67_pos = adata[:, "Ki67"].X.ravel() >= 0.5
    in_t = adata.obs["cluster"].isin(["t_cyc", "t_rest"]).to_numpy()
    assert per_cell.dtype == bool
    assert np.array_equal(per_cell, ki67_pos & in_t)
    assert set(adata.obs["ctr_states"]) == {"Proliferating", ""}
    # the trace rows of a state are gate rows, as for a type
    rows = result.state_trace.loc[result.state_trace["cluster"] == "t_rest"]
    assert list(rows["gate"]) == ["coverage", "enrichment"] and not rows["passed"].iloc[0]
    assert set(rows["kind"]) == {"state"}
    assert rows["reason"].iloc[0].startswith("coverage 0.00 < 0.34") and rows["reason"].iloc[1].startswith("mean enrichment")


def test_states_reach_the_run_directory_explain_and_report(rules, tmp_path):
    src = tmp_path / "in.h5ad"
    _data().write_h5ad(src)
    out = tmp_path / "run"
    assert main(["annotate", str(src), "--ruleset", str(rules), "--annotation-only", "--cluster-key", "cluster",
                 "--skip-refinement", "--output-dir", str(out)]) == 0
    calls = pd.read_csv(out / "state_calls.csv", dtype={"cluster": str})
    assert set(calls.loc[calls["called"], "cluster"]) == {"t_cyc"}
    assert (out / "state_steps.csv").exists()
    written = ad.read_h5ad(out / "output.h5ad")
    assert "ctr_state_Proliferating" in written.obs and "ctr_states" in written.uns["ctr"]["obs_keys"]
    from ctr.report import explain_run

    text = explain_run(out, ["t_cyc", "t_rest"])
    assert "state Proliferating: called" in text and "state Proliferating: not called" in text
    data = json.loads(explain_run(out, ["t_cyc"], "json"))
    assert data[0]["states"][0]["state"] == "Proliferating" and data[0]["states"][0]["called"]
    assert "Cell states" in (out / "report.html").read_text()


def test_a_run_without_states_writes_no_state_files(tmp_path):
    path = tmp_path / "r.ctr"
    path.write_text(RULES.split("state")[0])
    adata = _data()
    result = api.annotate(adata, path, cluster_key="cluster", skip_refinement=True)
    assert result.states.empty and not any(c.startswith("ctr_state") for c in adata.obs)
    run = result.write(tmp_path / "run")
    assert not (run / "state_calls.csv").exists()


def test_reference_tool_cell_state_markers_are_called(tmp_path):
    adata = _data()
    map_ = {"_marker_map_metadata": {"version": "1.0"}, "_thresholds": {m: ">= 0.5" for m in ("CD45", "CD3", "CD19", "Ki67")},
            "_cell_state_markers": {"states": {"Proliferating": {
                "markers": ["Ki67"], "rules": [{"rule_id": "r", "scope": {"include": ["Immune"], "match": "prefix",
                                                                         "exclude": ["Immune/B cells"]}}]}}},
            "Immune": {"markers": ["CD45"], "subtypes": {"T cells": {"markers": ["CD3"]}, "B cells": {"markers": ["CD19"]}}}}
    path = tmp_path / "map.json"
    path.write_text(json.dumps(map_))
    result = api.annotate(adata, path, cluster_key="cluster", skip_refinement=True)
    calls = result.states.set_index("cluster")
    assert bool(calls.loc["t_cyc", "called"]) and not bool(calls.loc["b_cyc", "applies"])
