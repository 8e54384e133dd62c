"""Built-in rulesets, tissue profiles and parameter presets."""

from pathlib import Path

import numpy as np

import pytest

from ctr.errors import ParameterError
from ctr.resources import rulesets_dir
from ctr.lang import builtin_rulesets, compile_ruleset
from ctr.rules.lint import lint
from ctr.ruleset_commands import lint_target, list_catalogue
from ctr.rules.params import LevelParams
from ctr.rules.presets import PRESETS, preset_blocks
from ctr.rules.tissues import list_tissues, load_tissue

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUILTINS = sorted(builtin_rulesets())


def _compile(name: str):
    result = compile_ruleset(builtin_rulesets()[name])
    assert [d.format() for d in result.diagnostics if d.level != "info"] == []
    assert result.ruleset is not None
    return result.ruleset


def test_the_expected_builtins_ship():
    assert {"fallopian_tube", "lung", "tumor_microenvironment", "pbmc", "codex_immune", "bone_marrow_cytof",
            "hodgkin_lymphoma"} <= set(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_compiles_and_lints_clean(name):
    ruleset = _compile(name)
    assert ruleset.name == name and ruleset.description
    problems = [d.format() for d in lint(ruleset) if d.level != "info"]
    assert problems == []


def test_fallopian_tube_carries_the_guide_configuration():
    rs = _compile("fallopian_tube")
    epi = rs.node("Epithelium")
    assert [(r.marker, r.min_pos_frac, r.min_enrichment) for r in epi.requires] == [("EPCAM", 0.5, 0.0)]
    assert [(v.markers, v.max_pos_frac) for v in epi.vetoes] == [(["PTPRC", "VIM"], 0.25)]
    fib = rs.node("Fibroblasts")
    assert [(v.markers, v.max_pos_frac) for v in fib.vetoes] == [(["EPCAM", "PTPRC"], 0.15)]
    immune = rs.node("Immune Cells")
    assert [(r.marker, r.min_pos_frac) for r in immune.requires] == [("PTPRC", 0.35)]
    assert rs.gating.level_defaults[0] == LevelParams(min_coverage=0.45, min_pos_frac=0.30, min_gap=0.35)
    assert rs.gating.level_defaults[1] == LevelParams(min_coverage=0.35, min_pos_frac=0.25, min_gap=0.25)
    assert rs.node("Epithelium / Ciliated Epithelium").marker_names == ["FOXJ1", "TUBB4B", "DNAH5", "CAPS", "PIFO"]


def test_lung_and_tumour_carry_the_guide_gates():
    lung = _compile("lung")
    assert [(r.marker, r.min_pos_frac) for r in lung.node("Epithelium").requires] == [("EPCAM", 0.40)]
    assert [(r.marker, r.min_pos_frac) for r in lung.node("Endothelium").requires] == [("PECAM1", 0.50)]
    assert [(v.markers, v.max_pos_frac) for v in lung.node("Epithelium").vetoes] == [(["PTPRC", "PECAM1"], 0.15)]
    assert [(v.markers, v.max_pos_frac) for v in lung.node("Macrophages").vetoes] == [(["EPCAM", "CD3D"], 0.10)]
    tme = _compile("tumor_microenvironment")
    assert [(r.marker, r.min_pos_frac, r.min_enrichment) for r in tme.node("T Cells").requires] == [("CD3D", 0.25, 0.0)]
    assert tme.gating.level_defaults[0] == LevelParams(min_coverage=0.35, min_pos_frac=0.20)


# the surface proteins `pbmc` names for cytometry panels whose genes the 765 of pbmc68k_reduced lack
PBMC_PROTEIN_ONLY = {"CD14", "CD19", "NCAM1", "ITGAX", "ITGAM", "IL3RA", "CD34", "CD38"}


def test_pbmc_lints_clean_on_pbmc68k_genes_but_for_its_cytometry_markers():
    import scanpy as sc

    panel = list(sc.datasets.pbmc68k_reduced().raw.var_names)
    problems = [d for d in lint(_compile("pbmc"), panel) if d.level != "info"]
    # every type assessable; the only warnings are the protein-panel markers this RNA panel lacks
    assert {d.code for d in problems} <= {"CTR300"}
    assert {d.message.split("'")[1] for d in problems} == PBMC_PROTEIN_ONLY


@pytest.mark.skipif(not (DATA / "cytomem_pbmc.h5ad").exists(), reason="shared data absent")
def test_pbmc_can_assign_every_type_on_a_cytof_panel():
    report = lint_target("pbmc", str(DATA / "cytomem_pbmc.h5ad"))
    # CD3D/E/G and CD8A/B meet on one channel each (CTR306); no type is left without a measured marker
    assert {d.code for d in report.diagnostics if d.level != "info"} <= {"CTR300", "CTR306"}
    assert report.format_text().splitlines()[-1].endswith("all 13 cell types can be assigned on this panel; "
                                                          "45 of 63 ruleset markers missing: CD2, LCK, IL32, CD247, "
                                                          "IL7R, CD79B, LYZ, CST3 (+37 more)")


@pytest.mark.skipif(not (DATA / "celesta_codex_crc.h5ad").exists(), reason="shared data absent")
def test_codex_immune_lints_clean_on_the_celesta_panel():
    report = lint_target("codex_immune", str(DATA / "celesta_codex_crc.h5ad"))
    assert [d.format() for d in report.diagnostics if d.level != "info"] == []
    assert report.exit_code(strict=True) == 0
    assert {row["how"] for row in report.resolution} <= {"exact", "case", "builtin_alias", "normalized"}


@pytest.mark.skipif(not (DATA / "scimap_cycif.h5ad").exists(), reason="shared data absent")
def test_hodgkin_lymphoma_lints_clean_on_the_cycif_panel():
    report = lint_target("hodgkin_lymphoma", str(DATA / "scimap_cycif.h5ad"))
    assert [d.format() for d in report.diagnostics if d.level != "info"] == []
    assert report.format_text().splitlines()[-1].endswith("all 17 cell types can be assigned on this panel")


@pytest.mark.skipif(not (DATA / "scimap_cycif.h5ad").exists(), reason="shared data absent")
def test_hodgkin_lymphoma_names_scimaps_classes_at_default_parameters():
    """Each of scimap's classes taken as one cluster, at default parameters: the layer is rescaled
    around scimap's gates (each at 0.5), which positivity auto recognises and cuts at, so this is
    the ruleset's logic against scimap's own, apart from clusters."""
    import anndata

    import ctr

    adata = anndata.read_h5ad(DATA / "scimap_cycif.h5ad")
    result = ctr.annotate(adata, _compile("hodgkin_lymphoma"), cluster_key="cell_type", skip_refinement=True,
                          write_obs=False)
    assert result.provenance["data_profile"]["kind"] == "gate_rescaled"
    path = result.clusters.set_index("cluster")["annotation_path"]
    for tumour in ("Tumor CD45- CD30+", "Tumor CD30+", "Tumor CD30+ KI67+"):
        assert path[tumour] == "Hodgkin Reed-Sternberg Cells", tumour
    t, m = "Leukocytes / T Cells", "Leukocytes / Myeloid Cells"
    expected = {"CD8 T cells": f"{t} / CD8+ T Cells", "Regulatory T cells": f"{t} / CD4+ T Cells / Regulatory T Cells",
                "Follicular Helper T cells": f"{t} / CD4+ T Cells / Follicular Helper T Cells",
                "M2 Macrophages": f"{m} / Macrophages / M2-like Macrophages",
                "Myeloid Dendritic cells": f"{m} / Dendritic Cells", "Granulocytes": "Leukocytes / Granulocytes",
                "B cells": "Leukocytes / B Cells",
                "ASMA+ cells": "Smooth Muscle Cells", "Follicular Dendritic cells": "Follicular Dendritic Cells"}
    assert {k: path[k] for k in expected} == expected


@pytest.mark.skipif(not (DATA / "scyan_aml_short.h5ad").exists(), reason="shared data absent")
def test_bone_marrow_cytof_lints_clean_on_the_levine_panel():
    report = lint_target("bone_marrow_cytof", str(DATA / "scyan_aml_short.h5ad"))
    assert [d.format() for d in report.diagnostics if d.level != "info"] == []
    assert report.exit_code(strict=True) == 0
    assert {row["how"] for row in report.resolution} == {"exact"}


def test_bone_marrow_cytof_gates_on_absolute_arcsinh_cuts():
    rs = _compile("bone_marrow_cytof")
    assert [(r.marker, r.min_pos_frac) for r in rs.node("B Cells").requires] == [("CD19", 0.4)]
    assert [(v.markers, v.max_pos_frac) for v in rs.node("CD34+ Progenitors").vetoes] == [(["CD19"], 0.3)]
    assert [(v.markers, v.max_pos_frac) for v in rs.node("NK Cells").vetoes] == [(["CD3"], 0.3)]
    used = {m for node in rs.walk() for m in node.marker_names + node.anti_names}
    cuts = {t.marker: (t.op, t.value) for t in rs.thresholds}
    assert used <= set(cuts)  # no marker falls back to the quantile cut
    assert cuts["CD3"] == (">", 1.0) and cuts["CD4"] == (">", 0.5) and cuts["CD38"] == (">", 2.0)


def test_lint_target_reports_a_mismatched_panel(tmp_path):
    panel = tmp_path / "genes.txt"
    panel.write_text("GAPDH\nACTB\n")
    report = lint_target("pbmc", str(panel))
    assert [d.code for d in report.diagnostics] == ["CTR304"]
    assert report.exit_code(strict=False) == 1
    *_, counts, verdict = report.format_text().splitlines()
    assert counts.endswith("1 error, 0 warnings")
    assert verdict.endswith("13 of 13 cell types can never be assigned on this panel; 63 of 63 ruleset markers "
                            "missing: CD3D, CD3E, CD3G, CD2, LCK, IL32, CD247, IL7R (+55 more)")


# --- presets ---------------------------------------------------------------------------------


def test_presets_match_the_guide():
    tumor = preset_blocks("heterogeneous_tumor")
    assert tumor["scoring"].explicit() == {"anti_weight": 0.8}
    assert tumor["gating"].level_defaults[0].explicit() == {"min_coverage": 0.35, "min_pos_frac": 0.20}
    assert tumor["refinement"].explicit() == {"score_threshold": 0.8, "min_cells": 300}
    sparse = preset_blocks("sparse_spatial")
    assert sparse["scoring"].explicit() == {"positive_quantile": 0.5}
    assert sparse["gating"].level_defaults[1].explicit() == {"min_coverage": 0.20, "min_pos_frac": 0.10}
    deep = preset_blocks("deep_scrnaseq")
    assert deep["scoring"].explicit() == {"positive_quantile": 0.80, "de_bonus": 0.7}
    assert deep["gating"].level_defaults[0].explicit() == {"min_coverage": 0.55, "min_gap": 0.45}
    assert deep["gating"].level_defaults[1].explicit() == {"min_coverage": 0.45, "min_gap": 0.35}
    conservative = preset_blocks("conservative")
    assert conservative["scoring"].explicit() == {"anti_weight": 0.9, "anti_agg": "max"}
    assert conservative["gating"].level_defaults[0].explicit() == {"min_coverage": 0.55, "min_gap": 0.50}
    assert conservative["refinement"].explicit() == {"score_threshold": 1.5}
    assert set(PRESETS) == {"sparse_spatial", "deep_scrnaseq", "heterogeneous_tumor", "conservative"}


def test_unknown_preset_suggests():
    with pytest.raises(ParameterError, match=r"unknown preset 'conservativ'.*did you mean 'conservative'"):
        preset_blocks("conservativ")


# --- tissue profiles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [("ft", "fallopian_tube"), ("Oviduct", "fallopian_tube"), ("fallopian", "fallopian_tube"), ("lung", "lung"),
     ("tme", "tumor_microenvironment"), ("tumor", "tumor_microenvironment"), ("blood", "pbmc"), ("colon", "codex_crc"),
     ("bm", "bone_marrow"), ("cytof_bm", "bone_marrow")],
)
def test_tissue_aliases(alias, name):
    assert load_tissue(alias).name == name


def test_unknown_tissue_lists_valid_names():
    with pytest.raises(ParameterError) as exc:
        load_tissue("lnug")
    assert "did you mean 'lung'" in exc.value.message
    assert "fallopian_tube" in exc.value.message and "ft" in exc.value.message


@pytest.mark.parametrize("tissue", [t.name for t in list_tissues()])
def test_tissue_profile_is_consistent(tissue):
    profile = load_tissue(tissue)
    assert profile.ruleset in BUILTINS
    profile.preset_blocks()
    profile.param_blocks()
    ruleset = _compile(profile.ruleset)
    names = {n.name for n in ruleset.walk()} | {n.path_str for n in ruleset.walk()}
    assert set(profile.expected_composition) <= names


def test_tumour_profile_uses_the_tumour_preset():
    assert load_tissue("tme").preset == "heterogeneous_tumor"


def test_catalogue():
    catalogue = list_catalogue()
    by_name = {r["name"]: r for r in catalogue["rulesets"]}
    assert set(by_name) == set(BUILTINS)
    assert all("error" not in r and r["cell_types"] > 3 for r in catalogue["rulesets"])
    assert by_name["fallopian_tube"]["file"].endswith("fallopian_tube.ctr")
    assert Path(by_name["pbmc"]["file"]).parent == rulesets_dir()
    assert {t["name"] for t in catalogue["tissues"]} == {t.name for t in list_tissues()}


# --- accuracy on real data (per cell, each cell taking its cluster's label) -----------------

PBMC_LINEAGE = {
    "CD4+/CD25 T Reg": "T Cells", "CD4+/CD45RA+/CD25- Naive T": "T Cells", "CD4+/CD45RO+ Memory": "T Cells",
    "CD8+ Cytotoxic T": "T Cells", "CD8+/CD45RA+ Naive Cytotoxic": "T Cells", "CD19+ B": "B Cells",
    "CD56+ NK": "NK Cells", "CD14+ Monocyte": "Myeloid Cells", "Dendritic": "Myeloid Cells", "CD34+": "HSPCs",
}


def _root_per_cell(result, clusters) -> np.ndarray:
    table = result.clusters.set_index(result.clusters["cluster"].astype(str))
    path = table["annotation_path"].fillna("").astype(str)
    root = {k: (p or table.loc[k, "final_annotation"]).split(" / ")[0] for k, p in path.items()}
    return np.array([root[c] for c in clusters])


def test_pbmc_lineages_on_pbmc68k_reduced():
    import scanpy as sc

    import ctr

    adata = sc.datasets.pbmc68k_reduced()
    result = ctr.annotate(adata, "pbmc", cluster_key="louvain", layer="raw", skip_refinement=True, write_obs=False)
    predicted = _root_per_cell(result, adata.obs["louvain"].astype(str))
    truth = adata.obs["bulk_labels"].astype(str).map(PBMC_LINEAGE).to_numpy()
    assert (predicted == truth).mean() >= 0.90


CODEX_LINEAGE = {  # reference classes -> our root types (undefined / dirt are left out)
    "CD4+ T cells CD45RO+": "T Cells", "CD8+ T cells": "T Cells", "Tregs": "T Cells", "B cells": "B Cells",
    "plasma cells": "Plasma Cells", "CD68+CD163+ macrophages": "Macrophages", "CD68+ macrophages": "Macrophages",
    "CD11b+CD68+ macrophages": "Macrophages", "CD11b+ monocytes": "Macrophages", "granulocytes": "Granulocytes",
    "smooth muscle": "Smooth Muscle", "stroma": "Stroma", "vasculature": "Vasculature", "lymphatics": "Lymphatics",
    "tumor cells": "Tumor Cells",
}
CELESTA_LINEAGE = {
    "CD4+ T cells CD45RO+": "T Cells", "CD8+ T cells": "T Cells", "Tregs": "T Cells", "CD4+ T cells": "T Cells",
    "CD3+ T cells": "T Cells", "B cells": "B Cells", "plasma cells": "Plasma Cells",
    "CD68+CD163+ macrophages": "Macrophages", "CD15+ granulocytes": "Granulocytes", "aSMA+ stroma": "Smooth Muscle",
    "vasculature": "Vasculature", "lymphatics": "Lymphatics", "tumor cells": "Tumor Cells",
}


@pytest.mark.skipif(not (DATA / "celesta_codex_crc.h5ad").exists(), reason="shared data absent")
def test_codex_immune_beats_celesta_on_the_crc_section():
    import anndata

    import ctr
    from ctr.data.cluster import cluster_cells

    adata = anndata.read_h5ad(DATA / "celesta_codex_crc.h5ad")
    adata.X = np.arcsinh(np.asarray(adata.X, dtype=np.float64) / 150)
    adata.obs["leiden"] = cluster_cells(adata.X, resolution=1.0, use_gpu=False, compute_umap=False).labels.astype(str)
    result = ctr.annotate(adata, "codex_immune", cluster_key="leiden", skip_refinement=True, write_obs=False)
    truth = adata.obs["cell_type"].astype(str).map(CODEX_LINEAGE)
    scored = truth.notna().to_numpy()
    ours = (_root_per_cell(result, adata.obs["leiden"].astype(str)) == truth.to_numpy())[scored].mean()
    celesta = (adata.obs["celesta_pred"].astype(str).map(CELESTA_LINEAGE).to_numpy() == truth.to_numpy())[scored].mean()
    assert ours >= celesta + 0.08, (ours, celesta)


def test_lint_target_keeps_compile_errors_and_skips_lint(tmp_path):
    path = tmp_path / "broken.ctr"
    path.write_text("ruleset broken\ntype T {\n  markers CD3,\n}\n")
    report = lint_target(str(path))
    assert report.count("error") >= 1 and all(d.code.startswith("CTR1") for d in report.diagnostics)
    assert f"{path}:4:1" in report.format_text()


def test_bad_tissue_profile_is_a_located_parameter_error(tmp_path):
    from ctr.rules.tissues import _read_profile

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nruleset: pbmc\npreset: sparse\nexpected_composition: {T Cells: [0.5, 0.2]}\n")
    with pytest.raises(ParameterError) as exc:
        _read_profile(path)
    assert str(path) in exc.value.message
    assert "did you mean 'sparse_spatial'" in exc.value.message and "expected_composition" in exc.value.message
