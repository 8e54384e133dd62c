"""The command line as a user meets it: exit codes, messages without tracebacks, run directories."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ctr.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run1(pbmc_h5ad, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run1"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(out), "--random-seed", "0"]) == 0
    return out


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_help_for_every_command(capsys):
    for command in ["annotate", "lint-ruleset", "export-markers", "explain", "report", "diff", "evaluate", "rulesets", "demo"]:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: ctr " + command in capsys.readouterr().out


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["annotate"])
    assert exc.value.code == 2


def test_run_directory_has_every_file(run1):
    for name in ["output.h5ad", "cluster_annotations.csv", "gating_details.csv", "decision_steps.csv",
                 "marker_scores.csv", "marker_evidence.csv", "refinement_log.csv", "params.json",
                 "report.html", "timings.json"]:
        assert (run1 / name).is_file(), name
    params = json.loads((run1 / "params.json").read_text())
    assert params["ruleset"]["name"] == "pbmc"
    assert {"stages", "total"} <= set(json.loads((run1 / "timings.json").read_text()))


def test_marker_splits_of_a_real_panel_in_explain_and_report(run1, capsys):
    """pbmc68k's 50-odd genes: every split listed with its method, drawn on pages of small multiples."""
    import pandas as pd

    table = pd.read_csv(run1 / "marker_thresholds.csv", dtype={"marker": str})
    code, out, _ = run(capsys, "explain", run1, "--markers")
    methods = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert code == 0 and set(methods) == set(table["marker"])
    assert all(f" {m} " in methods[marker] for marker, m in zip(table["marker"], table["threshold_method"]))
    html = (run1 / "report.html").read_text()
    start = html.index('<section id="thresholds">')
    part = html[start:html.index("</section>", start)]
    assert part.count("<svg ") == -(-len(table) // 36)  # pages of at most 6 x 6 panels
    assert all(f"<tr><td>{marker}</td>" in part for marker in table["marker"])


def test_same_seed_gives_identical_outputs(pbmc_h5ad, run1, tmp_path):
    again = tmp_path / "again"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(again), "--random-seed", "0"]) == 0
    for name in ["cluster_annotations.csv", "gating_details.csv", "decision_steps.csv", "marker_scores.csv",
                 "marker_evidence.csv"]:
        assert digest(run1 / name) == digest(again / name), name


def test_annotation_only_reuses_clusters(run1, tmp_path, capsys):
    import anndata as ad

    code, out, err = run(capsys, "annotate", run1 / "output.h5ad", "--annotation-only", "--output-dir", tmp_path / "run2",
                         "--gating-params", '{"level_defaults": {"0": {"min_coverage": 0.35}}}')
    assert code == 0, err
    first = ad.read_h5ad(run1 / "output.h5ad")
    second = ad.read_h5ad(tmp_path / "run2" / "output.h5ad")
    assert (first.obs["cluster_lvl0"].astype(str).to_numpy() == second.obs["cluster_lvl0"].astype(str).to_numpy()).all()
    params = json.loads((tmp_path / "run2" / "params.json").read_text())
    assert params["gating"]["level_defaults"]["0"]["min_coverage"] == 0.35
    assert params["sources"]["gating.level_defaults.0.min_coverage"] == "cli"
    # the ruleset of run1 travels inside output.h5ad
    assert params["ruleset"]["name"] == "pbmc"


def test_input_file_is_never_modified(pbmc_h5ad, tmp_path):
    before = (digest(pbmc_h5ad), os.stat(pbmc_h5ad).st_mtime_ns)
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(tmp_path / "r"),
                 "--annotation-only", "--cluster-key", "louvain", "--no-report"]) == 0
    assert (digest(pbmc_h5ad), os.stat(pbmc_h5ad).st_mtime_ns) == before


def test_non_empty_output_dir_needs_force(pbmc_h5ad, run1, capsys):
    before = digest(run1 / "cluster_annotations.csv")
    code, _, err = run(capsys, "annotate", pbmc_h5ad, "--ruleset", "pbmc", "--output-dir", run1,
                       "--annotation-only", "--cluster-key", "louvain")
    assert code == 1
    assert "--force" in err and "Traceback" not in err
    assert digest(run1 / "cluster_annotations.csv") == before


def test_output_dir_that_is_a_file(pbmc_h5ad, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    code, _, err = run(capsys, "annotate", pbmc_h5ad, "--ruleset", "pbmc", "--output-dir", target,
                       "--annotation-only", "--cluster-key", "louvain")
    assert code == 1 and "a_file" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_bad_json_parameters_show_where(pbmc_h5ad, tmp_path, capsys):
    code, _, err = run(capsys, "annotate", pbmc_h5ad, "--ruleset", "pbmc", "--output-dir", tmp_path / "r",
                       "--annotation-only", "--cluster-key", "louvain",
                       "--gating-params", '{"level_defaults": {"0": {"min_coverage": 0.40}}')
    assert code == 1
    assert "--gating-params" in err and "line 1 column 49" in err


def test_unknown_parameter_lists_valid_keys(pbmc_h5ad, tmp_path, capsys):
    code, _, err = run(capsys, "annotate", pbmc_h5ad, "--ruleset", "pbmc", "--output-dir", tmp_path / "r",
                       "--annotation-only", "--cluster-key", "louvain", "--scoring-params", '{"anti_wieght": 0.8}')
    assert code == 1
    assert "did you mean 'anti_weight'" in err and "positive_quantile" in err


def test_missing_cluster_key_lists_candidates(pbmc_h5ad, tmp_path, capsys):
    code, _, err = run(capsys, "annotate", pbmc_h5ad, "--ruleset", "pbmc", "--output-dir", tmp_path / "r",
                       "--annotation-only", "--cluster-key", "leiden_typo")
    assert code == 1 and "leiden_typo" in err and "louvain" in err


def test_lint_syntax_error_is_located(tmp_path, capsys):
    bad = tmp_path / "bad.ctr"
    bad.write_text('ruleset bad\n\ntype T {\n  markers CD3E, CD2\n  markrs CD4\n}\n')
    code, out, err = run(capsys, "lint-ruleset", bad)
    assert code == 1
    assert f"{bad}:5:3:" in out + err and "Traceback" not in out + err


def test_builtins_lint_clean(capsys):
    for name in ["fallopian_tube", "lung", "tumor_microenvironment", "pbmc", "codex_immune", "bone_marrow_cytof",
                 "hodgkin_lymphoma"]:
        code, out, err = run(capsys, "lint-ruleset", name, "--strict")
        assert code == 0, out + err


def test_rulesets_lists_builtins_and_tissues(capsys):
    code, out, _ = run(capsys, "rulesets")
    assert code == 0
    for name in ["fallopian_tube", "lung", "tumor_microenvironment", "pbmc", "codex_immune", "bone_marrow_cytof",
                 "hodgkin_lymphoma", "oviduct", "bm", "chl"]:
        assert name in out


def test_export_markers_round_trip(tmp_path, capsys):
    from ctr.lang import load_ruleset

    out = tmp_path / "my_tissue_markers.json"
    code, out_text, err = run(capsys, "export-markers", "--output", out)
    assert code == 0, err
    # the default is said, never silently chosen
    assert "no --ruleset given: exporting the default ruleset 'fallopian_tube'" in err
    assert "from ruleset 'fallopian_tube'" in out_text and "site-packages" not in out_text
    assert load_ruleset(str(out)).canonical()["roots"] == load_ruleset("fallopian_tube").canonical()["roots"]


def test_rerun_keeps_the_earlier_preset_unless_dropped(pbmc_h5ad, tmp_path, capsys):
    first, keep, drop = tmp_path / "first", tmp_path / "keep", tmp_path / "drop"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--preset", "conservative", "--annotation-only",
                 "--cluster-key", "louvain", "--output-dir", str(first), "--no-report"]) == 0
    code, out, err = run(capsys, "annotate", first / "output.h5ad", "--annotation-only", "--output-dir", keep,
                         "--no-report", "--scoring-params", '{"de_bonus": 0.5}')
    assert code == 0 and "using preset 'conservative'" in out
    kept = json.loads((keep / "params.json").read_text())
    assert kept["scoring"]["anti_agg"] == "max" and kept["sources"]["scoring.anti_agg"] == "preset"
    assert kept["sources"]["scoring.de_bonus"] == "cli"
    assert main(["annotate", str(first / "output.h5ad"), "--annotation-only", "--output-dir", str(drop),
                 "--no-report", "--preset", "none"]) == 0
    dropped = json.loads((drop / "params.json").read_text())
    assert dropped["scoring"]["anti_agg"] == "top_quarter" and "scoring.anti_agg" not in dropped["sources"]


def test_obs_cluster_and_label_agree_with_the_cluster_table(run1):
    import anndata as ad
    import pandas as pd

    adata = ad.read_h5ad(run1 / "output.h5ad")
    table = pd.read_csv(run1 / "cluster_annotations.csv", dtype={"cluster": str}).set_index("cluster")
    cells = adata.obs[["ctr_cluster", "ctr_label"]].astype(str)
    assert set(cells["ctr_cluster"]) == set(table.index)
    assert (table.loc[cells["ctr_cluster"], "final_annotation"].to_numpy() == cells["ctr_label"].to_numpy()).all()
    assert (table["n_cells"] == cells["ctr_cluster"].value_counts().reindex(table.index)).all()


def test_the_embedding_is_computed_for_the_report_and_named_in_it(pbmc_h5ad, run1, tmp_path):
    import anndata as ad

    params = json.loads((run1 / "params.json").read_text())
    assert params["clustering"]["embedding"] == "igraph_umap"  # 700 cells: no numba-compiled UMAP
    assert ad.read_h5ad(run1 / "output.h5ad", backed="r").obsm["X_umap"].shape == (700, 2)
    assert "computed by igraph (Graph.layout_umap" in (run1 / "report.html").read_text()
    # without a report nothing draws the embedding, so none is computed
    bare = tmp_path / "bare"
    assert main(["annotate", str(pbmc_h5ad), "--ruleset", "pbmc", "--output-dir", str(bare), "--no-report",
                 "--skip-refinement"]) == 0
    assert "X_umap" not in ad.read_h5ad(bare / "output.h5ad", backed="r").obsm
    assert json.loads((bare / "params.json").read_text())["clustering"]["embedding"] is None
