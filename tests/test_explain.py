"""ctr explain: every claim is read from the trace, with the rule location that decided.

The run is the real engine's on a small synthetic input (tests/real_run.py); the numbers a test
expects are read from that run's own tables, the locations from its ruleset file."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from real_run import REAL_REQUIRE_LINE, REAL_VETO_LINE

from ctr.engine.trace import Step
from ctr.errors import InputError
from ctr.report.explain import explain_run
from ctr.report.rundir_view import load_run


def rows(run_dir, cluster: str, **where) -> list[Step]:
    """The trace rows of ``cluster`` whose columns equal ``where``."""
    trace = load_run(run_dir).trace_of(cluster)
    for column, value in where.items():
        trace = trace[trace[column] == value]
    return [Step.from_record(r) for r in trace.to_dict("records")]


def ruleset_file(run_dir) -> str:
    return str(run_dir.parent / "tiny.ctr")


def test_unassigned_cluster_names_closest_root_and_its_failed_gate(real_run):
    # cluster 5 expresses 2 of Epithelium's 4 markers: coverage 0.50 against the ruleset's 0.6
    (cov,) = rows(real_run, "5", cell_type="Epithelium", gate="coverage")
    assert not cov.passed and cov.param_key == "gating.level_defaults.0.min_coverage" and cov.layer == "ruleset"
    text = explain_run(real_run, ["5"])
    assert "Cluster 5 (60 cells) is Unassigned" in text
    assert "Closest top-level type: Epithelium, failed coverage" in text
    assert f"coverage: {cov.observed:.2f} >= {cov.threshold:.2f} FAILED (rule {ruleset_file(real_run)}:2:" in text
    # lowering min_coverage to the observed value would pass it
    assert f"needs coverage >= 0.60 (is {cov.observed:.2f}), i.e. min_coverage <= {cov.observed:.2f} at level 0" in text


def test_failed_requirement_cites_the_require_line(real_run):
    text = explain_run(real_run, ["1"])  # epithelial cluster without EPCAM
    assert "is Unassigned" in text and "Closest top-level type: Epithelium" in text
    (req,) = rows(real_run, "1", gate="requirement", statistic="pos_frac")
    assert (req.marker, req.scope, req.line) == ("EPCAM", "marker", REAL_REQUIRE_LINE)
    assert (f"requirement EPCAM pos_frac: {req.observed:.2f} >= 0.50 FAILED "
            f"(rule {ruleset_file(real_run)}:{REAL_REQUIRE_LINE}:") in text
    assert f"{ruleset_file(real_run)}:{REAL_VETO_LINE}:" not in text  # its veto passed


def test_vetoed_type_cites_the_veto_line_and_the_near_miss_names_it(real_run):
    text = explain_run(real_run, ["2"])  # epithelial markers plus PTPRC
    assert "Cluster 2 (60 cells) is Immune" in text and "path: Immune" in text
    (veto,) = rows(real_run, "2", gate="veto", cell_type="Epithelium")
    assert f"veto PTPRC pos_frac: {veto.observed:.2f} <= 0.25 FAILED (rule {ruleset_file(real_run)}:{REAL_VETO_LINE}:" in text
    assert f"Epithelium lost to Immune" in text and f"set at {ruleset_file(real_run)}:{REAL_VETO_LINE}:" in text


def test_ambiguous_stop_gives_margin_gap_and_votes(real_run):
    (sel,) = rows(real_run, "4", kind="select", gate="ambiguous")
    leader, second = sel.candidates.split(";")
    text = explain_run(real_run, ["4"])
    assert "two or more subtypes scored too close to call" in text
    assert f"margin {sel.observed:.2f} < min_gap {sel.threshold:.2f}" in text
    assert (f"{second} lost to {leader} by {sel.observed:.2f} at level 1; needs min_gap <= {sel.observed:.2f} "
            f"at level 1 (now {sel.threshold:.2f};") in text
    composition = load_run(real_run).cluster_row("4")["vote_composition"]
    shares = dict(part.rsplit(":", 1) for part in composition.split(";"))
    assert "per-cell votes: " + ", ".join(f"{k} {float(v):.0%}" for k, v in shares.items()) in text


def test_all_clusters_by_default_and_formats(real_run):
    text = explain_run(real_run)
    ids = [line.split()[1] for line in text.splitlines() if line.startswith("Cluster ")]
    assert ids == load_run(real_run).cluster_ids == ["0", "1", "2", "3", "4", "5", "6"]
    md = explain_run(real_run, ["4"], fmt="markdown")
    assert md.startswith("## Cluster 4: Epithelium")
    scores = pd.read_csv(real_run / "gating_details.csv", dtype={"cluster": str}).query("cluster == '4'")
    ciliated = scores.set_index("cell_type").loc["Ciliated", "score"]
    assert f"| Ciliated | {ciliated:.2f} | passed |" in md
    data = json.loads(explain_run(real_run, ["2"], fmt="json"))
    assert data[0]["label"] == "Immune" and data[0]["confidence"] == "inf"
    vetoed = [c for c in data[0]["levels"][0]["candidates"] if c["cell_type"] == "Epithelium"][0]
    failed = [g for g in vetoed["gates"] if not g["passed"]]
    assert [(g["gate"], g["marker"], g["file"], g["line"]) for g in failed] == [
        ("veto", "PTPRC", ruleset_file(real_run), REAL_VETO_LINE)]


def test_unknown_cluster_lists_valid_ids(real_run):
    with pytest.raises(InputError, match=r"unknown cluster id\(s\) '7'; valid ids: 0, 1, 2, 3, 4, 5, 6"):
        explain_run(real_run, ["7"])


def test_not_a_run_directory_names_missing_files(tmp_path):
    (tmp_path / "params.json").write_text("{}")
    with pytest.raises(InputError, match="missing cluster_annotations.csv, decision_steps.csv or decision_steps.jsonl"):
        explain_run(tmp_path)


def test_in_memory_result_explains_like_the_run_directory(real_run):
    from real_run import real_adata

    from ctr.api import annotate
    from ctr.lang import load_ruleset

    result = annotate(real_adata(), load_ruleset(ruleset_file(real_run)), cluster_key="cluster", tissue="fallopian_tube",
                      scoring_params={"positive_quantile": 0.1}, skip_refinement=True)
    assert result.explain("2") == explain_run(real_run, ["2"])


def test_reason_column_is_the_rows_in_words(real_run):
    """decision_steps.csv keeps a reason per row, rendered from the row's own values."""
    from ctr.report.sentences import reasons

    trace = load_run(real_run).trace
    assert trace["reason"].tolist() == reasons(trace)
    (cov,) = rows(real_run, "5", cell_type="Epithelium", gate="coverage")
    written = trace[(trace.cluster == "5") & (trace.cell_type == "Epithelium") & (trace.gate == "coverage")].reason.iloc[0]
    assert written.startswith(f"coverage {cov.observed:.2f} < {cov.threshold:.2f}: 2 of 4 measured markers on (EPCAM, KRT8)")
    assert written.endswith(f"(rule {cov.location})")


def test_a_trace_frame_reads_as_its_records_do(real_run):
    # the report reads whole traces column by column; each row must read as from_record reads it
    trace = load_run(real_run).trace
    by_record = [Step.from_record(r) for r in trace.to_dict("records")]
    assert len(trace) > 10 and repr(Step.from_frame(trace)) == repr(by_record)
    text = trace.astype(str)  # every column as text, as a hand-edited CSV might hold it
    assert repr(Step.from_frame(text)) == repr([Step.from_record(r) for r in text.to_dict("records")])
