"""ctr explain: every claim is read from the trace, with the rule location that decided."""

from __future__ import annotations

import json

import pytest

from ctr.errors import InputError
from ctr.report.explain import explain_run
from fixtures_rundir import LEVEL0, REQUIRE_PTPRC, VETO_PTPRC, write_rundir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_rundir(tmp_path_factory.mktemp("explain") / "run", with_h5ad=False)


def test_unassigned_cluster_names_closest_root_and_its_failed_gate(run_dir):
    text = explain_run(run_dir, ["2"])
    assert "Cluster 2 (30 cells) is Unassigned" in text
    assert "Closest top-level type: Epithelium, failed coverage" in text
    assert f"coverage: 0.40 >= 0.50 FAILED (rule {LEVEL0}" in text
    # the closest root only lacks coverage: lowering min_coverage to the observed value would pass it
    assert "needs coverage >= 0.50 (is 0.40), i.e. min_coverage <= 0.40 at level 0" in text


def test_vetoed_root_cites_the_veto_line(run_dir):
    text = explain_run(run_dir, ["3"])
    assert f"veto PTPRC pos_frac: 0.60 <= 0.25 FAILED (rule {VETO_PTPRC}" in text
    assert "path: Immune > T cell" in text


def test_failed_requirement_cites_the_require_line(run_dir):
    text = explain_run(run_dir, ["2"])
    assert f"requirement PTPRC pos_frac: 0.21 >= 0.40 FAILED (rule {REQUIRE_PTPRC}" in text


def test_ambiguous_stop_gives_margin_gap_votes_and_refinement(run_dir):
    text = explain_run(run_dir, ["1"])
    assert "too close to call: Secretory Epithelium 1.14, Ciliated Epithelium 1.10; margin 0.04 < min_gap 0.30" in text
    assert "Ciliated Epithelium lost to Secretory Epithelium by 0.04 at level 1; needs min_gap <= 0.04 at level 1" in text
    # to win outright Ciliated needs the 0.04 deficit plus the 0.30 gap
    assert "a score 0.34 higher (1.10 vs 1.14)" in text
    assert "per-cell votes: Secretory Epithelium 42%, Ciliated Epithelium 38%, Uncertain 20%" in text
    assert "iteration 1: relabel" in text


def test_runner_up_that_failed_a_gate_needs_that_gate(run_dir):
    text = explain_run(run_dir, ["3"])
    assert "B cell lost to T cell by 1.70 at level 1; needs coverage >= 0.40 (is 0.00)" in text


def test_all_clusters_by_default_and_formats(run_dir):
    text = explain_run(run_dir)
    assert [line.split()[1] for line in text.splitlines() if line.startswith("Cluster ")] == ["0", "1", "2", "3", "4"]
    md = explain_run(run_dir, ["1"], fmt="markdown")
    assert md.startswith("## Cluster 1: Epithelium")
    assert "| Ciliated Epithelium | 1.10 | passed |" in md
    data = json.loads(explain_run(run_dir, ["3"], fmt="json"))
    assert data[0]["label"] == "T cell" and data[0]["confidence"] == "inf"
    vetoed = [c for c in data[0]["levels"][0]["candidates"] if c["cell_type"] == "Epithelium"][0]
    assert [g["rule_loc"] for g in vetoed["gates"] if not g["passed"]] == [VETO_PTPRC]


def test_unknown_cluster_lists_valid_ids(run_dir):
    with pytest.raises(InputError, match=r"unknown cluster id\(s\) '7'; valid ids: 0, 1, 2, 3, 4"):
        explain_run(run_dir, ["7"])


def test_not_a_run_directory_names_missing_files(tmp_path):
    (tmp_path / "params.json").write_text("{}")
    with pytest.raises(InputError, match="missing cluster_annotations.csv, decision_steps.csv or decision_steps.jsonl"):
        explain_run(tmp_path)


# --- a real run of the engine ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from fixtures_rundir import write_real_run

    return write_real_run(tmp_path_factory.mktemp("real") / "run")


def test_real_run_cites_the_require_line_for_a_failed_requirement(real_run):
    from fixtures_rundir import REAL_REQUIRE_LINE, REAL_VETO_LINE

    ruleset = real_run.parent / "tiny.ctr"
    text = explain_run(real_run, ["1"])  # epithelial cluster without EPCAM
    assert "is Unassigned" in text and "Closest top-level type: Epithelium" in text
    assert f"requirement EPCAM pos_frac: 0.00 >= 0.50 FAILED (rule {ruleset}:{REAL_REQUIRE_LINE}:" in text
    assert f"{ruleset}:{REAL_VETO_LINE}:" not in text  # its veto passed


def test_real_run_cites_the_veto_line_for_a_vetoed_type(real_run):
    from fixtures_rundir import REAL_VETO_LINE

    ruleset = real_run.parent / "tiny.ctr"
    text = explain_run(real_run, ["2"])  # epithelial markers plus PTPRC
    assert "Cluster 2 (60 cells) is Immune" in text
    assert f"veto PTPRC pos_frac: 1.00 <= 0.25 FAILED (rule {ruleset}:{REAL_VETO_LINE}:" in text
    assert f"set at {ruleset}:{REAL_VETO_LINE}:" in text  # the near miss: Epithelium needs the veto lifted


def test_real_run_ambiguous_cluster_has_gap_and_votes(real_run):
    text = explain_run(real_run, ["4"])
    assert "two or more subtypes scored too close to call" in text
    assert "needs min_gap <= " in text and "at level 1 (now 0.30;" in text
    assert "per-cell votes: " in text and "Uncertain" in text


def test_in_memory_result_explains_like_the_run_directory(real_run):
    from ctr.api import annotate
    from ctr.lang import load_ruleset
    from fixtures_rundir import real_adata

    result = annotate(real_adata(), load_ruleset(str(real_run.parent / "tiny.ctr")), cluster_key="cluster",
                      scoring_params={"positive_quantile": 0.1}, skip_refinement=True)
    assert result.explain("2") == explain_run(real_run, ["2"])
