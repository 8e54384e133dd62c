"""Marker groups, ``any(A, B, C)``: a type defined by alternatives (stroma: VIM and one of FAP /
SMA / CD36) counts a cell positive for any one of them, in every spelling and through the engine."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import ctr
from ctr.lang import compile_ruleset
from ctr.lang.export import to_ctr, to_json, to_yaml
from ctr.rules.lint import panel_verdict
from ctr.rules.params import ScoringParams
from ctr.stats.marker_groups import group_values

STROMA = """
ruleset stroma
type Stroma { markers VIM, any(FAP, SMA, CD36) }
type Immune { markers CD45, CD3 }
"""

STROMA_FLAT = STROMA.replace("any(FAP, SMA, CD36)", "FAP, SMA, CD36")


def stroma_data(seed: int = 0) -> ad.AnnData:
    """Cluster "0": stromal cells, VIM+ and each positive for exactly one of FAP, SMA or CD36 (a
    third each, on three different scales); cluster "1": immune cells (CD45+ CD3+)."""
    rng = np.random.default_rng(seed)
    n = 300
    names = ["VIM", "FAP", "SMA", "CD36", "CD45", "CD3"]
    scale = np.array([1.0, 1.0, 10.0, 0.1, 1.0, 1.0])  # members measured on different scales
    x = rng.normal(0.2, 0.05, (2 * n, len(names))).clip(0)
    x[:n, 0] += 2.0
    for k in range(3):
        x[k * 100:(k + 1) * 100, 1 + k] += 2.0
    x[n:, 4] += 2.0
    x[n:, 5] += 2.0
    adata = ad.AnnData((x * scale).astype(np.float32), var=pd.DataFrame(index=names))
    adata.obs["cluster"] = np.repeat(["0", "1"], n)
    return adata


def ruleset(text: str):
    return compile_ruleset("stroma.ctr", text=text).ruleset


def test_the_group_is_one_marker_of_the_list_with_its_members():
    rs = ruleset(STROMA)
    stroma = rs.node("Stroma")
    assert stroma.marker_names == ["VIM", "any(FAP, SMA, CD36)"]
    assert stroma.groups == {"any(FAP, SMA, CD36)": ["FAP", "SMA", "CD36"]}
    # the panel is asked for the members, never for the group's spelling
    assert rs.all_markers() == ["VIM", "FAP", "SMA", "CD36", "CD45", "CD3"]


@pytest.mark.parametrize("export", [to_ctr, to_yaml, to_json])
def test_every_spelling_keeps_the_group(tmp_path, export):
    rs = ruleset(STROMA)
    text = export(rs)
    text = text if isinstance(text, str) else text[0]
    suffix = {to_ctr: ".ctr", to_yaml: ".yaml", to_json: ".json"}[export]
    again = compile_ruleset(f"again{suffix}", text=text).ruleset
    assert again.canonical() == rs.canonical()


def test_a_group_needs_two_markers_and_lives_in_marker_lists():
    for body in ("markers any(FAP)", "anti any(FAP, SMA)"):
        result = compile_ruleset("bad.ctr", text=f"ruleset r\ntype A {{ markers VIM\n {body} }}\n")
        assert not result.ok
        assert [(d.code, d.loc.line) for d in result.errors] == [("CTR101", 3)]
    one = compile_ruleset("one.ctr", text="ruleset r\ntype A { markers VIM, any(FAP) }\n")
    assert "two or more markers" in (one.errors[0].hint or "")
    other = compile_ruleset("other.ctr", text="ruleset r\ntype A { markers VIM\n when at_least(2) }\n")
    assert "marker group" not in (other.errors[0].hint or "")


def test_group_positive_exactly_where_a_member_is():
    adata = stroma_data()
    x = adata.X
    names = list(adata.var_names)
    groups = {"any(FAP, SMA, CD36)": ["FAP", "SMA", "CD36"]}
    values = group_values(x, names, groups, ScoringParams(), {})[:, 0]
    # the members' own splits, from the same rule the statistics use
    from ctr.stats.global_stats import positive, summarise_marker

    member_pos = np.column_stack([positive(x[:, j].astype(float), summarise_marker(names[j], x[:, j].astype(float), ScoringParams()))
                                  for j in (1, 2, 3)])
    np.testing.assert_array_equal(values >= 0, member_pos.any(axis=1))
    # every stromal cell is positive for one member, whatever that member's scale
    assert (values[:300] >= 0).mean() > 0.97


def test_alternatives_count_as_one_marker_every_stromal_cell_has():
    grouped = ctr.annotate(stroma_data(), ruleset(STROMA), cluster_key="cluster", skip_refinement=True, write_obs=False)
    flat = ctr.annotate(stroma_data(), ruleset(STROMA_FLAT), cluster_key="cluster", skip_refinement=True,
                        write_obs=False)
    assert grouped.labels == {"0": "Stroma", "1": "Immune"}

    def stroma(result):
        return result.scores.set_index(["cluster", "cell_type"]).loc[("0", "Stroma")]

    # as a group, the alternatives are positive in every stromal cell; listed one by one, each is
    # positive in a third of them and the type reads half as positive
    assert stroma(grouped)["mean_positive"] > 0.97
    assert stroma(flat)["mean_positive"] < 0.6
    assert stroma(grouped)["score"] > stroma(flat)["score"]
    thresholds = grouped.thresholds.set_index("marker")
    assert thresholds.loc["any(FAP, SMA, CD36)", "threshold_method"] == "any"
    assert thresholds.loc["any(FAP, SMA, CD36)", "threshold"] == 0.0


def test_missing_members_are_reported_where_the_group_is_written():
    rs = ruleset(STROMA)
    verdict = panel_verdict(rs, ["VIM", "FAP", "CD45", "CD3"])
    assert set(verdict.missing) == {"SMA", "CD36"}  # the group resolves through FAP
    assert "Stroma" not in verdict.never
    none = panel_verdict(rs, ["VIM", "CD45", "CD3"])
    assert {"FAP", "SMA", "CD36", "any(FAP, SMA, CD36)"} <= set(none.missing)


def test_a_group_with_one_member_on_the_panel_reads_as_that_member():
    adata = stroma_data()[:, ["VIM", "SMA", "CD45", "CD3"]].copy()
    result = ctr.annotate(adata, ruleset(STROMA), cluster_key="cluster", skip_refinement=True, write_obs=False)
    table = result.thresholds.set_index("marker")
    assert table.loc["any(FAP, SMA, CD36)", "positive_share"] == pytest.approx(table.loc["SMA", "positive_share"])


def test_exports_write_members_and_say_so_except_scimap_which_has_anypos():
    from ctr.lang.exporters import celesta, garnett, scimap, scyan

    rs = ruleset(STROMA)
    for tool in (garnett, celesta, scyan):
        text, losses = tool.write(rs)
        assert all(m in text for m in ("FAP", "SMA", "CD36")) and "any(" not in text
        assert any("any(FAP, SMA, CD36)" in loss for loss in losses)
    text, losses = scimap.write(rs)
    header, stroma = text.splitlines()[0].split(","), text.splitlines()[1].split(",")
    cells = dict(zip(header[2:], stroma[2:]))
    assert cells["VIM"] == "pos" and {cells[m] for m in ("FAP", "SMA", "CD36")} == {"anypos"}
    assert not any("any(" in loss for loss in losses)


def test_groups_are_refused_out_of_core_with_the_way_out():
    da = pytest.importorskip("dask.array")
    from ctr.errors import ParameterError

    adata = stroma_data()
    adata.X = da.from_array(np.asarray(adata.X), chunks=(100, 6))
    with pytest.raises(ParameterError, match="marker groups") as info:
        ctr.annotate(adata, ruleset(STROMA), cluster_key="cluster", skip_refinement=True, write_obs=False)
    assert "--backed" in (info.value.hint or "")


def test_marker_resolution_lists_the_group_and_its_members(tmp_path):
    adata = stroma_data()[:, ["VIM", "FAP", "SMA", "CD45", "CD3"]].copy()
    result = ctr.annotate(adata, ruleset(STROMA), cluster_key="cluster", skip_refinement=True, write_obs=False)
    table = result.markers.set_index("marker")
    assert table.loc["any(FAP, SMA, CD36)", "how"] == "group"
    assert table.loc["CD36", "how"] == "missing" and table.loc["FAP", "how"] == "exact"


GROUP_RULES = """
ruleset rules
type Stroma {
  markers VIM, any(FAP, SMA, CD36)
  require any(FAP, SMA) pos_frac >= REQUIRED
  when pos_frac(any(FAP, CD36)) > 0.2 and pos_frac(VIM) > 0.5
}
type Immune { markers CD45, CD3 }
"""


@pytest.mark.parametrize("export", [to_ctr, to_yaml, to_json])
def test_groups_in_requirements_and_conditions_keep_their_members(export):
    rs = ruleset(GROUP_RULES.replace("REQUIRED", "0.4"))
    assert rs.marker_groups() == {"any(FAP, SMA, CD36)": ["FAP", "SMA", "CD36"], "any(FAP, SMA)": ["FAP", "SMA"],
                                  "any(FAP, CD36)": ["FAP", "CD36"]}
    text = export(rs)
    text = text if isinstance(text, str) else text[0]
    suffix = {to_ctr: ".ctr", to_yaml: ".yaml", to_json: ".json"}[export]
    assert compile_ruleset(f"again{suffix}", text=text).ruleset.canonical() == rs.canonical()


def test_a_group_requirement_is_judged_on_the_group_share():
    # two thirds of the stromal cells are FAP+ or SMA+ (the others CD36+ only)
    passed = ctr.annotate(stroma_data(), ruleset(GROUP_RULES.replace("REQUIRED", "0.6")), cluster_key="cluster",
                          skip_refinement=True, write_obs=False)
    failed = ctr.annotate(stroma_data(), ruleset(GROUP_RULES.replace("REQUIRED", "0.7")), cluster_key="cluster",
                          skip_refinement=True, write_obs=False)
    assert passed.labels["0"] == "Stroma" and failed.labels["0"] == "Unassigned"
    assert "any(FAP, SMA) pos_frac: 0.67 >= 0.70 FAILED" in failed.explain("0")


def test_a_cell_failing_one_requirement_is_no_vote_for_the_type_it_lacks():
    from ctr.engine.votes import UNCERTAIN, vote

    # Stroma left out of both cells by its requirement: Immune alone, with no evidence in the
    # first cell and clear evidence in the second
    scores = np.array([[np.nan, -0.4], [np.nan, 1.5]])
    assert list(vote(scores, ["Stroma", "Immune"], 0.1)) == [UNCERTAIN, "Immune"]


def test_a_group_in_a_requirement_uses_its_members_for_lint():
    from ctr.rules.lint import lint

    text = "ruleset r\nthreshold FAP >= 1\ntype Stroma {\n  markers VIM\n  require any(FAP, SMA) pos_frac >= 0.4\n}\n"
    found = lint(ruleset(text), ["VIM", "SMA"])
    # the threshold's marker is used, through the group: no "threshold on a marker no type uses"
    assert "CTR256" not in [d.code for d in found]
    # the missing member is reported where the group that names it is written
    assert [d.loc.line for d in found if d.code == "CTR300"] == [5]
