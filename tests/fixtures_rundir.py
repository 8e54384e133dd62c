"""A small, hand-written run directory that follows the run-directory contract (docs/internals.md).

Used by the report tests to exercise the views without running the engine. Five clusters of a
fallopian-tube-like ruleset (``RULESET_SOURCE``):

- ``0`` Ciliated Epithelium, leaf reached (beat Secretory Epithelium by 0.60);
- ``1`` Epithelium, ambiguous between Secretory and Ciliated Epithelium (margin 0.04 < min_gap 0.30);
- ``2`` Unassigned: Epithelium fails level-0 coverage (0.40 < 0.50), Immune its PTPRC requirement and coverage;
  with ``min_coverage_l0 <= 0.40`` it becomes Epithelium (no child passed);
- ``3`` T cell: Epithelium vetoed by PTPRC (0.60 > 0.25, line 7);
- ``4`` Stromal, the only root that passed.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import numpy as np
import pandas as pd

RULESET_FILE = "ft.ctr"
RULESET_SOURCE = """ruleset ft "fixture"
level 0 { min_coverage 0.5 }

type Epithelium {
  markers EPCAM, KRT8, CDH1
  require EPCAM pos_frac >= 0.5
  veto PTPRC pos_frac > 0.25
  type "Ciliated Epithelium" { markers FOXJ1, TUBB4B, CAPS }
  type "Secretory Epithelium" { markers PAX8, OVGP1 }
}
type Immune {
  markers PTPRC, CD3E
  require PTPRC pos_frac >= 0.4
  type "T cell" { markers CD3E, CD2 }
  type "B cell" { markers MS4A1, CD19 }
}
type Stromal { markers VIM, COL1A1 }
"""
REQUIRE_EPCAM = "ft.ctr:6:3"
VETO_PTPRC = "ft.ctr:7:3"
REQUIRE_PTPRC = "ft.ctr:13:3"
LEVEL0 = "ft.ctr:2:11"

MARKERS = {
    "Epithelium": ["EPCAM", "KRT8", "CDH1"],
    "Ciliated Epithelium": ["FOXJ1", "TUBB4B", "CAPS"],
    "Secretory Epithelium": ["PAX8", "OVGP1"],
    "Immune": ["PTPRC", "CD3E"],
    "T cell": ["CD3E", "CD2"],
    "B cell": ["MS4A1", "CD19"],
    "Stromal": ["VIM", "COL1A1"],
}
PANEL = sorted({m for ms in MARKERS.values() for m in ms})
N_CELLS = {"0": 60, "1": 40, "2": 30, "3": 50, "4": 20}
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
SEP = " / "


def _gate(gate, subject, observed, op, threshold, loc, source="default"):
    return {"kind": "gate", "gate": gate, "subject": subject, "observed": observed, "operator": op,
            "threshold": threshold, "passed": bool(OPS[op](observed, threshold)), "rule_loc": loc,
            "param_source": source}


def _coverage(observed, threshold, loc="default", source="default"):
    return _gate("coverage", "coverage", observed, ">=", threshold, loc, source)


def _cluster_plan(cluster: str, min_cov0: float, cov_loc: str, cov_src: str) -> list[tuple]:
    """(level, parent path, [(cell type, score, gates)]) for every level the cluster was gated at."""
    cov0 = lambda obs: _coverage(obs, min_cov0, cov_loc, cov_src)  # noqa: E731
    cov1 = lambda obs: _coverage(obs, 0.40)  # noqa: E731
    epcam = lambda obs: _gate("requirement", "pos_frac(EPCAM)", obs, ">=", 0.5, REQUIRE_EPCAM, "ruleset")  # noqa: E731
    ptprc_veto = lambda obs: _gate("veto", "pos_frac(PTPRC)", obs, "<=", 0.25, VETO_PTPRC, "ruleset")  # noqa: E731
    ptprc_req = lambda obs: _gate("requirement", "pos_frac(PTPRC)", obs, ">=", 0.4, REQUIRE_PTPRC, "ruleset")  # noqa: E731
    if cluster == "0":
        return [
            (0, "", [("Epithelium", 1.80, [epcam(0.81), ptprc_veto(0.02), cov0(1.0)]),
                     ("Immune", -0.40, [ptprc_req(0.02), cov0(0.0)]),
                     ("Stromal", -0.20, [cov0(0.0)])]),
            (1, "Epithelium", [("Ciliated Epithelium", 1.50, [cov1(1.0)]),
                               ("Secretory Epithelium", 0.90, [cov1(0.5)])]),
        ]
    if cluster == "1":
        return [
            (0, "", [("Epithelium", 1.60, [epcam(0.74), ptprc_veto(0.05), cov0(1.0)]),
                     ("Immune", -0.50, [ptprc_req(0.04), cov0(0.0)]),
                     ("Stromal", -0.10, [cov0(0.5)])]),
            (1, "Epithelium", [("Secretory Epithelium", 1.14, [cov1(1.0)]),
                               ("Ciliated Epithelium", 1.10, [cov1(0.67)])]),
        ]
    if cluster == "2":
        plan = [(0, "", [("Epithelium", 0.70, [epcam(0.55), ptprc_veto(0.10), cov0(0.4)]),
                         ("Immune", 0.20, [ptprc_req(0.21), cov0(0.3)]),
                         ("Stromal", -0.30, [cov0(0.0)])])]
        if min_cov0 <= 0.4:
            plan.append((1, "Epithelium", [("Ciliated Epithelium", 0.10, [cov1(0.33)]),
                                           ("Secretory Epithelium", 0.05, [cov1(0.0)])]))
        return plan
    if cluster == "3":
        return [
            (0, "", [("Epithelium", 0.90, [epcam(0.62), ptprc_veto(0.60), cov0(0.67)]),
                     ("Immune", 1.70, [ptprc_req(0.88), cov0(1.0)]),
                     ("Stromal", -0.60, [cov0(0.0)])]),
            (1, "Immune", [("T cell", 1.40, [cov1(1.0)]),
                           ("B cell", -0.30, [cov1(0.0)])]),
        ]
    return [(0, "", [("Epithelium", -0.80, [epcam(0.01), ptprc_veto(0.0), cov0(0.0)]),
                     ("Immune", -0.70, [ptprc_req(0.01), cov0(0.0)]),
                     ("Stromal", 1.30, [cov0(1.0)])])]


def _decide(cluster: str, plan: list[tuple]) -> tuple[list[dict], list[dict], dict]:
    """Trace rows, gating rows and the cluster_annotations row for one cluster's plan."""
    trace, gating = [], []
    path, margins, runner_up, ambiguous, stop = [], [], "", "", "leaf_reached"
    score = 0.0
    for level, parent, candidates in plan:
        passing = []
        for name, cand_score, gates in candidates:
            node_path = SEP.join([parent, name]) if parent else name
            failed = list(dict.fromkeys(g["gate"] for g in gates if not g["passed"]))
            for g in gates:
                trace.append({"cluster": cluster, "level": level, "path": node_path, "cell_type": name, **g,
                              "reason": f"{g['gate']} {g['subject']} {g['observed']:.2f} {g['operator']} {g['threshold']:.2f}"
                                        f" {'passed' if g['passed'] else 'failed'}"})
            gating.append({"cluster": cluster, "cell_type": name, "path": node_path, "level": level,
                           "parent": parent, "root_type": node_path.split(SEP)[0],
                           "coverage": next(g["observed"] for g in gates if g["gate"] == "coverage"),
                           "panel_coverage": 1.0, "pos_frac": 0.5, "enrichment": cand_score / 2,
                           "de_component": 0.1, "anti_penalty": 0.0, "score": cand_score,
                           "passed": not failed, "failed_gates": ";".join(failed),
                           "reason": "all gates passed" if not failed else "failed " + ", ".join(failed)})
            if not failed:
                passing.append((name, cand_score))
        passing.sort(key=lambda t: -t[1])
        gap = 0.25 if level == 0 else 0.30
        gap_loc = LEVEL0 if level == 0 else "default"
        names = "; ".join(f"{n} {s:.2f}" for n, s in passing)
        base = {"cluster": cluster, "level": level, "path": parent, "kind": "select", "operator": ">=",
                "threshold": gap, "rule_loc": gap_loc, "param_source": "default"}
        if not passing:
            stop = "no_root_passed" if level == 0 else "no_child_passed"
            trace.append({**base, "cell_type": "", "gate": "none_passed", "subject": "", "observed": math.nan,
                          "passed": False, "reason": "no candidate passed its gates"})
            break
        margin = passing[0][1] - passing[1][1] if len(passing) > 1 else math.inf
        if margin < gap:
            stop = "ambiguous_root" if level == 0 else "ambiguous_siblings"
            ambiguous = ";".join(n for n, _ in passing)
            runner_up = passing[1][0]
            trace.append({**base, "cell_type": "~".join(n for n, _ in passing), "gate": "ambiguous", "subject": names,
                          "observed": margin, "passed": False,
                          "reason": f"{passing[0][0]} leads {passing[1][0]} by {margin:.2f}, less than min_gap {gap:.2f}"})
            trace.append({**base, "kind": "vote", "gate": "vote", "cell_type": "~".join(n for n, _ in passing),
                          "subject": ambiguous, "observed": 0.42, "threshold": 0.1, "passed": True,
                          "reason": "per-cell votes (evidence only; the label is unchanged)"})
            break
        trace.append({**base, "cell_type": passing[0][0], "gate": "winner", "subject": names, "observed": margin,
                      "passed": True, "reason": f"{passing[0][0]} wins by {margin:.2f}"})
        if level == len(plan) - 1:
            leaf_path = SEP.join([parent, passing[0][0]]) if parent else passing[0][0]
            trace.append({**base, "level": level, "path": leaf_path, "cell_type": passing[0][0], "gate": "leaf",
                          "subject": passing[0][0], "observed": math.nan, "operator": "", "threshold": math.nan,
                          "passed": True, "rule_loc": "", "param_source": "",
                          "reason": f"{passing[0][0]} has no subtypes: the descent ends here"})
        runner_up = passing[1][0] if len(passing) > 1 else ""
        margins.append(margin)
        path.append(passing[0][0])
        score = passing[0][1]
    else:
        stop = "leaf_reached"
    for i, row in enumerate(trace, start=1):
        row["step"] = i
    label = path[-1] if path else "Unassigned"
    if stop.startswith("ambiguous") and level == 0:
        label = "~".join(ambiguous.split(";"))
    votes = ""
    if ambiguous:
        votes = "Secretory Epithelium:0.42;Ciliated Epithelium:0.38;Uncertain:0.20"
    confidence = min(margins) if margins else 0.0
    row = {"cluster": cluster, "final_annotation": label, "annotation_path": SEP.join(path) or label,
           "level": len(path) - 1, "root": path[0] if path else label, "score": score if path else math.nan,
           "confidence": confidence, "stop_reason": stop, "n_cells": N_CELLS[cluster], "runner_up": runner_up,
           "ambiguous_candidates": ambiguous, "vote_composition": votes,
           "refinement_action": "skip" if cluster != "1" else "relabel"}
    return trace, gating, row


def write_rundir(out: Path, *, min_coverage_l0: float = 0.5, with_h5ad: bool = True,
                 with_tissue: bool = True, seed: int = 0) -> Path:
    """Write the fixture run directory to ``out`` (created) and return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cov_loc, cov_src = (LEVEL0, "ruleset") if min_coverage_l0 == 0.5 else ("cli", "cli")
    trace, gating, clusters = [], [], []
    for cluster in N_CELLS:
        t, g, c = _decide(cluster, _cluster_plan(cluster, min_coverage_l0, cov_loc, cov_src))
        trace += t
        gating += g
        clusters.append(c)
    cols = ["step", "cluster", "level", "path", "cell_type", "kind", "gate", "subject", "observed", "operator",
            "threshold", "passed", "rule_loc", "param_source", "reason"]
    pd.DataFrame(trace)[cols].to_csv(out / "decision_steps.csv", index=False)
    gating_df = pd.DataFrame(gating)
    gating_df.to_csv(out / "gating_details.csv", index=False)
    pd.DataFrame(clusters).to_csv(out / "cluster_annotations.csv", index=False)
    scores = gating_df[["cluster", "cell_type", "path", "level", "coverage", "de_component", "anti_penalty", "score"]]
    scores.assign(mean_enrichment=gating_df["enrichment"], mean_positive=gating_df["pos_frac"]).to_csv(
        out / "marker_scores.csv", index=False)

    rng = np.random.default_rng(seed)
    evidence = []
    for g in gating:
        for rank, marker in enumerate(MARKERS[g["cell_type"]], start=1):
            strong = g["score"] > 1.0
            evidence.append({"cluster": g["cluster"], "cell_type": g["cell_type"], "path": g["path"],
                             "marker": marker, "role": "positive",
                             "median": float(rng.uniform(1.5, 3.0) if strong else rng.uniform(0, 0.8)),
                             "pos_frac": float(rng.uniform(0.5, 0.95) if strong else rng.uniform(0.0, 0.3)),
                             "enrichment": float(rng.uniform(0.8, 2.0) if strong else rng.uniform(-0.8, 0.3)),
                             "threshold": 1.0, "de_rank": rank if strong else None})
    pd.DataFrame(evidence).to_csv(out / "marker_evidence.csv", index=False)
    pd.DataFrame([{"iteration": 1, "cluster": "1", "action": "relabel",
                   "reason": "Secretory Epithelium holds 42% of votes", "before": "Epithelium",
                   "after": "Epithelium"}]).to_csv(out / "refinement_log.csv", index=False)

    levels = {"0": {"min_coverage": min_coverage_l0, "min_pos_frac": 0.3, "min_enrichment": 0.0, "min_gap": 0.25},
              "1": {"min_coverage": 0.4, "min_pos_frac": 0.2, "min_enrichment": -0.5, "min_gap": 0.3},
              "2": {"min_coverage": 0.3, "min_pos_frac": 0.15, "min_enrichment": -1.0, "min_gap": 0.2}}
    params = {
        "scoring": {"positive_quantile": 0.75, "anti_weight": 0.5, "anti_agg": "top2mean"},
        "gating": {"level_defaults": levels, "max_ambiguity": 3, "anti_penalty_hard_gate": 1.0},
        "refinement": {"score_threshold": 1.0, "min_cells": 500},
        "sources": {"gating.level_defaults.0.min_coverage": cov_src},
        "provenance": {"ctr_version": "0.1.0", "command": f"ctr annotate in.h5ad --output-dir {out.name}",
                       "input": "in.h5ad", "random_seed": 0},
        "ruleset": {"name": "ft", "path": RULESET_FILE, "hash": "abc123", "source": RULESET_SOURCE},
    }
    if with_tissue:
        params["tissue"] = {"name": "fallopian_tube",
                            "expected_composition": {"Epithelium": [0.4, 0.8], "Immune": [0.05, 0.3],
                                                     "Stromal": [0.3, 0.6]}}
    (out / "params.json").write_text(json.dumps(params, indent=2))

    if with_h5ad:
        import anndata as ad

        labels = {c["cluster"]: c["final_annotation"] for c in clusters}
        cell_clusters = np.repeat(list(N_CELLS), list(N_CELLS.values()))
        centres = rng.normal(scale=6.0, size=(len(N_CELLS), 2))
        umap = centres[[list(N_CELLS).index(c) for c in cell_clusters]] + rng.normal(size=(len(cell_clusters), 2))
        obs = pd.DataFrame({"cluster_lvl0": pd.Categorical(cell_clusters),
                            "ctr_label": pd.Categorical([labels[c] for c in cell_clusters])},
                           index=[f"cell{i}" for i in range(len(cell_clusters))])
        adata = ad.AnnData(X=rng.random((len(cell_clusters), len(PANEL)), dtype=np.float32), obs=obs,
                           var=pd.DataFrame(index=PANEL))
        adata.obsm["X_umap"] = umap.astype(np.float32)
        adata.write_h5ad(out / "output.h5ad")
    from ctr.io.rundir import write_manifest

    write_manifest(out)  # a finished run: explain, report and diff accept it
    return out


# --- a real run of the engine on synthetic data ----------------------------------------------------

REAL_RULESET = """ruleset tiny "explain-why test ruleset"
level 0 { min_coverage 0.6  min_enrichment -2 }

type Epithelium {
  markers EPCAM, KRT8, CDH1, KRT18
  require EPCAM pos_frac >= 0.5
  veto PTPRC pos_frac > 0.25
  type Ciliated { markers FOXJ1, CAPS }
  type Secretory { markers PAX8, OVGP1 }
}
type Immune {
  markers PTPRC, CD3E
}
"""
REAL_REQUIRE_LINE = 6
REAL_VETO_LINE = 7
REAL_MARKERS = ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS", "PAX8", "OVGP1", "PTPRC", "CD3E"]
# cluster -> the markers its cells express (everything else is background noise)
REAL_CLUSTERS = {
    "0": ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS"],  # Ciliated
    "1": ["KRT8", "CDH1", "KRT18"],  # epithelial but no EPCAM: the requirement (line 6) fails
    "2": ["EPCAM", "KRT8", "CDH1", "KRT18", "PTPRC", "CD3E"],  # PTPRC+: the veto (line 7) fails
    "3": ["PTPRC", "CD3E"],  # Immune
    "4": ["EPCAM", "KRT8", "CDH1", "KRT18", "FOXJ1", "CAPS", "PAX8", "OVGP1"],  # ciliated or secretory?
    "5": ["EPCAM", "KRT8"],  # 2 of 4 epithelial markers: coverage 0.5 < 0.6
    "6": ["EPCAM", "KRT8", "CDH1", "KRT18", "PAX8", "OVGP1"],  # Secretory
}


def real_adata(cells_per_cluster: int = 60, seed: int = 0):
    """Synthetic arcsinh-like intensities: expressed markers ~ N(3, 0.3), others mostly 0 (10 % low
    noise), plus a UMAP. With positive_quantile 0.1 (set below) an expressing cell is positive."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    blocks, centres = [], rng.normal(scale=5.0, size=(len(REAL_CLUSTERS), 2))
    for on in REAL_CLUSTERS.values():
        shape = (cells_per_cluster, len(REAL_MARKERS))
        x = np.where(rng.random(shape) < 0.1, rng.gamma(1.0, 0.2, size=shape), 0.0)
        for marker in on:
            x[:, REAL_MARKERS.index(marker)] += rng.normal(3.0, 0.3, cells_per_cluster)
        blocks.append(x)
    clusters = np.repeat(list(REAL_CLUSTERS), cells_per_cluster)
    obs = pd.DataFrame({"cluster": clusters}, index=[f"cell{i}" for i in range(clusters.size)])
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=REAL_MARKERS))
    where = np.repeat(np.arange(len(REAL_CLUSTERS)), cells_per_cluster)
    adata.obsm["X_umap"] = (centres[where] + rng.normal(size=(clusters.size, 2))).astype(np.float32)
    return adata


def write_real_run(out: Path, *, gating_params: dict | None = None) -> Path:
    """Annotate ``real_adata()`` with ``REAL_RULESET`` (written to ``out.parent/tiny.ctr``) and write the run."""
    from ctr.api import annotate

    out = Path(out)
    ruleset = out.parent / "tiny.ctr"
    out.parent.mkdir(parents=True, exist_ok=True)
    ruleset.write_text(REAL_RULESET)
    adata = real_adata()
    result = annotate(adata, str(ruleset), cluster_key="cluster", gating_params=gating_params,
                      scoring_params={"positive_quantile": 0.1}, skip_refinement=True)
    return result.write(out, adata=adata)
