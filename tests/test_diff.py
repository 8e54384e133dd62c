"""ctr diff: changed labels, the first gate whose outcome differs, and the parameter behind it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ctr.report.diff import diff_runs
from fixtures_rundir import write_rundir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("diff")
    return (write_rundir(base / "run_v1", with_h5ad=False),
            write_rundir(base / "run_v2", min_coverage_l0=0.3, with_h5ad=False))


def test_diff_pinpoints_a_threshold_change(runs):
    text = diff_runs(*runs)
    assert "1 of 5 clusters changed label or stop reason" in text
    assert "unassigned clusters 1 -> 0 (cells 30 -> 0)" in text
    assert "stop reason changes: no_root_passed -> no_child_passed: 1" in text
    assert "gating.level_defaults.0.min_coverage: 0.5 -> 0.3 (ruleset -> cli)" in text
    assert "cluster 2: Unassigned -> Epithelium (stop no_root_passed -> no_child_passed)" in text
    # step 3 of cluster 2 is Epithelium's coverage gate, the first whose outcome differs
    assert ("first differing gate (step 3): coverage gate of Epithelium (coverage) at level 0: "
            "0.40 >= 0.50 failed") in text
    assert "explained by: gating.level_defaults.0.min_coverage" in text


def test_diff_of_a_run_with_itself_is_empty(runs):
    text = diff_runs(runs[0], runs[0])
    assert "0 of 5 clusters changed" in text and "Changed clusters:\n  none" in text


def test_clusters_in_only_one_run_are_reported(runs, tmp_path):
    clipped = write_rundir(tmp_path / "clipped", with_h5ad=False)
    table = pd.read_csv(clipped / "cluster_annotations.csv", dtype={"cluster": str})
    table.loc[table["cluster"] != "4"].to_csv(clipped / "cluster_annotations.csv", index=False)
    text = diff_runs(runs[0], clipped)
    assert "clusters only in run A: 4" in text


def test_json_diff(runs):
    data = json.loads(diff_runs(*runs, fmt="json"))
    (change,) = data["changed"]
    assert change["first_difference"]["gate"] == "coverage"
    assert [p["key"] for p in change["first_difference"]["explained_by"]] == ["gating.level_defaults.0.min_coverage"]


def test_real_runs_differing_in_min_coverage(tmp_path):
    from fixtures_rundir import write_real_run

    before = write_real_run(tmp_path / "run_v1")
    after = write_real_run(tmp_path / "run_v2", gating_params={"level_defaults": {"0": {"min_coverage": 0.4}}})
    text = diff_runs(before, after)
    assert "gating.level_defaults.0.min_coverage: 0.6 -> 0.4 (ruleset -> cli)" in text
    # cluster 5 has 2 of 4 epithelial markers on: coverage 0.50 fails 0.6 and passes 0.4
    assert "cluster 5: Unassigned -> Epithelium (stop no_root_passed -> no_child_passed)" in text
    assert "coverage gate of Epithelium (coverage) at level 0: 0.50 >= 0.60 failed" in text
    assert "-> 0.50 >= 0.40 passed; rule cli, from cli" in text
    assert "1 of 7 clusters changed" in text


def test_run_context_is_not_reported_as_a_parameter(pbmc_h5ad, tmp_path):
    # run2 reruns run1's output with one changed parameter: that is the only parameter difference
    from ctr.cli import main

    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(run1), "--no-report",
                 "--skip-refinement"]) == 0
    assert main(["annotate", str(run1 / "output.h5ad"), "--annotation-only", "--output-dir", str(run2), "--no-report",
                 "--skip-refinement", "--scoring-params", '{"anti_weight": 0.9}']) == 0
    data = json.loads(diff_runs(run1, run2, "json"))
    assert [p["key"] for p in data["params"] if not p["key"].startswith("ruleset.")] == ["scoring.anti_weight"]
    assert all(not p["key"].startswith("clustering.timings") and p["key"] != "pipeline.output_dir"
               for p in data["provenance"])
