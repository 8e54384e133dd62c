"""ctr diff: changed labels, the first gate whose outcome differs, and the parameter behind it."""

from __future__ import annotations

import json

import pandas as pd

from ctr.report.diff import diff_runs
from ctr.report.rundir_view import load_run


def test_diff_pinpoints_a_threshold_change(real_run, real_run_lower_coverage):
    text = diff_runs(real_run, real_run_lower_coverage)
    assert "gating.level_defaults.0.min_coverage: 0.6 -> 0.4 (ruleset -> cli)" in text
    # cluster 5 has 2 of 4 epithelial markers on: coverage 0.50 fails 0.6 and passes 0.4
    assert "1 of 7 clusters changed label or stop reason" in text
    assert "unassigned clusters 2 -> 1 (cells 120 -> 60)" in text
    assert "stop reason changes: no_root_passed -> no_child_passed: 1" in text
    assert "cluster 5: Unassigned -> Epithelium (stop no_root_passed -> no_child_passed)" in text
    trace = load_run(real_run).trace_of("5")
    step = trace[(trace.cell_type == "Epithelium") & (trace.gate == "coverage")].step.iloc[0]
    assert (f"first differing gate (step {step}): coverage gate of Epithelium (coverage) at level 0: "
            "0.50 >= 0.60 failed; rule ") in text
    assert "-> 0.50 >= 0.40 passed; rule cli, from cli" in text
    assert "explained by: gating.level_defaults.0.min_coverage: 0.6 -> 0.4" in text


def test_diff_of_a_run_with_itself_is_empty(real_run):
    text = diff_runs(real_run, real_run)
    assert "0 of 7 clusters changed" in text and "Changed clusters:\n  none" in text


def test_clusters_in_only_one_run_are_reported(real_run, tmp_path):
    import shutil

    clipped = tmp_path / "clipped"
    shutil.copytree(real_run, clipped)
    table = pd.read_csv(clipped / "cluster_annotations.csv", dtype={"cluster": str})
    table.loc[table["cluster"] != "4"].to_csv(clipped / "cluster_annotations.csv", index=False)
    text = diff_runs(real_run, clipped)
    assert "clusters only in run A: 4" in text


def test_json_diff(real_run, real_run_lower_coverage):
    data = json.loads(diff_runs(real_run, real_run_lower_coverage, fmt="json"))
    (change,) = data["changed"]
    first = change["first_difference"]
    assert (first["gate"], first["param_key"]) == ("coverage", "gating.level_defaults.0.min_coverage")
    assert [p["key"] for p in first["explained_by"]] == ["gating.level_defaults.0.min_coverage"]


def test_run_context_is_not_reported_as_a_parameter(pbmc_h5ad, tmp_path):
    # run2 reruns run1's output with one changed parameter: that is the only parameter difference
    from ctr.cli import main

    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(run1), "--no-report",
                 "--skip-refinement"]) == 0
    assert main(["annotate", str(run1 / "output.h5ad"), "--annotation-only", "--output-dir", str(run2), "--no-report",
                 "--skip-refinement", "--scoring-params", '{"anti_weight": 0.9}']) == 0
    data = json.loads(diff_runs(run1, run2, "json"))
    # the same ruleset (same hash) read from the package, then from run1's stored copy: no difference
    assert [p["key"] for p in data["params"]] == ["scoring.anti_weight"]
    assert all(not p["key"].startswith("clustering.timings") and p["key"] != "pipeline.output_dir"
               for p in data["provenance"])
    # run1 clustered, run2 reused those clusters: one line, not one "-> (absent)" per clustering fact
    clustering = [p for p in data["provenance"] if p["key"].startswith("clustering")]
    assert [(p["key"], p["after"]) for p in clustering] == [("clustering", "reused the input's clusters")]
    # run2 kept run1's ruleset without naming it again: not "pipeline.ruleset: pbmc -> (absent)"
    assert not [p for p in data["provenance"] if p["key"] == "pipeline.ruleset"]
    # nor the --scoring-params text beside the parameter it set
    assert not [p for p in data["provenance"] if p["key"] == "pipeline.scoring_params"]
