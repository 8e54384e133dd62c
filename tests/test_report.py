"""ctr report: one self-contained HTML file that renders in a browser without errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import pandas as pd
from real_run import REAL_VETO_LINE, write_real_run

from ctr.errors import InputError
from ctr.report.html import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def report(real_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(real_run, run)
    shutil.copy(real_run.parent / "tiny.ctr", run.parent / "tiny.ctr")
    return write_report(run)


def test_report_is_one_self_contained_file(report):
    html = report.read_text()
    assert report.name == "report.html"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no network at view time"
    assert "<link" not in html and "<script src" not in html and "@import" not in html
    assert html.count("data:image/png;base64,") == 1  # the UMAP
    assert html.count("<svg ") == 3  # confidence histogram, dot plot, the marker splits' small multiples
    assert not list(report.parent.glob(".report.*.tmp")), "atomic write leaves no temporary file"


def test_report_has_summary_hierarchy_cards_and_warnings(report):
    html = report.read_text()
    clusters = pd.read_csv(report.parent / "cluster_annotations.csv", dtype={"cluster": str})
    assert html.count('<details class="card"') == len(clusters) == 7
    unassigned = clusters.loc[clusters.final_annotation == "Unassigned", "n_cells"].sum()
    assert f"{unassigned / clusters.n_cells.sum():.1%}" in html
    # the tiny ruleset has no Fibroblasts, which the fallopian tube profile expects at 5-60 % of cells
    assert "Plausibility: Fibroblasts: 0.0% of cells, expected 5%–60% for this tissue." in html
    assert "gating.level_defaults.0.min_coverage" in html  # provenance of the ruleset's own level block
    epithelium = clusters[clusters.annotation_path.str.startswith("Epithelium")]
    labelled = int((clusters.final_annotation == "Epithelium").sum())
    assert f"{len(epithelium)} cluster(s), {epithelium.n_cells.sum()} cells reached; {labelled} labelled here" in html
    assert f"tiny.ctr:{REAL_VETO_LINE}:" in html and "Near miss." in html
    shares = clusters.set_index("cluster").loc["4", "vote_composition"].split(";")
    assert all(f"{name} {float(share):.0%}" in html for name, share in (s.rsplit(":", 1) for s in shares))


def test_report_without_embedding_or_tissue_profile(tmp_path):
    html = write_report(write_real_run(tmp_path / "run", with_h5ad=False)).read_text()
    assert "No UMAP in output.h5ad" in html
    assert "No tissue profile with expected composition" in html
    assert html.count("data:image/png;base64,") == 0 and html.count("<svg ") == 3


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="missing cluster_annotations.csv, params.json"):
        write_report(tmp_path)


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"), reason="/usr/bin/chromium is not installed")
def test_report_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    shot = tmp_path / "report.png"
    url = report.resolve().as_uri()
    run = _chromium(["--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], "\n".join(console)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    if os.environ.get("CTR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CTR_KEEP_SCREENSHOT"])
    # the inline script ran: it fills in the filter count
    dom = _chromium(["--dump-dom", url], tmp_path).stdout
    assert "7 of 7 clusters shown" in dom


def test_embedding_reads_a_fixed_number_of_cells_with_their_own_labels(real_run, monkeypatch):
    # the report's cost must not grow with cells: it draws a fixed-size random subset
    import anndata as ad
    import numpy as np

    from ctr.report import html as report_html
    from ctr.report.rundir_view import load_run

    run = load_run(real_run)
    full = ad.read_h5ad(run.h5ad)
    monkeypatch.setattr(report_html, "EMBEDDING_POINTS", 25)
    coords, labels = report_html._read_obsm(run, ("X_umap",))
    assert len(labels) == len(coords["X_umap"]) == 25 < full.n_obs
    umap = np.asarray(full.obsm["X_umap"])[:, :2]
    rows = [int(np.flatnonzero((umap == point).all(axis=1))[0]) for point in coords["X_umap"]]
    assert labels.tolist() == full.obs["ctr_label"].astype(str).iloc[rows].tolist()


def test_many_clusters_get_cards_for_the_largest_and_a_row_each_for_the_rest(real_run, tmp_path, monkeypatch):
    # the report stays bounded on thousands of clusters: the largest get cards, the rest a table row
    from ctr.report import html as report_html

    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    monkeypatch.setattr(report_html, "CARDS_MAX", 3)
    monkeypatch.setattr(report_html, "DOT_PLOT_ROWS", 2)
    html = write_report(run).read_text()
    clusters = pd.read_csv(run / "cluster_annotations.csv", dtype={"cluster": str})
    largest = clusters.sort_values("n_cells", ascending=False, kind="stable")["cluster"].head(3)
    assert html.count('<details class="card"') == 3
    assert all(f'<span class="cid">Cluster {c}</span>' in html for c in largest)
    assert f"{len(clusters) - 3} smaller clusters" in html
    assert f"Rows: the 2 largest of the {len(clusters)} clusters." in html
