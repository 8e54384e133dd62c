"""Marker names read from a column of ``var`` (``--var-names``, ``var_names=``): cytometry data whose
var_names are channels (``Pr141Di``, ``FL1-A``) and whose antigens are in ``var["marker"]``."""

from __future__ import annotations

import json
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
from test_channel_tags import PLAIN, RULES, TECH, TRUTH, _cells, _ruleset, annotate_on_disk

import ctr
from ctr.cli import main
from ctr.codes import DUPLICATE_MARKERS, MARKER_NAMES_COLUMN
from ctr.errors import InputError

# channels named by the detector only, as readfcs/pytometry/CATALYST keep them
CHANNELS = ["Y89Di", "Er170Di", "Nd146Di", "Nd145Di", "Sm152Di", "Nd142Di", "Yb174Di", "Nd144Di"]
EXPECTED = {str(k): label for k, label in enumerate(TRUTH)}


def _channel_cells(**kw):
    """The cells of test_channel_tags with channel var_names and the antigens in var['marker']
    (the technical channels have no antigen: NaN)."""
    adata = _cells(CHANNELS, **kw)
    adata.var["marker"] = PLAIN + [np.nan] * len(TECH)
    adata.var["isotope"] = [name[:-2] for name in CHANNELS] + ["Ir191", "Ir193", ""]
    return adata


def _labels(result) -> dict[str, str]:
    return dict(zip(result.clusters["cluster"].astype(str), result.clusters["final_annotation"]))


def test_a_var_column_gives_the_labels_of_plain_var_names():
    rs = _ruleset()
    plain = ctr.annotate(_cells(PLAIN), rs, cluster_key="cluster", skip_refinement=True)
    adata = _channel_cells()
    named = ctr.annotate(adata, rs, cluster_key="cluster", skip_refinement=True, var_names="marker")
    assert _labels(plain) == EXPECTED
    assert _labels(named) == _labels(plain)
    assert list(adata.var_names) == CHANNELS + TECH  # the user's names stay
    table = named.markers.set_index("marker")
    assert table.loc["CD8", "panel_name"] == "CD8" and table.loc["CD8", "var_name"] == "Nd146Di"
    assert set(table["how"]) == {"exact"}
    assert named.provenance["var_names"] == "marker" and not named.provenance["var_names_auto_chosen"]
    assert not [d for d in named.diagnostics if d.code == MARKER_NAMES_COLUMN]  # chosen, so nothing to say
    # without the column, nothing resolves: the run refuses and names the way out
    with pytest.raises(InputError, match="--var-names"):
        ctr.annotate(_channel_cells(), rs, cluster_key="cluster", skip_refinement=True, var_names="none")


def test_the_column_is_chosen_automatically_and_said():
    result = ctr.annotate(_channel_cells(), _ruleset(), cluster_key="cluster", skip_refinement=True)
    assert _labels(result) == EXPECTED
    [note] = [d for d in result.diagnostics if d.code == MARKER_NAMES_COLUMN]
    assert note.level == "info" and "var['marker']" in note.message and "names 8 of" in note.message
    assert "var_names 0" in note.message
    assert result.provenance["var_names"] == "marker" and result.provenance["var_names_auto_chosen"]


def test_nothing_is_chosen_when_var_names_resolve():
    adata = _cells(PLAIN)
    # a column that resolves as many markers (other spellings) is no reason to leave var_names
    adata.var["antigen"] = [name.lower() for name in PLAIN] + TECH
    adata.var["desc"] = ["CD45", "CD3", "x", "y", "z", "w", "v", "u"] + TECH  # fewer
    result = ctr.annotate(adata, _ruleset(), cluster_key="cluster", skip_refinement=True)
    assert _labels(result) == EXPECTED
    assert result.provenance["var_names"] is None
    assert not [d for d in result.diagnostics if d.code == MARKER_NAMES_COLUMN]
    assert "var_name" not in result.markers.columns


def test_two_chance_matches_are_not_clearly_more():
    adata = _cells(CHANNELS)
    adata.var["note"] = ["CD45", "CD3", *["" for _ in CHANNELS[2:]], *TECH]  # two markers: below 3
    with pytest.raises(InputError):  # nothing resolves through var_names, and the column is not taken
        ctr.annotate(adata, _ruleset(), cluster_key="cluster", skip_refinement=True)


def test_a_missing_column_names_the_columns_there_are():
    with pytest.raises(InputError) as err:
        ctr.annotate(_channel_cells(), _ruleset(), cluster_key="cluster", var_names="markers")
    assert "var has no column 'markers'" in err.value.message and "did you mean 'marker'?" in err.value.message
    assert "marker, isotope" in err.value.message


def test_empty_entries_keep_their_var_name():
    adata = _channel_cells()
    adata.var["marker"] = adata.var["marker"].astype("category")  # NaN in a categorical, as readfcs writes
    adata.var.loc["Nd145Di", "marker"] = np.nan  # CD4 unstained: the channel keeps its name
    result = ctr.annotate(adata, _ruleset(), cluster_key="cluster", skip_refinement=True, var_names="marker")
    table = result.markers.set_index("marker")
    assert table.loc["CD4", "how"] == "missing" and table.loc["CD8", "var_name"] == "Nd146Di"
    assert _labels(result)["0"] == "CD8 T"  # the other types still resolve


def test_duplicate_names_in_the_column_are_ctr502_naming_it():
    adata = _channel_cells()
    adata.var["marker"] = ["CD45", "CD3", "CD3", *PLAIN[3:], *[np.nan] * len(TECH)]
    with pytest.raises(InputError) as err:
        ctr.annotate(adata, _ruleset(), cluster_key="cluster", var_names="marker")
    assert err.value.diagnostics[0].code == DUPLICATE_MARKERS
    assert "var['marker']" in err.value.message and "CD3" in err.value.message


def test_cli_run_rerun_explain_and_report_use_the_column(tmp_path: Path, capsys):
    _, _, run, out, err = annotate_on_disk(_channel_cells(), tmp_path, capsys)
    assert f"{MARKER_NAMES_COLUMN} info: marker names read from var['marker']" in out + err
    params = json.loads((run / "params.json").read_text())
    assert params["provenance"]["var_names"] == "marker"
    table = pd.read_csv(run / "marker_resolution.csv").set_index("marker")
    assert table.loc["HLA-DR", "panel_name"] == "HLA-DR" and table.loc["HLA-DR", "var_name"] == "Yb174Di"
    output = anndata.read_h5ad(run / "output.h5ad")  # the user's names and columns stay
    assert list(output.var_names) == CHANNELS + TECH and list(output.var["marker"][:8]) == PLAIN
    assert dict(zip(output.obs["cluster"].astype(str), output.obs["ctr_label"].astype(str))) == EXPECTED
    # explain and the report name markers as the ruleset sees them; the report gives each one's channel
    assert main(["explain", str(run), "--markers"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(shown) == sorted(PLAIN)  # the names in var["marker"], not the channels
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "read from var[&#x27;marker&#x27;]" in report
    assert "<td>HLA-DR</td><td>HLA-DR</td><td>exact</td><td>Yb174Di</td>" in report
    # a rerun on output.h5ad matches the same names without being told, and says so
    rerun = tmp_path / "rerun"
    code = main(["annotate", str(run / "output.h5ad"), "--annotation-only", "--cluster-key", "cluster",
                 "--output-dir", str(rerun)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "using the marker names in var['marker']" in out
    assert json.loads((rerun / "params.json").read_text())["provenance"]["var_names"] == "marker"
    assert pd.read_csv(rerun / "cluster_annotations.csv")["final_annotation"].tolist() == \
        pd.read_csv(run / "cluster_annotations.csv")["final_annotation"].tolist()


def test_cli_missing_column_is_a_clean_error(tmp_path: Path, capsys):
    h5ad = tmp_path / "cytof.h5ad"
    _channel_cells().write_h5ad(h5ad)
    code = main(["annotate", str(h5ad), "--ruleset", "pbmc", "--annotation-only", "--cluster-key", "cluster",
                 "--var-names", "antigen", "--output-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    assert "var has no column 'antigen'" in err and "marker, isotope" in err
    assert not (tmp_path / "run").exists()


def test_lint_with_var_names(tmp_path: Path, capsys):
    h5ad = tmp_path / "cytof.h5ad"
    _channel_cells().write_h5ad(h5ad)
    rules = tmp_path / "t.ctr"
    rules.write_text(RULES)

    def lint(*extra: str) -> dict:
        main(["lint-ruleset", str(rules), "--panel", str(h5ad), "--format", "json", *extra])
        return json.loads(capsys.readouterr().out)

    named = lint("--var-names", "marker")
    assert named["panel_var_names"] == "marker" and named["panel_verdict"]["missing_markers"] == []
    assert {row["marker"]: row["how"] for row in named["resolution"]}["CD3"] == "exact"
    assert not [d for d in named["diagnostics"] if d["code"] == MARKER_NAMES_COLUMN]
    auto = lint()  # chosen as the run chooses it, and said
    assert auto["panel_var_names"] == "marker" and MARKER_NAMES_COLUMN in [d["code"] for d in auto["diagnostics"]]
    plain = lint("--var-names", "none")
    assert plain["panel_var_names"] is None and len(plain["panel_verdict"]["missing_markers"]) == 8
    code = main(["lint-ruleset", str(rules), "--panel", str(h5ad), "--var-names", "antigen"])
    err = capsys.readouterr().err
    assert code != 0 and "var has no column 'antigen'" in err and "Traceback" not in err
    text = tmp_path / "panel.txt"
    text.write_text("CD3\nCD45\n")
    assert main(["lint-ruleset", str(rules), "--panel", str(text), "--var-names", "marker"]) != 0
    assert "needs an .h5ad panel" in capsys.readouterr().err


def test_the_note_says_which_rulesets_the_column_was_counted_against():
    from ctr.data.var_names import choose_marker_names

    adata = _channel_cells()
    one = choose_marker_names(adata.var, list(adata.var_names), None, rulesets=lambda: [_ruleset()])
    two = choose_marker_names(adata.var, list(adata.var_names), None, rulesets=lambda: [_ruleset(), _ruleset()])
    assert one.column == two.column == "marker"
    assert "of the ruleset's markers" in one.diagnostics()[0].message
    assert "of the best-matching built-in ruleset's markers" in two.diagnostics()[0].message
