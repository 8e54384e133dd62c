"""Each marker's positivity split in the views: `ctr explain --markers`, the split beside a
requirement or veto, and the report's "Marker thresholds" section (small multiples and table).

The run is the real engine's (tests/real_run.py); expected values are read from its own
marker_thresholds.csv. The pbmc68k run of the command line is checked in tests/test_cli.py."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from html import escape

import numpy as np
import pandas as pd
import pytest

from ctr.cli import main
from ctr.report import small_multiples
from ctr.report.style import NEGATIVE, POSITIVE
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
    assert part.count("<svg ") == 1  # ten markers fit one page of small multiples
    assert all(f">{escape(m)}</text>" in part for m in thresholds(copied_run)["marker"])  # a panel each
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


SVG = "{http://www.w3.org/2000/svg}"


def _panels(page: str) -> dict[str, ET.Element]:
    """The panels of one small-multiples page (well-formed SVG), keyed by marker name."""
    root = ET.fromstring(page)
    return {g.findall(f"{SVG}text")[0].text: g for g in root.iter(f"{SVG}g") if g.find(f"{SVG}title") is not None}


def _x_range(path: ET.Element) -> tuple[float, float]:
    xs = [float(v) for v in re.findall(r"[MH](-?[\d.]+)", path.get("d"))]
    return min(xs), max(xs)


def test_many_markers_are_paged_into_grids_of_at_most_36():
    rng = np.random.default_rng(0)
    names = [f"M{i}" for i in range(45)]
    edges = np.linspace(0, 4, 49)
    hist = pd.DataFrame({"marker": np.repeat(names, 48), "lower": np.tile(edges[:-1], 45),
                         "upper": np.tile(edges[1:], 45), "count": rng.integers(1, 50, 45 * 48)})
    splits = [MarkerSplit(m, 2.0, ">=", "auto", "mixture", 3.0, 0.4, False) for m in names]
    splits.append(MarkerSplit("FLAT", float("nan"), ">=", "auto", "none", float("nan"), 0.0, True))  # no bins
    pages = small_multiples.threshold_grids(hist, splits)
    assert len(pages) == 2
    panels = [_panels(p) for p in pages]
    assert [len(p) for p in panels] == [36, 10] and "FLAT" in panels[1] and "M44" in panels[1]
    flat = panels[1]["FLAT"]
    assert flat.find(f"{SVG}line") is None and "no values" in [t.text for t in flat.iter(f"{SVG}text")]


def test_each_panel_draws_its_split_between_the_negative_and_positive_bins():
    edges = np.linspace(0, 4, 49)  # the split 2.0 lies on the edge between bins 23 and 24
    hist = pd.DataFrame({"marker": ["A"] * 48 + ["B"] * 48, "lower": np.tile(edges[:-1], 2),
                         "upper": np.tile(edges[1:], 2), "count": np.full(96, 100)})
    splits = [MarkerSplit("A", 2.0, ">=", "auto", "mixture", 3.0, 0.5, False),
              MarkerSplit("B", 0.0, ">", "auto", "floor", float("nan"), 0.9, False)]
    panels = _panels(small_multiples.threshold_grids(hist, splits)[0])
    for marker, first_positive in (("A", 24), ("B", 1)):  # "> 0": the bin starting at the floor is negative
        panel = panels[marker]
        paths = {p.get("fill"): p for p in panel.findall(f"{SVG}path")}
        negative, positive = _x_range(paths[NEGATIVE]), _x_range(paths[POSITIVE])
        x_of = lambda v: negative[0] + (positive[1] - negative[0]) * v / 4  # noqa: E731  (the bins span 0 to 4)
        assert negative[1] == pytest.approx(positive[0]) == pytest.approx(x_of(edges[first_positive]), abs=0.01)
        line = panel.find(f"{SVG}line")
        assert float(line.get("x1")) == pytest.approx(x_of(splits[0 if marker == "A" else 1].threshold), abs=0.01)
        assert panel.find(f"{SVG}title").text == splits[0 if marker == "A" else 1].phrase
