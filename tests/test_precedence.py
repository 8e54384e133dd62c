"""Scope before layer (docs/semantics.md, "Which value applies"): the most specific scope that has a
value wins (marker > node > level > global); within one scope the latest layer wins (default <
tissue < ruleset < preset < cli); a wider value a later layer set is recorded as kept out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctr.diagnostics import SourceLoc
from ctr.errors import ParameterError
from ctr.rules.model import CellType, Requirement, Ruleset, assign_paths
from ctr.rules.params import DEFAULT_LEVELS, LAYERS, GatingParams, LevelParams, check_node_entries, parse_block, resolve_params

LEVEL_KEY = "gating.level_defaults.0.min_coverage"


def _tree() -> Ruleset:
    roots = [CellType(name="Epithelium", markers=[], children=[CellType(name="Ciliated")]),
             CellType(name="Immune", children=[CellType(name="Ciliated")])]
    assign_paths(roots)
    return Ruleset(name="t", roots=roots)


def _layers(**by_layer: dict) -> list:
    """Parameter layers in precedence order from ``layer=gating dict`` keywords."""
    return [(layer, {"gating": parse_block("gating", by_layer[layer], layer)}) for layer in LAYERS if layer in by_layer]


EPI = _tree().roots[0]


@pytest.mark.parametrize("top", [layer for layer in LAYERS if layer != "default"])
def test_level_scope_latest_layer_wins(top):
    """Each layer, set with every layer below it, decides a level threshold."""
    below = LAYERS[1:LAYERS.index(top) + 1]
    values = {layer: 0.1 * (i + 1) for i, layer in enumerate(below)}
    params = resolve_params(_layers(**{layer: {"level_defaults": {"0": {"min_coverage": v}}} for layer, v in values.items()}))
    s = params.threshold(EPI, "min_coverage")
    assert (s.value, s.layer, s.scope, s.key, s.shadowed) == (values[top], top, "level", LEVEL_KEY, None)


def test_default_layer_and_deeper_level_falls_back_to_deepest_defined():
    params = resolve_params([])
    s = params.threshold(EPI, "min_coverage")
    assert (s.value, s.layer, s.scope, s.key) == (DEFAULT_LEVELS[0].min_coverage, "default", "level", LEVEL_KEY)
    deep = CellType(name="x", path=("a", "b", "c", "d", "e"))
    assert params.threshold(deep, "min_gap").key == "gating.level_defaults.2.min_gap"


@pytest.mark.parametrize("node_layer", ["tissue", "ruleset", "preset", "cli"])
@pytest.mark.parametrize("level_layer", LAYERS)
def test_node_scope_beats_level_scope_from_any_layer(node_layer, level_layer):
    """A node's own value wins over its level's, whichever layer set each; a level value from a
    later layer than the node's is noted as kept out."""
    layers = {level_layer: {"level_defaults": {"0": {"min_coverage": 0.35}}}} if level_layer != "default" else {}
    node = EPI
    if node_layer == "ruleset":
        node = EPI.model_copy(update={"overrides": LevelParams(min_coverage=1.0)})
    else:
        entry = {"nodes": {"Epithelium": {"min_coverage": 1.0}}}
        layers[node_layer] = {**layers.get(node_layer, {}), **entry}
    params = resolve_params(_layers(**layers))
    s = params.threshold(node, "min_coverage")
    assert (s.value, s.layer, s.scope) == (1.0, node_layer, "node")
    assert s.key == "gating.nodes.Epithelium.min_coverage"
    if LAYERS.index(level_layer) > LAYERS.index(node_layer):
        assert (s.shadowed.value, s.shadowed.layer, s.shadowed.key) == (0.35, level_layer, LEVEL_KEY)
    else:
        assert s.shadowed is None
    assert params.for_node(node).min_coverage == 1.0
    assert params.for_node(node).min_gap == 0.25  # untouched keys keep the level's


def test_within_node_scope_latest_layer_wins():
    node = EPI.model_copy(update={"overrides": LevelParams(min_coverage=1.0)})
    params = resolve_params(_layers(cli={"nodes": {"Epithelium": {"min_coverage": 0.5}}}))
    s = params.threshold(node, "min_coverage")
    assert (s.value, s.layer, s.scope, s.shadowed) == (0.5, "cli", "node", None)
    params = resolve_params(_layers(tissue={"nodes": {"Epithelium": {"min_coverage": 0.5}}}))
    assert params.threshold(node, "min_coverage").layer == "ruleset"  # the ruleset is later than the tissue


def test_node_named_by_path_reaches_one_branch_only():
    rs = _tree()
    epi_cil, imm_cil = rs.roots[0].children[0], rs.roots[1].children[0]
    params = resolve_params(_layers(cli={"nodes": {"Immune / Ciliated": {"min_gap": 0.9}}}))
    check_node_entries(params, rs)
    assert params.threshold(imm_cil, "min_gap").value == 0.9
    assert params.threshold(epi_cil, "min_gap").scope == "level"


def test_node_names_are_checked_against_the_ruleset():
    rs = _tree()
    with pytest.raises(ParameterError, match=r"'Epitelium'.*did you mean 'Epithelium'"):
        check_node_entries(resolve_params(_layers(cli={"nodes": {"Epitelium": {"min_coverage": 0.5}}})), rs)
    with pytest.raises(ParameterError, match=r"'Ciliated' is used by 2 cell types.*'Epithelium / Ciliated'"):
        check_node_entries(resolve_params(_layers(cli={"nodes": {"Ciliated": {"min_coverage": 0.5}}})), rs)
    with pytest.raises(ParameterError, match="valid keys: min_coverage, min_pos_frac, min_enrichment, min_gap"):
        parse_block("gating", {"nodes": {"Epithelium": {"min_cov": 0.5}}}, "--gating-params")


@pytest.mark.parametrize("layer", LAYERS)
def test_global_scope_follows_layers(layer):
    layers = _layers(**{layer: {"anti_penalty_hard_gate": 2.5}}) if layer != "default" else []
    s = resolve_params(layers).setting("gating.anti_penalty_hard_gate")
    assert (s.value, s.layer, s.scope) == ((2.5 if layer != "default" else 1.0), layer, "global")


def test_marker_rule_beats_node_and_level_and_notes_a_later_layer():
    from ctr.engine.trace import rule_provenance

    node = EPI.model_copy(update={"overrides": LevelParams(min_pos_frac=0.2)})
    params = resolve_params(_layers(cli={"nodes": {"Epithelium": {"min_pos_frac": 0.1}}}))
    loc = SourceLoc(file="t.ctr", line=5, column=3)
    prov = rule_provenance(loc, 0.5, node=node, key="min_pos_frac", params=params)
    assert (prov.setting.value, prov.setting.scope, prov.setting.layer, prov.rule_loc) == (0.5, "marker", "ruleset", "t.ctr:5:3")
    assert (prov.setting.shadowed.value, prov.setting.shadowed.layer, prov.setting.shadowed.scope) == (0.1, "cli", "node")
    # the ruleset's own node value is the same layer as the rule: nothing was kept out
    assert rule_provenance(loc, 0.5, node=node, key="min_pos_frac", params=resolve_params([])).setting.shadowed is None


# ---- the example: codex_immune's Lymphatics (min_coverage 1.0, line 89) and a level-0 0.35 --------


def _codex_adata():
    import anndata as ad

    from ctr.lang import load_ruleset

    rs = load_ruleset("codex_immune")
    markers = rs.all_markers()
    rng = np.random.default_rng(0)
    n = 300
    x = rng.gamma(1.0, 1.0, size=(n, len(markers))).astype(np.float32)
    lymph = [markers.index("Podoplanin"), markers.index("CD31")]
    x[:100, lymph] += 4.0  # cluster 0: podoplanin and CD31 high
    obs = pd.DataFrame({"leiden": pd.Categorical(np.repeat(["0", "1", "2"], 100))}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=markers))


def _coverage_rows(result, cell_type):
    t = result.trace
    return t[(t.kind == "gate") & (t.gate == "coverage") & (t.cell_type == cell_type)]


def _cited(rows) -> set[str]:
    """file:line:col of every row (the trace's file, line and col columns)."""
    from ctr.engine.trace import Step

    return {Step.from_record(r).location for r in rows.to_dict("records")}


def test_lymphatics_keeps_its_own_min_coverage_and_cites_its_line():
    from ctr import api

    adata = _codex_adata()
    gating = '{"level_defaults": {"0": {"min_coverage": 0.35}}}'
    result = api.annotate(adata, "codex_immune", cluster_key="leiden", gating_params=gating, skip_refinement=True)
    lymph = _coverage_rows(result, "Lymphatics")
    assert set(lymph.threshold) == {1.0}
    assert _cited(lymph) == {"rulesets/codex_immune.ctr:89:3"}
    assert set(lymph.layer) == {"ruleset"} and set(lymph.scope) == {"node"}
    assert set(lymph.shadowed_layer) == {"cli"} and set(lymph.shadowed_value) == {0.35}
    assert set(lymph.shadowed_key) == {LEVEL_KEY}
    # a root without its own value takes the command line's
    vasc = _coverage_rows(result, "Vasculature")
    assert set(vasc.threshold) == {0.35} and set(vasc.layer) == {"cli"} and set(vasc.param_key) == {LEVEL_KEY}
    assert _cited(vasc) == {""}

    text = result.explain("1")
    assert ("Lymphatics' own rule kept 1.00 over gating.level_defaults.0.min_coverage = 0.35 from the command line"
            in text)

    # an --annotation-only rerun reads the ruleset stored in the file and still cites the user's line
    again = api.annotate(adata, None, cluster_key="leiden", gating_params=gating, skip_refinement=True)
    assert again.ruleset.stored_sha256 == result.ruleset.digest
    rerun = _coverage_rows(again, "Lymphatics")
    assert _cited(rerun) == {"rulesets/codex_immune.ctr:89:3"}
    assert set(rerun.file_sha256) == {result.ruleset.digest}  # the original path plus the checksum
    assert f"rulesets/codex_immune.ctr:89:3 (stored copy, sha256 {result.ruleset.digest[:12]})" in again.explain("1")
    assert set(_coverage_rows(result, "Lymphatics").file_sha256) == {""}  # read from the file itself
    assert again.labels == result.labels

    # without the text as written (only the flattened copy), the original path is cited without lines
    del adata.uns["ctr"]["ruleset"]["source_text"]
    flat = api.annotate(adata, None, cluster_key="leiden", gating_params=gating, skip_refinement=True, write_obs=False)
    rows = _coverage_rows(flat, "Lymphatics")
    assert _cited(rows) == {"rulesets/codex_immune.ctr"} and set(rows.file_sha256) == {result.ruleset.digest}
    assert flat.labels == result.labels

    # the command line reaches one node by naming it
    one = api.annotate(adata, "codex_immune", cluster_key="leiden", write_obs=False, skip_refinement=True,
                       gating_params='{"nodes": {"Lymphatics": {"min_coverage": 0.5}}}')
    lymph = _coverage_rows(one, "Lymphatics")
    assert set(lymph.threshold) == {0.5} and set(lymph.layer) == {"cli"}
    assert set(lymph.param_key) == {"gating.nodes.Lymphatics.min_coverage"}
    default = DEFAULT_LEVELS[0].min_coverage
    assert set(_coverage_rows(one, "Vasculature").threshold) == {default}  # the level-0 default, unchanged
    with pytest.raises(ParameterError, match="did you mean 'Lymphatics'"):
        api.annotate(adata, "codex_immune", cluster_key="leiden", write_obs=False, skip_refinement=True,
                     gating_params='{"nodes": {"Lymphatic": {"min_coverage": 0.5}}}')
