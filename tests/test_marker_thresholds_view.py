"""Each marker's positivity split in the views: `ctr explain --markers`, the split beside a
requirement or veto, and the report's "Marker thresholds" section (small multiples and table).

The run is the real engine's (tests/real_run.py); expected values are read from its own
marker_thresholds.csv. The pbmc68k run of the command line is checked in tests/test_cli.py."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from ctr.cli import main
from ctr.report import plots
from ctr.report.explain import explain_run
from ctr.report.html import write_report
from ctr.report.thresholds import MarkerSplit, explain_markers

SPLIT_FILES = ("marker_thresholds.csv", "marker_histograms.csv")


def thresholds(run) -> pd.DataFrame:
    return pd.read_csv(run / "marker_thresholds.csv", dtype={"marker": str})


def section(html: str) -> str:
    start = html.index('<section id="thresholds">')
    return html[start:html.index("</section>", start)]


@pytest.fixture(scope="module")
def copied_run(real_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("splits") / "run"
    shutil.copytree(real_run, run)
    return run


def test_report_draws_every_marker_split_and_tables_it(copied_run):
    html = write_report(copied_run).read_text()
    part = section(html)
    assert "<h2>Marker thresholds</h2>" in part and 'href="#thresholds"' in html
    assert part.count("data:image/png;base64,") == 1  # ten markers fit one page of small multiples
    table = thresholds(copied_run)
    assert len(table) == 10
    for r in table.itertuples():
        row = re.search(rf"<tr><td>{re.escape(r.marker)}</td>(.*?)</tr>", part)
        assert row, r.marker
        assert f">{r.threshold_method}</td>" in row.group(1)
        assert f"{r.threshold_op} {r.threshold:.4g}".replace(">", "&gt;") in row.group(1)
        assert f"{r.positive_share:.1%}" in row.group(1)


def test_explain_markers_lists_every_marker_with_its_method_in_each_format(copied_run, capsys):
    table = thresholds(copied_run)
    assert main(["explain", str(copied_run), "--markers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == set(table["marker"])
    for r in table.itertuples():
        assert f"{r.threshold_op} {r.threshold:.4g}" in lines[r.marker] and f" {r.threshold_method} " in lines[r.marker]
    markdown = explain_markers(copied_run, "markdown")
    assert all(f"| {r.marker} | {r.threshold_op} {r.threshold:.4g} | {r.threshold_method} |" in markdown
               for r in table.itertuples())
    records = {d["marker"]: d for d in json.loads(explain_markers(copied_run, "json"))}
    assert {m: d["method"] for m, d in records.items()} == dict(zip(table["marker"], table["threshold_method"]))
    assert records["EPCAM"]["threshold"] == pytest.approx(table.set_index("marker").loc["EPCAM", "threshold"])


def test_markers_and_cluster_are_alternatives(copied_run):
    with pytest.raises(SystemExit) as exc:
        main(["explain", str(copied_run), "--markers", "--cluster", "1"])
    assert exc.value.code == 2


def test_failed_requirement_names_its_markers_split(copied_run):
    epcam = thresholds(copied_run).set_index("marker").loc["EPCAM"]
    text = explain_run(copied_run, ["1"])  # the requirement EPCAM pos_frac >= 0.5 fails
    assert (f"requirement EPCAM pos_frac: 0.00 >= 0.50 FAILED" in text
            and f"[split EPCAM {epcam.threshold_op} {epcam.threshold:.4g} ({epcam.threshold_method}, "
                f"D {epcam.threshold_quality:.2f})]" in text)
    assert "[split" not in text.split("coverage:", 1)[1]  # a coverage row names no single marker
    (record,) = json.loads(explain_run(copied_run, ["1"], "json"))
    assert set(record["marker_splits"]) == {"EPCAM", "PTPRC"}  # the requirement's and the veto's markers


def test_a_run_without_split_files_still_renders(real_run, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(real_run, run)
    for name in SPLIT_FILES:
        (run / name).unlink()
    html = write_report(run).read_text()
    assert 'id="thresholds"' not in html and 'href="#thresholds"' not in html
    assert '<details class="card"' in html
    assert "[split" not in explain_run(run, ["1"])
    assert main(["explain", str(run), "--markers"]) == 0
    assert "no marker_thresholds.csv" in capsys.readouterr().out
    assert json.loads(explain_markers(run, "json")) == []


def test_many_markers_are_paged_into_grids_of_at_most_36():
    rng = np.random.default_rng(0)
    names = [f"M{i}" for i in range(45)]
    edges = np.linspace(0, 4, 49)
    hist = pd.DataFrame({"marker": np.repeat(names, 48), "lower": np.tile(edges[:-1], 45),
                         "upper": np.tile(edges[1:], 45), "count": rng.integers(0, 50, 45 * 48)})
    splits = [MarkerSplit(m, 2.0, ">=", "auto", "mixture", 3.0, 0.4, False) for m in names]
    splits.append(MarkerSplit("FLAT", float("nan"), ">=", "auto", "none", float("nan"), 0.0, True))  # no bins
    pages = plots.threshold_grids(hist, splits)
    assert len(pages) == 2 and all(p.startswith("data:image/png;base64,") for p in pages)
