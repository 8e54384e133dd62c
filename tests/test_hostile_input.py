"""Hostile input through the command line: every bad input gets a located, actionable error
(exit 1 bad input, 2 usage), never a traceback, and no run loses or corrupts a file."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ctr.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
MARKERS = ["CD3", "CD2", "CD19", "MS4A1", "CD68"]
RULES = """ruleset tiny "two lineages on five markers"
type "T Cells" {
  markers CD3, CD2
  require CD3 pos_frac >= 0.5
  anti CD19
}
type "B Cells" {
  markers CD19, MS4A1
  anti CD3
}
"""


def tiny(n: int = 20, seed: int = 0) -> ad.AnnData:
    """Three clusters of ``n`` cells: '0' CD3+CD2+ (T), '1' CD19+MS4A1+ (B), '2' CD68+ (neither)."""
    rng = np.random.default_rng(seed)
    blocks, labels = [], []
    for k, high in enumerate([[0, 1], [2, 3], [4]]):
        x = rng.uniform(0.0, 0.3, size=(n, len(MARKERS)))
        x[:, high] += 2.0
        blocks.append(x)
        labels += [str(k)] * n
    obs = pd.DataFrame({"cluster": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(len(labels))])
    return ad.AnnData(X=np.vstack(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=MARKERS))


@pytest.fixture
def ruleset(tmp_path) -> Path:
    path = tmp_path / "tiny.ctr"
    path.write_text(RULES)
    return path


def write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


def annotate(capsys, h5ad, out_dir, *extra, ruleset=None, annotation_only=True) -> tuple[int, str, str]:
    args = ["annotate", str(h5ad), "--output-dir", str(out_dir), "--no-report"]
    if ruleset is not None:
        args += ["--ruleset", str(ruleset)]
    if annotation_only:
        args += ["--annotation-only", "--cluster-key", "cluster"]
    code = main(args + [str(a) for a in extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir())} if folder.exists() else {}


def files_in(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []


def assert_only_complete_files(run_dir: Path) -> None:
    """No temporary file, and every file under a final name parses completely."""
    for path in (run_dir.iterdir() if run_dir.exists() else []):
        assert ".tmp-" not in path.name, f"temporary file left behind: {path.name}"
        if path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".h5ad":
            ad.read_h5ad(path)


def clusters_csv(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "cluster_annotations.csv", dtype={"cluster": str}, keep_default_na=False, na_values=[""])


# ---------------------------------------------------------------------------------------------
# files that are not AnnData


def test_control_run_labels_the_tiny_data(tmp_path, ruleset, capsys):
    code, out, _ = annotate(capsys, write(tiny(), tmp_path / "ok.h5ad"), tmp_path / "run", ruleset=ruleset)
    assert code == 0
    labels = clusters_csv(tmp_path / "run").set_index("cluster")["final_annotation"]
    assert labels["0"] == "T Cells" and labels["1"] == "B Cells"
    assert not (tmp_path / "run" / "input_checks.json").exists()


@pytest.mark.parametrize("kind", ["text", "hdf5", "truncated", "directory", "missing"])
def test_unreadable_or_non_h5ad_input(kind, tmp_path, ruleset, capsys):
    path = tmp_path / "input.h5ad"
    if kind == "text":
        path.write_text("cell,CD3\nc1,1.0\n")
    elif kind == "hdf5":
        import h5py

        with h5py.File(path, "w") as handle:
            handle["counts"] = [1, 2, 3]
    elif kind == "truncated":
        whole = write(tiny(), tmp_path / "whole.h5ad").read_bytes()
        path.write_bytes(whole[: len(whole) // 3])
    elif kind == "directory":
        path.mkdir()
    before = digest(path) if path.is_file() else None
    code, _, err = annotate(capsys, path, tmp_path / "run", ruleset=ruleset)
    assert code == 1
    assert str(path) in err
    assert ".h5ad" in err  # what would be valid
    assert not (tmp_path / "run").exists()  # a failed run removes the directory it created
    if before is not None:
        assert digest(path) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_permissions(tmp_path, ruleset, capsys):
    path = write(tiny(), tmp_path / "secret.h5ad")
    path.chmod(0)
    try:
        code, _, err = annotate(capsys, path, tmp_path / "run", ruleset=ruleset)
    finally:
        path.chmod(0o644)
    assert code == 1 and str(path) in err and "not readable" in err


# ---------------------------------------------------------------------------------------------
# what to annotate: layer, cluster key, marker names


def test_missing_layer_lists_the_available_ones(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.layers["arcsinh"] = adata.X.copy()
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", "--layer", "batchcor", ruleset=ruleset)
    assert code == 1
    assert "'batchcor'" in err and "available: X, arcsinh" in err


@pytest.mark.parametrize("annotation_only", [True, False])
def test_raw_layer_without_raw(annotation_only, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, write(tiny(), tmp_path / "in.h5ad"), tmp_path / "run", "--layer", "raw",
                            ruleset=ruleset, annotation_only=annotation_only)
    assert code == 1 and "layer 'raw' requested but the file has no .raw" in err and "--layer" in err


def test_missing_cluster_key_lists_the_available_ones(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.obs["leiden_r1"] = adata.obs["cluster"].copy()
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", "--cluster-key", "leiden", ruleset=ruleset)
    assert code == 1
    assert "'leiden'" in err and "cluster, leiden_r1" in err


@pytest.mark.parametrize("annotation_only", [True, False])
def test_duplicate_var_names(annotation_only, tmp_path, ruleset, capsys):
    adata = tiny()
    adata.var_names = ["CD3", "CD3", "CD19", "MS4A1", "CD68"]
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset,
                            annotation_only=annotation_only)
    assert code == 1
    assert "CTR502" in err and "more than once: CD3" in err
    assert "var_names_make_unique" in err
    assert not (tmp_path / "run").exists()


def test_no_ruleset_marker_in_the_panel(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.var_names = ["G1", "G2", "G3", "G4", "G5"]
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset)
    assert code == 1
    assert "ruleset 'tiny'" in err and "CD3, CD2" in err and "G1, G2" in err
    assert "alias" in err  # how to fix it
    assert "output.h5ad" not in files_in(tmp_path / "run")


# ---------------------------------------------------------------------------------------------
# values: NaN/Inf, negatives, raw counts, flat markers, no cells


def test_nan_marker_never_passes_its_gate_and_is_reported(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X[:20, 0] = np.nan  # CD3 missing in every cell of cluster '0', the T cells
    adata.X[40:, 0] = np.inf  # and infinite in every cell of cluster '2'
    run = tmp_path / "run"
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), run, ruleset=ruleset)
    assert code == 0
    labels = clusters_csv(run).set_index("cluster")["final_annotation"]
    assert labels["0"] != "T Cells" and labels["2"] != "T Cells"
    assert labels["1"] == "B Cells"
    gating = pd.read_csv(run / "gating_details.csv", dtype={"cluster": str})
    t_gate = gating[(gating["cluster"] == "0") & (gating["cell_type"] == "T Cells")].iloc[0]
    assert not t_gate["passed"] and "CD3" in t_gate["reason"]
    checks = json.loads((run / "input_checks.json").read_text())
    nan_check = next(c for c in checks if c["code"] == "CTR503")
    assert "40 NaN/infinite values" in nan_check["message"] and "CD3 (40)" in nan_check["message"]
    assert "note: CTR503" in out and "never positive" in out


def test_negative_values_are_reported(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X[:5, 1] = -5.0
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset)
    assert code == 0
    assert "CTR504 warning" in out and "minimum -5" in out and "--layer" in out
    assert json.loads((tmp_path / "run" / "input_checks.json").read_text())[0]["code"] == "CTR504"


def test_raw_counts_suggest_a_transform(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X = np.round(adata.X * 50)
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset)
    assert code == 0
    assert "CTR505 warning" in out and "raw counts" in out and "--normalize total" in out


@pytest.mark.parametrize("annotation_only", [True, False])
def test_every_marker_flat(annotation_only, tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X[:] = 1.0
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset,
                            annotation_only=annotation_only)
    assert code == 1
    assert "CTR507" in err and "layer 'X'" in err and "--layer" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("annotation_only", [True, False])
def test_zero_cell_file(annotation_only, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, write(tiny()[:0].copy(), tmp_path / "in.h5ad"), tmp_path / "run", ruleset=ruleset,
                            annotation_only=annotation_only)
    assert code == 1
    assert "CTR501" in err and "0 cells" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# cluster labels: unused categories, one-cell clusters, one cluster for everything


def test_empty_category_is_ignored_and_reported(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.obs["cluster"] = adata.obs["cluster"].cat.add_categories(["9"])
    run = tmp_path / "run"
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), run, ruleset=ruleset)
    assert code == 0
    assert sorted(clusters_csv(run)["cluster"]) == ["0", "1", "2"]
    assert "CTR509" in out and "without cells, ignored: 9" in out
    assert any(c["code"] == "CTR509" for c in json.loads((run / "input_checks.json").read_text()))


def test_one_cell_cluster(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.obs["cluster"] = adata.obs["cluster"].cat.add_categories(["9"])
    adata.obs.iloc[0, 0] = "9"
    run = tmp_path / "run"
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), run, ruleset=ruleset)
    assert code == 0
    assert "CTR510 warning: 1 cluster has a single cell: 9" in out
    table = clusters_csv(run).set_index("cluster")
    assert table.loc["9", "n_cells"] == 1 and table.loc["0", "final_annotation"] == "T Cells"


def test_single_cluster_for_all_cells(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.obs["cluster"] = pd.Categorical(["all"] * adata.n_obs)
    run = tmp_path / "run"
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), run, ruleset=ruleset)
    assert code == 0
    assert "CTR508 warning: all 60 cells are in one cluster ('all')" in out and "--cluster-key" in out
    assert list(clusters_csv(run)["cluster"]) == ["all"]


# ---------------------------------------------------------------------------------------------
# parameters, plans, rulesets


@pytest.fixture
def ok_h5ad(tmp_path) -> Path:
    return write(tiny(), tmp_path / "ok.h5ad")


def test_inline_json_that_does_not_parse_shows_where(ok_h5ad, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--scoring-params", '{"anti_weight": 0.5,, }', ruleset=ruleset)
    assert code == 1
    assert "--scoring-params: invalid JSON at line 1 column 21" in err
    assert '{"anti_weight": 0.5,, }\n' + " " * 24 + "^" in err
    assert not (tmp_path / "run").exists()  # options are checked before anything is created


def test_json_file_that_does_not_parse_shows_file_line_column(ok_h5ad, tmp_path, ruleset, capsys):
    params = tmp_path / "gating.json"
    params.write_text('{\n  "max_ambiguity": 3\n  "anti_penalty_hard_gate": 1}\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", f"@{params}", ruleset=ruleset)
    assert code == 1
    assert f"invalid JSON at {params}:3:3: Expecting ',' delimiter" in err


def test_json_parameter_file_may_carry_line_comments(ok_h5ad, tmp_path, ruleset, capsys):
    params = tmp_path / "gating.json"
    params.write_text('{\n  "max_ambiguity": 2,  // fewer ties listed\n  "anti_penalty_hard_gate": 1.5\n}\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", f"@{params}", ruleset=ruleset)
    assert code == 0, err
    gating = json.loads((tmp_path / "run" / "params.json").read_text())["gating"]
    assert (gating["max_ambiguity"], gating["anti_penalty_hard_gate"]) == (2, 1.5)


def test_unknown_parameter_names_the_valid_keys(ok_h5ad, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--scoring-params", '{"anti_weigth": 0.5}', ruleset=ruleset)
    assert code == 1
    assert "'anti_weigth'" in err and "did you mean 'anti_weight'" in err and "valid keys:" in err


def test_deeply_nested_json_is_an_error_not_a_crash(ok_h5ad, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", "[" * 100_000, ruleset=ruleset)
    assert code == 1
    assert "--gating-params: invalid JSON: nested too deeply" in err


def test_refinement_plan_naming_unknown_clusters(ok_h5ad, tmp_path, ruleset, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text('override:\n  - {cluster: "42", label: "Doublets"}\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--refinement-plan", plan, ruleset=ruleset)
    assert code == 1
    assert str(plan) in err and "'42'" in err and "the clusters are: 0, 1, 2" in err
    assert "output.h5ad" not in files_in(tmp_path / "run")


def test_refinement_plan_yaml_is_loaded_safely(ok_h5ad, tmp_path, ruleset, capsys):
    marker = tmp_path / "pwned"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--refinement-plan", plan, ruleset=ruleset)
    assert code == 1
    assert f"{plan}:1:1: invalid YAML" in err and "override:" in err
    assert not marker.exists()


def test_ruleset_that_includes_itself(ok_h5ad, tmp_path, capsys):
    rules = tmp_path / "self.ctr"
    rules.write_text('ruleset self\ninclude "self.ctr"\n' + RULES.split("\n", 1)[1])
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", ruleset=rules)
    assert code == 1
    assert f"{rules}:2:1: CTR204 error: include cycle: self.ctr -> self.ctr" in err
    assert '   2 | include "self.ctr"' in err


def test_ruleset_mistake_fails_before_clustering(ok_h5ad, tmp_path, capsys):
    rules = tmp_path / "typo.ctr"
    rules.write_text('type "T Cells" {\n  markrs CD3, CD2\n}\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", ruleset=rules, annotation_only=False)
    assert code == 1
    assert f"{rules}:2:3: CTR101 error" in err and "did you mean 'markers'" in err
    assert "] read" not in err and "] cluster" not in err  # nothing expensive ran first
    assert not (tmp_path / "run").exists()


def test_includes_nested_too_deeply(tmp_path):
    from ctr.lang import compile_ruleset
    from ctr.lang.loader import MAX_INCLUDE_DEPTH

    n = MAX_INCLUDE_DEPTH + 3
    for i in range(n):
        (tmp_path / f"r{i}.ctr").write_text(f'include "r{i + 1}.ctr"\n' if i + 1 < n else "type A { markers X }\n")
    diags = compile_ruleset(tmp_path / "r0.ctr").diagnostics
    assert [d.code for d in diags] == ["CTR208"]
    assert diags[0].loc.file == str(tmp_path / f"r{MAX_INCLUDE_DEPTH}.ctr")


def test_include_through_a_symlink_cannot_escape(tmp_path):
    from ctr.lang import compile_ruleset

    outside = tmp_path / "outside.ctr"
    outside.write_text("type O { markers X }\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "link.ctr").symlink_to(outside)
    (rules / "top.ctr").write_text('include "link.ctr"\ntype A { markers Y }\n')
    diags = compile_ruleset(rules / "top.ctr").diagnostics
    assert [d.code for d in diags] == ["CTR207"]


@pytest.mark.parametrize("suffix, code", [(".json", "CTR106"), (".yaml", "CTR105")])
def test_deeply_nested_ruleset_files_are_errors(tmp_path, suffix, code):
    from ctr.lang import compile_ruleset

    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000)
    assert [d.code for d in compile_ruleset(path).diagnostics] == [code]


def test_no_eval_exec_or_unsafe_yaml_in_the_package():
    for path in (REPO / "ctr").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                assert name not in {"eval", "exec", "unsafe_load", "full_load", "load_all"}, f"{path}:{node.lineno}"
                if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "yaml":
                    raise AssertionError(f"{path}:{node.lineno}: yaml.load; use yaml.safe_load or a SafeLoader")


def test_marker_map_that_does_not_parse_is_located(ok_h5ad, tmp_path, capsys):
    marker_map = tmp_path / "map.json"
    marker_map.write_text('{\n  "T Cells": {"markers": ["CD3", "CD2"],}\n}\n')
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--marker-map", marker_map)
    assert code == 1
    assert f"{marker_map}:2:41: CTR106 error: invalid JSON" in err
    assert not (tmp_path / "run").exists()  # the ruleset is checked before the data is read


def test_log1p_on_negative_values_suggests_arcsinh(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X[:5, 1] = -5.0
    code, _, err = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "run", "--transform", "log1p",
                            ruleset=ruleset)
    assert code == 1 and "down to -5" in err and "--transform arcsinh:COFACTOR" in err


def test_existing_obs_columns_are_never_overwritten(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.obs["ctr_label"] = "my manual labels"
    adata.obs["cluster_lvl0"] = adata.obs["cluster"].astype(str)
    path = write(adata, tmp_path / "in.h5ad")
    code, _, err = annotate(capsys, path, tmp_path / "run1", ruleset=ruleset)
    assert code == 1 and "'ctr_label' exists and was not written by ctr" in err and "--key-added" in err
    code, _, err = annotate(capsys, path, tmp_path / "run2", "--key-added", "ctr2", ruleset=ruleset, annotation_only=False)
    assert code == 1 and "obs['cluster_lvl0'] already exists" in err and "--annotation-only --cluster-key cluster_lvl0" in err
    assert not (tmp_path / "run1").exists() and not (tmp_path / "run2").exists()
    code, _, _ = annotate(capsys, path, tmp_path / "run3", "--key-added", "ctr2", ruleset=ruleset)
    assert code == 0
    assert (ad.read_h5ad(tmp_path / "run3" / "output.h5ad").obs["ctr_label"] == "my manual labels").all()


# ---------------------------------------------------------------------------------------------
# the output directory and the input file


def test_output_dir_below_a_file(ok_h5ad, tmp_path, ruleset, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    code, _, err = annotate(capsys, ok_h5ad, target / "run", ruleset=ruleset)
    assert code == 1
    assert f"cannot create output directory '{target / 'run'}'" in err
    assert target.read_text() == "my notes"


def test_output_dir_that_is_a_file(ok_h5ad, tmp_path, ruleset, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    code, _, err = annotate(capsys, ok_h5ad, target, ruleset=ruleset)
    assert code == 1
    assert f"'{target}' is an existing file" in err and "--output-dir" in err
    assert target.read_text() == "my notes"


def test_non_empty_output_dir_needs_force(ok_h5ad, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    code, _, err = annotate(capsys, ok_h5ad, run, ruleset=ruleset)
    assert code == 1 and "is not empty" in err and "--force" in err
    assert files_in(run) == ["keep.txt"]
    code, _, _ = annotate(capsys, ok_h5ad, run, "--force", ruleset=ruleset)
    assert code == 0 and (run / "keep.txt").read_text() == "mine"
    assert_only_complete_files(run)


def test_input_file_is_never_written(tmp_path, ruleset, capsys):
    path = write(tiny(), tmp_path / "in.h5ad")
    before = (digest(path), path.stat().st_mtime_ns)
    code, _, _ = annotate(capsys, path, tmp_path / "run", ruleset=ruleset, annotation_only=False)
    assert code == 0
    assert (digest(path), path.stat().st_mtime_ns) == before


def test_run_never_replaces_its_own_input(tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    assert annotate(capsys, write(tiny(), tmp_path / "in.h5ad"), run, ruleset=ruleset)[0] == 0
    previous = run / "output.h5ad"
    before = (digest(previous), previous.stat().st_mtime_ns)
    code, _, err = annotate(capsys, previous, run, "--force", ruleset=ruleset)
    assert code == 1
    assert "refusing to replace the input" in err and "--output-dir" in err
    assert (digest(previous), previous.stat().st_mtime_ns) == before


# ---------------------------------------------------------------------------------------------
# interruptions: no partial file under a final name


def _break_h5ad_writer(monkeypatch, exc: BaseException) -> None:
    """AnnData.write_h5ad writes half a file, then fails (as if killed mid-write); so does the
    writer of output.h5ad as a copy of the input, once the copy is made."""
    import ctr.io.h5ad_copy

    def half_write(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
        raise exc

    def fail_in_copy(group, obs, columns):
        group.create_dataset(columns[0], data=[0])  # half of the first column
        raise exc

    monkeypatch.setattr(ad.AnnData, "write_h5ad", half_write)
    monkeypatch.setattr(ctr.io.h5ad_copy, "_write_obs_columns", fail_in_copy)


@pytest.mark.parametrize("exc, exit_code, message", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(28, "No space left on device"), 1, "output.h5ad': No space left on device"),
    (RuntimeError("simulated bug"), 3, "internal error: RuntimeError: simulated bug"),
])
def test_failure_while_writing_leaves_no_partial_file(exc, exit_code, message, tmp_path, ruleset, capsys, monkeypatch):
    path = write(tiny(), tmp_path / "in.h5ad")
    run = tmp_path / "run"
    _break_h5ad_writer(monkeypatch, exc)
    code, _, err = annotate(capsys, path, run, ruleset=ruleset)
    assert code == exit_code and message in err
    assert not run.exists()  # whole or nothing: no run directory at all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "tiny.ctr"]


@pytest.mark.parametrize("exc, exit_code, message", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(28, "No space left on device"), 1, "No space left on device"),
])
def test_failed_rerun_keeps_the_previous_complete_output(exc, exit_code, message, tmp_path, ruleset, capsys, monkeypatch):
    path = write(tiny(), tmp_path / "in.h5ad")
    run = tmp_path / "run"
    assert annotate(capsys, path, run, ruleset=ruleset)[0] == 0
    before = snapshot(run)

    calls = []
    real_to_csv = pd.DataFrame.to_csv

    def to_csv_then_fail(self, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third table: half written, then interrupted
            handle.write("cluster,final_annotation\n0,")
            raise exc
        return real_to_csv(self, handle, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv_then_fail)
    code, _, err = annotate(capsys, path, run, "--force", "--scoring-params", '{"anti_weight": 0.9}', ruleset=ruleset)
    assert code == exit_code and message in err
    assert snapshot(run) == before  # the old complete run, every file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "run", "tiny.ctr"]  # no staging left


def _run_cli(args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ctr", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


STAGES = ["read", "preprocess", "cluster", "annotate", "write", "report", "finish"]


def _interrupt_at(monkeypatch, stage: str, when: str, interrupt) -> None:
    """Call ``interrupt()`` when the pipeline enters (or has just left) ``stage``: a deterministic Ctrl-C."""
    from contextlib import contextmanager

    from ctr.progress import Progress

    real = Progress.stage

    @contextmanager
    def stage_hook(self, name, detail=""):
        if name == stage and when == "enter":
            interrupt()
        with real(self, name, detail):
            yield
        if name == stage and when == "exit":
            interrupt()

    monkeypatch.setattr(Progress, "stage", stage_hook)


def _ctrl_c():
    raise KeyboardInterrupt


@pytest.mark.parametrize("when", ["enter", "exit"])
@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_at_every_stage_leaves_nothing(stage, when, tmp_path, ruleset, capsys, monkeypatch):
    path = write(tiny(), tmp_path / "in.h5ad")
    run = tmp_path / "a" / "b" / "run"
    _interrupt_at(monkeypatch, stage, when, _ctrl_c)
    code = main(["annotate", str(path), "--output-dir", str(run), "--ruleset", str(ruleset)])  # clusters, writes a report
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "tiny.ctr"]  # no run, no staging, no empty a/b


@pytest.mark.parametrize("stage", ["read", "annotate", "write", "finish"])
def test_ctrl_c_during_a_forced_rerun_keeps_the_earlier_run_whole(stage, tmp_path, ruleset, capsys, monkeypatch):
    path = write(tiny(), tmp_path / "in.h5ad")
    run = tmp_path / "run"
    assert main(["annotate", str(path), "--output-dir", str(run), "--ruleset", str(ruleset),
                 "--annotation-only", "--cluster-key", "cluster"]) == 0  # with report.html
    before = snapshot(run)
    _interrupt_at(monkeypatch, stage, "enter", _ctrl_c)
    code, _, err = annotate(capsys, path, run, "--force", "--scoring-params", '{"anti_weight": 0.9}', ruleset=ruleset)
    assert code == 130
    assert snapshot(run) == before  # every file of the earlier run, byte for byte, and nothing new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "run", "tiny.ctr"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_real_signal_exits_130_and_leaves_nothing(signum, tmp_path, ruleset, capsys, monkeypatch):
    path = write(tiny(), tmp_path / "in.h5ad")
    _interrupt_at(monkeypatch, "write", "enter", lambda: os.kill(os.getpid(), signum))
    code, _, err = annotate(capsys, path, tmp_path / "run", ruleset=ruleset)
    assert code == 130 and "interrupted" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("stage", ["write", "report"])
def test_an_interrupt_a_library_swallows_still_stops_the_run(stage, tmp_path, ruleset, capsys, monkeypatch):
    """Ctrl-C inside a finaliser prints 'Exception ignored ... KeyboardInterrupt' and is lost; the run
    must not then finish with exit 0."""

    def swallowed():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs here, raising into this try
                pass
        except KeyboardInterrupt:
            pass

    path = write(tiny(), tmp_path / "in.h5ad")
    _interrupt_at(monkeypatch, stage, "enter", swallowed)
    code = main(["annotate", str(path), "--output-dir", str(tmp_path / "run"), "--ruleset", str(ruleset),
                 "--annotation-only", "--cluster-key", "cluster"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# the other commands


def _cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def test_other_commands_on_hostile_paths(tmp_path, capsys):
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not hdf5")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _cli(capsys, "lint-ruleset", "pbmc", "--panel", junk)
    assert code == 1 and f"{junk}: cannot read as .h5ad" in err and "one marker per line" in err
    for command in (["explain", empty], ["report", empty], ["diff", empty, empty]):
        code, err = _cli(capsys, *command)
        assert code == 1 and f"{empty}: not a ctr run directory" in err and "--output-dir" in err
    code, err = _cli(capsys, "export-markers", "--ruleset", "pbmc", "--output", tmp_path / "rules.txt")
    assert code == 1 and "export format" in err and "--format" in err
    code, err = _cli(capsys, "export-markers", "--ruleset", "pbmc", "--output", junk / "rules.ctr")
    assert code == 1 and f"cannot write '{junk / 'rules.ctr'}': Not a directory" in err
    assert junk.read_text() == "not hdf5"


# ---------------------------------------------------------------------------------------------
# exit codes and --debug


@pytest.mark.parametrize("argv, fragment", [
    (["annotate"], "the following arguments are required"),
    (["annotate", "x.h5ad", "--output-dir", "o", "--bogus"], "unrecognized arguments: --bogus"),
    (["annotate", "x.h5ad", "--output-dir", "o", "--unit", "tissue"], "invalid choice: 'tissue' (choose from"),
    (["annotate", "x.h5ad", "--output-dir", "o", "--ruleset", "pbmc", "--marker-map", "m.json"], "not allowed with argument"),
    (["annotate", "x.h5ad", "--output-dir", "o", "--n-pcs", "many"], "invalid int value: 'many'"),
])
def test_usage_errors_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and fragment in err and "usage: ctr" in err and "Traceback" not in err


def test_internal_error_exits_3_and_only_debug_shows_the_traceback(ok_h5ad, tmp_path, ruleset, capsys, monkeypatch):
    import ctr.engine.annotate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(ctr.engine.annotate, "annotate_clusters", broken)
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", ruleset=ruleset)
    assert code == 3
    assert "internal error: ZeroDivisionError: simulated bug" in err and "--debug" in err
    assert_only_complete_files(tmp_path / "run")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "annotate", str(ok_h5ad), "--output-dir", str(tmp_path / "run2"), "--ruleset", str(ruleset),
              "--annotation-only", "--cluster-key", "cluster"])


def test_debug_shows_the_traceback_and_nothing_else_does(tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    plain = _run_cli(["annotate", bad, "--output-dir", tmp_path / "a"])
    debug = _run_cli(["--debug", "annotate", bad, "--output-dir", tmp_path / "b"])
    (_, plain_err), (_, debug_err) = plain.communicate(timeout=60), debug.communicate(timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain_err
    assert f"cannot read '{bad}' as AnnData .h5ad" in plain_err
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug_err
    assert "ctr.errors.InputError" in debug_err


def test_exit_codes_are_documented():
    text = (REPO / "docs" / "cli.md").read_text() + (REPO / "docs" / "errors.md").read_text()
    for fragment in ["**0** success", "**1** bad input", "**2** usage", "**3** an internal error", "**130**", "--debug"]:
        assert fragment in text



def test_plan_with_yaml_aliases_is_refused(tmp_path):
    from ctr.errors import ParameterError
    from ctr.lang.plan_file import load_plan

    plan = tmp_path / "plan.yaml"
    plan.write_text('a: &x ["1", "2"]\nmerge:\n  - clusters: *x\n')
    with pytest.raises(ParameterError, match="anchors and aliases"):
        load_plan(plan)


def test_transform_of_raw_is_a_usage_error(pbmc_h5ad, tmp_path, capsys):
    import anndata as ad

    adata = ad.read_h5ad(pbmc_h5ad)
    adata.raw = adata.copy()
    path = tmp_path / "with_raw.h5ad"
    adata.write_h5ad(path)
    code = main(["annotate", str(path), "--ruleset", "pbmc", "--layer", "raw", "--transform", "log1p",
                 "--annotation-only", "--cluster-key", "louvain", "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--transform cannot be combined with --layer raw" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# parameters: validated at the command line, before any data is read


@pytest.mark.parametrize("option, value, fragment", [
    ("--resolution", "0", "--resolution must be a finite number > 0 (got 0.0)"),
    ("--resolution", "-1", "--resolution must be a finite number > 0"),
    ("--resolution", "nan", "--resolution must be a finite number > 0 (got nan)"),
    ("--resolution", "inf", "--resolution must be a finite number > 0 (got inf)"),
    ("--n-pcs", "0", "--n-pcs must be an integer >= 1 (got 0)"),
    ("--n-pcs", "-3", "--n-pcs must be an integer >= 1 (got -3)"),
    ("--neighbors-k", "0", "--neighbors-k must be an integer >= 2 (got 0)"),
    ("--neighbors-k", "1", "--neighbors-k must be an integer >= 2"),
    ("--random-seed", "-1", "--random-seed must be an integer from 0 to 4294967295 (got -1)"),
    ("--random-seed", str(2**70), "--random-seed must be an integer from 0 to 4294967295"),
    ("--key-added", "", "--key-added must be a non-empty name"),
    ("--key-added", "/", "without '/'"),
    ("--key-added", "a/b", "without '/'"),
    ("--key-added", " ctr", "spaces at either end"),
])
def test_meaningless_parameter_is_refused_before_the_data_is_read(option, value, fragment, tmp_path, ruleset, capsys):
    junk = tmp_path / "junk.h5ad"
    junk.write_text("not hdf5")  # reading it would fail differently: the parameter is checked first
    code, _, err = annotate(capsys, junk, tmp_path / "run", f"{option}={value}", ruleset=ruleset, annotation_only=False)
    assert code == 1 and fragment in err and "cannot read" not in err
    assert not (tmp_path / "run").exists()


def test_neighbors_k_must_be_below_the_number_of_cells(ok_h5ad, tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--neighbors-k", "60", ruleset=ruleset,
                            annotation_only=False)
    assert code == 1 and "--neighbors-k 60 is not below the number of cells (60)" in err and "from 2 to 59" in err
    assert not (tmp_path / "run").exists()


def test_key_added_never_replaces_the_users_uns_entry(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.uns["mine"] = {"layer": "my notes", "params": "my params"}
    path = write(adata, tmp_path / "in.h5ad")
    code, _, err = annotate(capsys, path, tmp_path / "run", "--key-added", "mine", ruleset=ruleset)
    assert code == 1 and "uns['mine'] exists and was not written by ctr" in err and "--key-added" in err
    assert not (tmp_path / "run").exists()
    code, _, _ = annotate(capsys, path, tmp_path / "run2", "--key-added", "ctr2", ruleset=ruleset)
    assert code == 0
    written = ad.read_h5ad(tmp_path / "run2" / "output.h5ad")
    assert dict(written.uns["mine"]) == {"layer": "my notes", "params": "my params"}
    assert written.uns["ctr2"]["version"]


LATIN1 = "markers CD3, CD2 # caf\xe9\n".encode("latin-1")


@pytest.mark.parametrize("option", ["--gating-params", "--refinement-plan"])
def test_non_utf8_parameter_file_is_a_located_error(option, ok_h5ad, tmp_path, ruleset, capsys):
    path = tmp_path / "latin1.txt"
    text = b'{"max_ambiguity": 3} # \xe9\n' if option == "--gating-params" else b"override: [] # \xe9\n"
    path.write_bytes(text)
    value = f"@{path}" if option == "--gating-params" else str(path)
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", option, value, ruleset=ruleset)
    assert code == 1 and f"{path}: the" in err and "is not UTF-8 text" in err and f"at byte {text.index(0xE9)}" in err
    assert "internal error" not in err


def test_long_values_are_cut_in_messages(ok_h5ad, tmp_path, ruleset, capsys):
    huge = "x" * 2_000_000
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--scoring-params", json.dumps({"anti_weight": huge}),
                            ruleset=ruleset)
    assert code == 1 and "'anti_weight'" in err and "more characters" in err and len(err) < 2000
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", '{"max_ambiguity": ' + "1" * 1_000_000 + ",}",
                            ruleset=ruleset)
    assert code == 1 and "invalid JSON" in err and len(err) < 2000


@pytest.mark.parametrize("kind", ["ruleset", "params", "panel"])
def test_utf8_byte_order_mark_is_accepted(kind, ok_h5ad, tmp_path, ruleset, capsys):
    bom = "\ufeff"
    if kind == "ruleset":
        ruleset.write_text(bom + RULES, encoding="utf-8")
        code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", ruleset=ruleset)
        assert code == 0, err
    elif kind == "params":
        params = tmp_path / "gating.json"
        params.write_text(bom + '{"max_ambiguity": 3}', encoding="utf-8")
        code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", f"@{params}", ruleset=ruleset)
        assert code == 0, err
    else:
        panel = tmp_path / "panel.txt"
        panel.write_text(bom + "\n".join(MARKERS), encoding="utf-8")
        code, err = _cli(capsys, "lint-ruleset", ruleset, "--panel", panel)
        assert code == 0 and "CTR300" not in err


@pytest.mark.parametrize("name", ["cluster_annotations.csv", "decision_steps.csv", "params.json"])
def test_non_utf8_file_in_a_run_directory_is_a_located_error(name, ok_h5ad, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    assert annotate(capsys, ok_h5ad, run, ruleset=ruleset)[0] == 0
    path = run / name
    path.write_bytes(path.read_bytes() + b"\xff\xfe caf\xe9\n")
    for command in (["explain", run], ["report", run]):
        code, err = _cli(capsys, *command)
        assert code == 1 and f"{path}: the" in err and "not UTF-8 text" in err and "internal error" not in err


# ---------------------------------------------------------------------------------------------
# bounded cost: linear in the input (the figures are in benchmarks/bench_lint.py; no timing here)


def test_lint_of_100000_markers_on_one_line_is_linear():
    from ctr.diagnostics import SourceLoc
    from ctr.rules.lint import LintReport, lint
    from ctr.rules.model import CellType, MarkerRef, Requirement, Ruleset

    n = 100_000
    names = [f"MK{i}" for i in range(n)]
    line = "  markers " + ", ".join(names)
    source = f'ruleset huge\ntype "Many" {{\n{line}\n}}\n'
    cols, col = [], len("  markers ") + 1
    for name in names:
        cols.append(col)
        col += len(name) + 2
    loc = SourceLoc(file="huge.ctr", line=2, column=1)
    many = CellType(name="Many", path=("Many",), loc=loc,
                    markers=[MarkerRef(name=m, loc=SourceLoc(file="huge.ctr", line=3, column=c)) for m, c in zip(names, cols)],
                    requires=[Requirement(marker=f"R{i}", min_pos_frac=0.5) for i in range(1000)])
    t_cells = CellType(name="T", path=("T",), markers=[MarkerRef(name="CD3")])
    ruleset = Ruleset(name="huge", source_file="huge.ctr", source_text=source, roots=[many, t_cells])
    panel = ["KM0", "CD3"] + [f"P{i}" for i in range(40)]
    diags = lint(ruleset, panel)
    missing = [d for d in diags if d.code == "CTR300" and "'MK" in d.message]
    assert len(missing) == n and missing[-1].loc.column == cols[-1]  # located at its own name
    assert "did you mean 'KM0'" in missing[0].message  # the first names still get suggestions
    assert sum(d.code == "CTR252" for d in diags) == 1000
    text = LintReport(target="huge.ctr", diagnostics=diags, sources={"huge.ctr": source}, ruleset=ruleset).format_text()
    assert max(len(row) for row in text.splitlines()) < 400  # an excerpt of the long line, not the line
    assert "more CTR300 warnings" in text  # the 100,000 warnings of one kind are folded after the first ten
    last = LintReport(target="huge.ctr", diagnostics=[missing[-1]], sources={"huge.ctr": source}, ruleset=ruleset)
    assert any(row.startswith("   3 | ...") and row.endswith(", MK99999") for row in last.format_text().splitlines())


def test_10000_gating_level_keys_resolve_linearly(ok_h5ad, tmp_path, ruleset, capsys):
    from ctr.rules.params import GatingParams, level_params

    levels = {str(i): {"min_coverage": round(i / 20_000, 6)} for i in range(10_000)}
    gating = GatingParams.model_validate({"level_defaults": {"0": {"min_gap": 0.5}, "9999": {"min_pos_frac": 0.9}}})
    assert level_params(gating, 5000).min_pos_frac == 0.15  # deeper than 2 and not given: level 2's value
    assert level_params(gating, 12_000).min_pos_frac == 0.9  # the deepest given level holds below it
    params = tmp_path / "levels.json"
    params.write_text(json.dumps({"level_defaults": levels}))
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", "--gating-params", f"@{params}", ruleset=ruleset)
    assert code == 0, err
    written = json.loads((tmp_path / "run" / "params.json").read_text())["gating"]["level_defaults"]
    assert len(written) == 10_000 and written["9999"]["min_coverage"] == 0.49995


def test_normalize_counts_is_recorded_in_params(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.X = np.round(adata.X * 50)
    h5ad = write(adata, tmp_path / "in.h5ad")
    code, out, err = annotate(capsys, h5ad, tmp_path / "run", "--normalize", "total:1000", ruleset=ruleset,
                              annotation_only=False)
    assert code == 0, err
    assert "CTR505" not in out + err  # the counts are normalised: no "looks like raw counts"
    params = json.loads((tmp_path / "run" / "params.json").read_text())
    assert params["normalization"] == {"method": "total", "target_sum": 1000.0, "then": "log1p", "layer": "ctr_transformed"}
    assert params["pipeline"]["normalize"] == "total:1000"
    written = ad.read_h5ad(tmp_path / "run" / "output.h5ad")
    np.testing.assert_allclose(np.expm1(written.layers["ctr_transformed"]).sum(axis=1), 1000, rtol=1e-4)
    np.testing.assert_array_equal(written.X, adata.X)  # the input values stay


def test_normalize_and_transform_are_alternatives(tmp_path, ruleset, capsys):
    code, _, err = annotate(capsys, write(tiny(), tmp_path / "in.h5ad"), tmp_path / "run", "--normalize", "total",
                            "--transform", "log1p", ruleset=ruleset)
    assert code == 2 and "--normalize already applies log1p" in err


# ---------------------------------------------------------------------------------------------
# consent before overwriting: run directories


def test_force_never_replaces_files_no_ctr_run_wrote(ok_h5ad, tmp_path, ruleset, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "cluster_annotations.csv").write_text("my,own\n1,2\n")
    (mine / "params.json").write_text('{"mine": true}\n')
    before = snapshot(mine)
    code, _, err = annotate(capsys, ok_h5ad, mine, "--force", ruleset=ruleset)
    assert code == 1 and "cluster_annotations.csv, params.json, which no finished ctr run wrote there" in err
    assert "even with --force" in err and snapshot(mine) == before


def test_force_replaces_only_the_earlier_runs_files(ok_h5ad, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    assert annotate(capsys, ok_h5ad, run, ruleset=ruleset)[0] == 0
    (run / "notes.txt").write_text("my notes")
    (run / "timings.json").unlink()  # a file of the earlier run the user deleted: fine
    code, _, _ = annotate(capsys, ok_h5ad, run, "--force", ruleset=ruleset)
    assert code == 0 and (run / "notes.txt").read_text() == "my notes"
    manifest = json.loads((run / "ctr_run.json").read_text())
    assert "notes.txt" not in manifest["files"] and "output.h5ad" in manifest["files"]
    assert_only_complete_files(run)


@pytest.mark.parametrize("how", ["copied over a run file", "hard link elsewhere"])
def test_force_never_replaces_an_input_under_another_name(how, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    source = write(tiny(), tmp_path / "in.h5ad")
    assert annotate(capsys, source, run, ruleset=ruleset)[0] == 0
    if how == "copied over a run file":
        data = run / "params.json"  # the user's data, saved under the name of a file ctr wrote
        data.write_bytes(source.read_bytes())
    else:
        data = tmp_path / "elsewhere.h5ad"
        os.link(run / "output.h5ad", data)  # one file, two names
    before = digest(data)
    code, _, err = annotate(capsys, data, run, "--force", ruleset=ruleset)
    assert code == 1 and "refusing to replace the input" in err and "--output-dir" in err
    assert digest(data) == before


def test_a_second_run_into_the_same_directory_is_refused(ok_h5ad, tmp_path, ruleset, capsys):
    from ctr.io.rundir import staged_run_dir

    run = tmp_path / "run"
    with staged_run_dir(run) as staging:  # a first run, still writing
        write_text = staging / "params.json"
        write_text.write_text("{}\n")
        code, _, err = annotate(capsys, ok_h5ad, run, ruleset=ruleset)
        assert code == 1 and "another ctr run (pid" in err and "is writing" in err
    assert sorted(p.name for p in run.iterdir()) == ["ctr_run.json", "params.json"]  # the first run, whole


def test_failed_run_leaves_no_folders_it_made(tmp_path, ruleset, capsys):
    adata = tiny()
    adata.var_names = ["G1", "G2", "G3", "G4", "G5"]  # no ruleset marker: fails after the data is read
    code, _, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), tmp_path / "a" / "b" / "c", ruleset=ruleset)
    assert code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "tiny.ctr"]


def test_readers_refuse_an_unfinished_run(ok_h5ad, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    assert annotate(capsys, ok_h5ad, run, ruleset=ruleset)[0] == 0
    (run / "ctr_run.json").unlink()  # as an interrupted run of an older ctr left it
    for command in (["explain", run], ["report", run], ["diff", run, run], ["evaluate", run, "--truth", "cluster"]):
        code, err = _cli(capsys, *command)
        assert code == 1 and f"{run}: not a finished ctr run directory (no ctr_run.json" in err, command
        assert "--output-dir" in err
    assert not (run / "report.html").exists()


def test_report_never_replaces_a_report_ctr_did_not_write(ok_h5ad, tmp_path, ruleset, capsys):
    run = tmp_path / "run"
    assert annotate(capsys, ok_h5ad, run, ruleset=ruleset)[0] == 0  # --no-report
    (run / "report.html").write_text("<p>my own report</p>")
    code, err = _cli(capsys, "report", run)
    assert code == 1 and "report.html was not written by ctr; refusing to replace it" in err
    assert (run / "report.html").read_text() == "<p>my own report</p>"
    (run / "report.html").unlink()
    assert _cli(capsys, "report", run)[0] == 0
    assert "report.html" in json.loads((run / "ctr_run.json").read_text())["files"]
    assert _cli(capsys, "report", run)[0] == 0  # its own report: regenerated


# ---------------------------------------------------------------------------------------------
# consent before overwriting: export-markers


@pytest.mark.parametrize("target", ["data", "ruleset", "hard link to the ruleset", "symlink", "dangling symlink", "device"])
def test_export_never_destroys_what_it_should_not(target, tmp_path, ruleset, capsys):
    data = tmp_path / "victim.h5ad"
    data.write_bytes(b"\x89HDF precious")
    if target == "data":
        out, force = data, False
    elif target == "ruleset":
        out, force = ruleset, True
    elif target == "hard link to the ruleset":
        out, force = tmp_path / "copy.ctr", True
        os.link(ruleset, out)
    elif target in ("symlink", "dangling symlink"):
        out, force = tmp_path / "link.json", True
        out.symlink_to(data if target == "symlink" else tmp_path / "nowhere.json")
    else:
        if not Path("/dev/null").exists():
            pytest.skip("no /dev/null")
        out, force = Path("/dev/null"), True
    before = (digest(data), digest(ruleset))
    args = ["export-markers", "--ruleset", ruleset, "--output", out, "--format", "json"] + (["--force"] if force else [])
    code, err = _cli(capsys, *args)
    assert code == 1 and "refusing to" in err
    assert (digest(data), digest(ruleset)) == before
    if "symlink" in target:
        assert out.is_symlink()
    if target == "device":
        assert Path("/dev/null").is_char_device()


def test_export_replaces_its_own_earlier_export_with_force(tmp_path, ruleset, capsys):
    out = tmp_path / "rules.json"
    assert _cli(capsys, "export-markers", "--ruleset", ruleset, "--output", out)[0] == 0
    code, err = _cli(capsys, "export-markers", "--ruleset", ruleset, "--output", out)
    assert code == 1 and "already exists" in err and "--force" in err
    assert _cli(capsys, "export-markers", "--ruleset", ruleset, "--output", out, "--force")[0] == 0


# ---------------------------------------------------------------------------------------------
# smaller things: cluster labels, warnings, byte-order marks, empty rulesets, includes


def test_a_cluster_named_nan_is_not_merged_with_unlabelled_cells(tmp_path, ruleset, capsys):
    adata = tiny()
    labels = adata.obs["cluster"].astype(str).to_numpy().astype(object)
    labels[labels == "1"] = "nan"  # a real cluster called "nan" (the B cells)
    labels[:5] = np.nan  # and five T cells without a label
    adata.obs["cluster"] = pd.Categorical(labels)
    run = tmp_path / "run"
    code, out, _ = annotate(capsys, write(adata, tmp_path / "in.h5ad"), run, ruleset=ruleset)
    assert code == 0
    table = clusters_csv(run).set_index("cluster")
    assert table.loc["nan", "n_cells"] == 20 and table.loc["nan", "final_annotation"] == "B Cells"
    assert table.loc["unlabelled", "n_cells"] == 5 and table.loc["0", "n_cells"] == 15
    assert "5 of 60 cells have no cluster label" in out and "the group 'unlabelled'" in out
    assert main(["explain", str(run), "--cluster", "nan", "--format", "json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert [(c["cluster"], c["label"]) for c in explained] == [("nan", "B Cells")]


@pytest.mark.parametrize("debug", [False, True])
def test_library_warnings_stay_off_stderr_unless_debug(debug, ok_h5ad, tmp_path, ruleset, capsys, monkeypatch):
    import warnings

    def noisy():
        warnings.warn("Transforming to str index.", UserWarning)  # what anndata says on many files
        np.log(np.zeros(1))  # numpy: RuntimeWarning: divide by zero encountered in log

    _interrupt_at(monkeypatch, "annotate", "enter", noisy)
    args = ["--debug"] * debug + ["annotate", str(ok_h5ad), "--output-dir", str(tmp_path / "run"), "--ruleset", str(ruleset),
                                  "--annotation-only", "--cluster-key", "cluster", "--no-report"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert ("Transforming to str index" in err) == debug and ("divide by zero" in err) == debug
    assert "UserWarning" not in err or "ctr: debug: UserWarning at" in err


def test_empty_ruleset_is_an_error_with_sensible_words(ok_h5ad, tmp_path, capsys):
    empty = tmp_path / "empty.ctr"
    empty.write_text("ruleset empty\n")
    panel = tmp_path / "panel.txt"
    panel.write_text("\n".join(MARKERS))
    code = main(["lint-ruleset", str(empty), "--panel", str(panel)])
    out = capsys.readouterr().out
    assert code == 1 and "CTR261 error: ruleset 'empty' defines no cell types" in out
    assert "0 markers" not in out and "(e.g. )" not in out and "all 0 cell types" not in out
    code, _, err = annotate(capsys, ok_h5ad, tmp_path / "run", ruleset=empty)
    assert code == 1 and "CTR261" in err and not (tmp_path / "run").exists()


def test_missing_include_suggests_a_file_by_its_name_not_its_extension(tmp_path):
    from ctr.lang import compile_ruleset

    (tmp_path / "y.ctr").write_text("type B { markers CD20 }\n")
    (tmp_path / "immune.ctr").write_text("type B { markers CD20 }\n")
    top = tmp_path / "top.ctr"
    top.write_text('include "foo.ctr"\ninclude "imune.ctr"\ntype A { markers CD3 }\n')
    foo, imune = compile_ruleset(top).diagnostics
    assert "did you mean" not in foo.message  # 'foo.ctr' and 'y.ctr' share only '.ctr'
    assert "did you mean 'immune.ctr'" in imune.message


def test_include_or_ruleset_naming_a_directory_says_so(tmp_path, capsys):
    from ctr.lang import compile_ruleset

    (tmp_path / "adir.ctr").mkdir()
    top = tmp_path / "top.ctr"
    top.write_text('include "adir.ctr"\ntype A { markers CD3 }\n')
    diags = compile_ruleset(top).diagnostics
    assert [d.code for d in diags] == ["CTR203"]
    assert "names a directory" in diags[0].message and "did you mean" not in diags[0].message
    diags = compile_ruleset(tmp_path / "adir.ctr").diagnostics
    assert "is a directory, not a ruleset file" in diags[0].message
