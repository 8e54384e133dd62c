"""``ctr report``: one self-contained HTML file (inline CSS, JS and PNG figures) per run directory.

Everything shown is read from the run directory; the per-cluster cards reuse ``explain``'s records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
import json
import math
from html import escape
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from ctr.engine.trace import Step
from ctr.io.atomic import write_text_atomic
from ctr.io.rundir import updating_run_dir
from ctr.report import plots, small_multiples
from ctr.report.explain import (
    STOP_REASONS,
    ClusterExplanation,
    LevelDecision,
    format_number,
    explain_clusters,
    level_heading,
    outcome_sentence,
)
from ctr.report.rundir_view import RunDir, load_run
from ctr.report.sentences import describe, gate_reason, measure
from ctr.report.thresholds import METHODS, marker_splits, table_cells
from ctr.rules.model import PATH_SEP

REPORT_NAME = "report.html"
OPEN_CARDS_UP_TO = 8  # small runs open every card; larger ones start collapsed
# the report's cost follows what it shows: beyond these many clusters only the largest get a card
# (the rest one table row each) and a row in the dot plot
CARDS_MAX = 200
DOT_PLOT_ROWS = 60


def write_report(run_dir: str | Path, *, staged_as: str | None = None) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path.

    A finished run gets the report added to its manifest (a report.html ctr did not write is never
    replaced); ``staged_as`` is the final name of a run still being written in a staging directory."""
    if staged_as is not None:
        run = replace(load_run(run_dir, finished=False), display_name=staged_as)
        return write_text_atomic(run.path / REPORT_NAME, render_report(run))
    run = load_run(run_dir)  # names what is missing when the folder is not a run at all
    with updating_run_dir(run_dir, [REPORT_NAME]) as root:
        return write_text_atomic(root / REPORT_NAME, render_report(run))


def render_report(run: RunDir) -> str:
    """The whole page as one string."""
    explanations = explain_clusters(run, _largest_clusters(run, CARDS_MAX))
    clusters = run.clusters
    colours = plots.palette(_label_order(clusters))
    sections = [
        _summary(run, colours),
        _hierarchy(run),
        _evidence_section(run, explanations),
        _thresholds_section(run),
        _embedding(run, colours),
        _cards(run, explanations, colours),
    ]
    accuracy = _accuracy(run) or _reference_hint(run)
    if accuracy:
        sections.insert(1, accuracy)
    title = f"ctr report: {run.name}"
    css = files("ctr.report").joinpath("report.css").read_text(encoding="utf-8")
    js = files("ctr.report").joinpath("report.js").read_text(encoding="utf-8")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{css}</style></head><body>"
        f"<div class=\"layout\">{_toc(run, explanations)}<main>"
        f"<h1>{escape(title)}</h1><p class=\"sub\">{escape(_subtitle(run))}</p>"
        + "".join(sections)
        + f"</main></div><script>{js}</script></body></html>\n"
    )


# --- page parts ------------------------------------------------------------------------------------


def _subtitle(run: RunDir) -> str:
    rs = run.params.get("ruleset") or {}
    prov = run.params.get("provenance") or {}
    parts = []
    if rs.get("name"):
        meta = rs.get("metadata") or {}
        about = ", ".join(f"{k} {meta[k]}" for k in ("version", "tissue") if meta.get(k))
        parts.append(f"ruleset {rs['name']}" + (f" ({about})" if about else ""))
    tissue = _tissue(run)
    if tissue.get("name"):
        parts.append(f"tissue profile {tissue['name']}")
    if prov.get("ctr_version"):
        parts.append(f"ctr {prov['ctr_version']}")
    parts.append(f"run created {prov.get('created', 'at an unknown time')}")
    parts.append(f"report written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    return " · ".join(parts)


def _toc(run: RunDir, explanations: list[ClusterExplanation]) -> str:
    labels = sorted({e.label for e in explanations})
    stops = sorted({e.stop_reason for e in explanations})
    items = "".join(
        f"<li data-cluster=\"{i}\" data-label=\"{escape(e.label)}\" data-stop=\"{escape(e.stop_reason)}\""
        f" data-search=\"{escape(_search_text(e))}\"><a href=\"#cluster-{i}\"><span>{escape(e.cluster)} · "
        f"{escape(e.label)}</span><span class=\"count\">{e.n_cells or ''}</span></a></li>"
        for i, e in enumerate(explanations)
    )
    options = lambda values: "".join(f"<option value=\"{escape(v)}\">{escape(v)}</option>" for v in values)  # noqa: E731
    return (
        "<nav class=\"toc\"><div class=\"brand\">ctr report<small>" + escape(run.name) + "</small></div>"
        "<h2>Contents</h2><ul><li><a href=\"#summary\">Summary</a></li>"
        + ("<li><a href=\"#accuracy\">Accuracy</a></li>" if _has_evaluation(run) else "") + "<li><a href=\"#hierarchy\">Hierarchy</a></li>"
        "<li><a href=\"#evidence\">Marker evidence</a></li>"
        + ("<li><a href=\"#thresholds\">Marker thresholds</a></li>" if marker_splits(run) else "")
        + "<li><a href=\"#embedding\">Embedding</a></li>"
        "<li><a href=\"#clusters\">Clusters</a></li></ul>"
        "<h2>Filter clusters</h2>"
        f"<label for=\"filter-label\">Label</label><select id=\"filter-label\"><option value=\"\">all labels</option>{options(labels)}</select>"
        f"<label for=\"filter-stop\">Stop reason</label><select id=\"filter-stop\"><option value=\"\">all stop reasons</option>{options(stops)}</select>"
        "<label for=\"filter-text\">Search</label><input id=\"filter-text\" type=\"search\" placeholder=\"cluster, marker, cell type\">"
        "<div class=\"buttons\"><button id=\"expand-all\" type=\"button\">Expand all</button>"
        "<button id=\"collapse-all\" type=\"button\">Collapse all</button></div>"
        "<p class=\"note\" id=\"shown-count\"></p>"
        f"<h2>Clusters</h2><ul>{items}</ul></nav>"
    )


def _summary(run: RunDir, colours: dict[str, str]) -> str:
    c = run.clusters
    cells = _cells(c)
    total = float(cells.sum()) or 1.0
    unassigned = (c["final_annotation"] == "Unassigned").to_numpy()
    ambiguous = c["stop_reason"].astype(str).str.startswith("ambiguous").to_numpy()
    conf = pd.to_numeric(c.get("confidence", pd.Series(dtype=float)), errors="coerce")
    finite = conf[np.isfinite(conf.to_numpy()) & ~unassigned]
    kpis = [
        (str(len(c)), "clusters"),
        (f"{int(cells.sum()):,}", "cells"),
        (f"{cells[unassigned].sum() / total:.1%}", f"cells unassigned ({int(unassigned.sum())} clusters)"),
        (str(int(ambiguous.sum())), "ambiguous clusters"),
        (format_number(float(finite.median())) if len(finite) else "n/a", "median confidence (assigned, contested)"),
    ]
    kpi_html = "".join(f"<div class=\"kpi\"><div class=\"value\">{escape(v)}</div><div class=\"label\">{escape(k)}</div></div>"
                       for v, k in kpis)
    by_label = (pd.DataFrame({"label": c["final_annotation"].to_numpy(), "cells": cells.to_numpy()})
                .groupby("label", sort=False).agg(clusters=("cells", "size"), cells=("cells", "sum"))
                .sort_values("cells", ascending=False))
    comp_rows = "".join(
        f"<tr><td><span class=\"swatch\" style=\"background:{colours.get(lab, plots.UNASSIGNED)}\"></span>{escape(lab)}</td>"
        f"<td class=\"num\">{r.clusters}</td><td class=\"num\">{int(r.cells):,}</td><td class=\"num\">{r.cells / total:.1%}</td>"
        f"<td style=\"width:30%\"><div class=\"bar\"><span style=\"width:{100 * r.cells / total:.1f}%;background:"
        f"{colours.get(lab, plots.UNASSIGNED)}\"></span></div></td></tr>"
        for lab, r in by_label.iterrows()
    )
    stop_counts = c["stop_reason"].value_counts()
    stop_rows = "".join(
        f"<tr><td><span class=\"badge stop-{escape(s)}\">{escape(s)}</span></td><td class=\"num\">{n}</td>"
        f"<td class=\"note\">{escape(STOP_REASONS.get(s, ''))}</td></tr>" for s, n in stop_counts.items()
    )
    conf_img = plots.confidence_plot(conf) if len(conf) else ""
    return (
        "<section id=\"summary\"><h2>Summary</h2>"
        f"<div class=\"kpis\">{kpi_html}</div>{_plausibility(run, cells)}"
        "<div class=\"grid2\"><div class=\"panel\"><h3>Label composition</h3><table><thead><tr><th>label</th>"
        "<th class=\"num\">clusters</th><th class=\"num\">cells</th><th class=\"num\">share</th><th></th></tr></thead>"
        f"<tbody>{comp_rows}</tbody></table></div>"
        "<div class=\"panel\"><h3>Where annotation stopped</h3><table><thead><tr><th>stop reason</th><th class=\"num\">clusters</th>"
        f"<th>meaning</th></tr></thead><tbody>{stop_rows}</tbody></table>"
        f"<h3>Confidence</h3>{conf_img}</div></div>"
        f"{_marker_names(run)}{_parameters(run)}</section>"
    )


def _marker_names(run: RunDir, shown: int = 60) -> str:
    """Which panel column each ruleset marker was read from, when any was found under another name
    (a synonym, a tagged channel such as 141Pr_CD45) or not at all: marker_resolution.csv in words."""
    res = run.resolution
    if res.empty or not {"marker", "panel_name", "how"} <= set(res.columns):
        return ""
    how = res["how"].fillna("missing").astype(str)
    column = (run.params.get("provenance") or {}).get("var_names") if "var_name" in res.columns else None
    listed = how != "exact" if column is None else how == how  # names read from a column: every channel
    other = res.loc[listed]
    if other.empty:
        return ""
    counts = how[how != "exact"].value_counts()
    lead = (f"{len(other)} of the ruleset's {len(res)} markers are not in the panel under their own name ("
            + ", ".join(f"{n} {h}" for h, n in counts.items()) + "): the table gives the column each was read from "
            "(docs/marker-names.md explains the steps).")
    if column is not None:
        lead = (f"The panel's marker names were read from var['{column}'] (its var_names are channels, kept as they "
                f"are in output.h5ad); {int((how != 'missing').sum())} of the ruleset's {len(res)} markers were found "
                "there: the table gives the channel each was read from.")

    def cell(value) -> str:
        return f"<td>{escape('' if pd.isna(value) else str(value))}</td>"

    channel = ("<th>channel (var_name)</th>", lambda r: cell(r.var_name)) if column is not None else ("", lambda r: "")
    rows = "".join(f"<tr>{cell(r.marker)}{cell(r.panel_name)}<td>{escape(h)}</td>{channel[1](r)}</tr>"
                   for r, h in zip(other.head(shown).itertuples(), how[listed].head(shown)))
    more = f"<p class=\"note\">+{len(other) - shown} more in marker_resolution.csv</p>" if len(other) > shown else ""
    return (f"<h3>Marker names</h3><p>{escape(lead)}</p><details class=\"params\"><summary>Ruleset marker and the "
            "panel column it was read from</summary><table><thead><tr><th>ruleset marker</th><th>panel column</th>"
            f"<th>how</th>{channel[0]}</tr></thead><tbody>{rows}</tbody></table>{more}</details>")


def _has_evaluation(run: RunDir) -> bool:
    from ctr.evaluation_io import CONFUSION_CSV, EVALUATION_CSV

    return (run.path / EVALUATION_CSV).is_file() and (run.path / CONFUSION_CSV).is_file()


def _accuracy(run: RunDir) -> str:
    """The "Accuracy" section, when `ctr evaluate` has written an evaluation into the run."""
    if not _has_evaluation(run):
        return ""
    from ctr.evaluation_io import read_evaluation, run_fingerprint
    from ctr.report.evaluation import evaluation_section, stale_section

    evaluation = read_evaluation(run.path)
    if evaluation is None:
        return ""
    if evaluation[2].get("run_fingerprint") not in (None, run_fingerprint(run.path)):
        return stale_section()
    return evaluation_section(*evaluation)


def _plausibility(run: RunDir, cells: pd.Series) -> str:
    """Warnings where the composition falls outside the tissue profile's expected ranges."""
    expected = _tissue(run).get("expected_composition") or {}
    if not expected:
        return "<p class=\"note\">No tissue profile with expected composition was used, so no plausibility check.</p>"
    total = float(cells.sum()) or 1.0
    paths = run.clusters.get("annotation_path", pd.Series([""] * len(run.clusters))).astype(str)
    labels = run.clusters["final_annotation"].astype(str)
    warnings, checked = [], []
    for cell_type, bounds in expected.items():
        low, high = _bounds(bounds)
        inside = [cell_type in p.split(PATH_SEP) or cell_type == lab for p, lab in zip(paths, labels)]
        share = float(cells[np.array(inside, dtype=bool)].sum()) / total
        checked.append(cell_type)
        if (low is not None and share < low) or (high is not None and share > high):
            rng = f"{low:.0%}–{high:.0%}" if low is not None and high is not None else (
                f">= {low:.0%}" if low is not None else f"<= {high:.0%}")
            warnings.append(f"{cell_type}: {share:.1%} of cells, expected {rng} for this tissue.")
    name = _tissue(run).get("name", "the tissue profile")
    if not warnings:
        return f"<p class=\"note\">Composition is within the expected ranges of {escape(str(name))} ({escape(', '.join(checked))}).</p>"
    return "".join(f"<div class=\"warning\">Plausibility: {escape(w)}</div>" for w in warnings)


def _bounds(bounds) -> tuple[float | None, float | None]:
    if isinstance(bounds, dict):
        low, high = bounds.get("min", bounds.get("low")), bounds.get("max", bounds.get("high"))
    elif isinstance(bounds, (list, tuple)) and len(bounds) == 2:
        low, high = bounds
    else:
        return None, None
    return (None if low is None else float(low)), (None if high is None else float(high))


def _parameters(run: RunDir) -> str:
    params = {k: v for k, v in run.params.items() if k not in ("provenance", "sources", "ruleset", "tissue")}
    sources = run.params.get("sources") or {}
    flat = _flatten(params)
    rows = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(_fmt_value(v))}</td>"
        f"<td>{escape(str(sources.get(k, 'default')))}</td></tr>" for k, v in flat.items()
    )
    meta = {"ruleset": run.params.get("ruleset"), "provenance": run.params.get("provenance")}
    meta_flat = _flatten({k: v for k, v in meta.items() if v})
    meta_rows = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(_fmt_value(v))}</td></tr>"
        for k, v in meta_flat.items() if not k.endswith("source_text") and not k.endswith(".source")
    )
    changed = [k for k in flat if sources.get(k, "default") != "default"]
    lead = (f"{len(changed)} parameter(s) differ from the built-in defaults: " + ", ".join(changed)
            if changed else "All parameters are built-in defaults.")
    return (
        f"<h3>Run parameters and provenance</h3><p>{escape(lead)}</p>"
        "<details class=\"params\"><summary>All parameters in force</summary><table><thead><tr><th>parameter</th>"
        f"<th>value</th><th>set by</th></tr></thead><tbody>{rows}</tbody></table></details>"
        "<details class=\"params\"><summary>Ruleset and provenance</summary><table><tbody>"
        f"{meta_rows}</tbody></table></details>"
    )


def _hierarchy(run: RunDir) -> str:
    """The ruleset's types (as evaluated in the trace), with the clusters and cells that reached each."""
    gates = run.trace.loc[run.trace["kind"] == "gate", ["path", "cell_type"]]
    nodes = list(dict.fromkeys(p for p in gates["path"] if p))
    cells = _cells(run.clusters)
    finals = list(zip(run.clusters.get("annotation_path", pd.Series([""] * len(cells))).astype(str), cells))
    evaluated = run.trace.loc[run.trace["kind"] == "gate"].groupby("path")["cluster"].nunique().to_dict()

    def reached(node: str) -> tuple[int, int, int]:
        hits = [(n, p == node) for p, n in finals if p == node or p.startswith(node + PATH_SEP)]
        return len(hits), int(sum(n for n, _ in hits)), sum(1 for _, here in hits if here)

    children: dict[str, list[str]] = {}
    for node in nodes:
        parent = node.rsplit(PATH_SEP, 1)[0] if PATH_SEP in node else ""
        children.setdefault(parent, []).append(node)

    def branch(parent: str) -> str:
        items = []
        for node in children.get(parent, []):
            n_clusters, n_cells, n_final = reached(node)
            name = node.split(PATH_SEP)[-1]
            cls = "" if n_clusters else " unreached"
            detail = (f"{n_clusters} cluster(s), {n_cells:,} cells reached; {n_final} labelled here; "
                      f"gated in {evaluated.get(node, 0)} cluster(s)")
            items.append(f"<li><span class=\"node{cls}\"><strong>{escape(name)}</strong>"
                         f"<span class=\"count\">{escape(detail)}</span></span>{branch(node)}</li>")
        return f"<ul>{''.join(items)}</ul>" if items else ""

    return ("<section id=\"hierarchy\"><h2>Hierarchy</h2><p class=\"note\">Each cell type of the ruleset that was "
            "evaluated; <em>reached</em> counts clusters whose final path passes through the type.</p>"
            f"<div class=\"tree panel\">{branch('')}</div></section>")


def _evidence_section(run: RunDir, explanations: list[ClusterExplanation]) -> str:
    ev = run.evidence
    if ev.empty or not {"marker", "pos_frac", "enrichment"} <= set(ev.columns):
        return "<section id=\"evidence\"><h2>Marker evidence</h2><p class=\"note\">No marker_evidence.csv in this run.</p></section>"
    ev = _positive_evidence(ev)
    decided = _deciding_markers(ev, explanations)
    if not decided:
        return "<section id=\"evidence\"><h2>Marker evidence</h2><p class=\"note\">No marker decided a label.</p></section>"
    shown = set(_largest_clusters(run, DOT_PLOT_ROWS))
    rows = [f"{e.cluster} · {e.label}" for e in explanations if e.cluster in shown]
    row_of = {e.cluster: f"{e.cluster} · {e.label}" for e in explanations}
    table = ev.assign(row=ev["cluster"].map(row_of)).dropna(subset=["row"])
    figure = plots.dot_plot(table, rows, decided)
    return ("<section id=\"evidence\"><h2>Marker evidence</h2><p class=\"note\">The positive markers of every "
            "cell type on the clusters' final paths. Dot size: fraction of the cluster's cells positive; colour: "
            "enrichment over the whole sample (blue below, red above; the scale is capped so that a few extreme "
            "markers do not wash out the rest). A missing dot: the marker was not evaluated "
            f"for that cluster.{_shown_of(len(rows), len(run.clusters))}</p><div class=\"panel\">{figure}</div></section>")


def _positive_evidence(ev: pd.DataFrame) -> pd.DataFrame:
    """The rows the dot plot draws: positive markers the panel measures, named as the panel names
    them (CD3D, CD3E and CD3G read from one CD3 channel are one column, CD3; a marker the panel
    lacks has no dot anywhere and would only widen the plot)."""
    if "role" in ev.columns:
        ev = ev.loc[~ev["role"].astype(str).str.contains("anti")]
    if "resolved" in ev.columns:
        ev = ev.loc[ev["resolved"].astype(str) == "True"]
    if "panel_name" in ev.columns:
        panel = ev["panel_name"].astype("string")
        ev = ev.assign(marker=panel.where(panel.notna() & (panel != ""), ev["marker"].astype(str)))
    return ev


def _deciding_markers(ev: pd.DataFrame, explanations: list[ClusterExplanation], limit: int = 48) -> list[str]:
    """Markers of the cell types on the clusters' final paths: every cluster's final type first (the
    most specific evidence), then their parents, so a long list is cut at the least specific end."""
    key = "path" if "path" in ev.columns else "cell_type"
    depth = max((len(e.path) for e in explanations), default=0)
    markers: list[str] = []
    by_cluster = {str(c): rows for c, rows in ev.groupby("cluster", sort=False)}  # one pass, not one per cluster
    for up in range(depth):
        for e in explanations:
            if up >= len(e.path) or e.cluster not in by_cluster:
                continue
            node = PATH_SEP.join(e.path[: len(e.path) - up]) if key == "path" else e.path[len(e.path) - up - 1]
            rows = by_cluster[e.cluster]
            markers += list(rows.loc[rows[key] == node, "marker"].astype(str))
    return list(dict.fromkeys(markers))[:limit]


def _thresholds_section(run: RunDir) -> str:
    """Each marker's positivity split: its histogram with the split drawn on it (small multiples)
    and a table. Read from marker_thresholds.csv and marker_histograms.csv (a row per marker and
    bin, never the cells); a run without them (written before they existed) has no section."""
    splits = marker_splits(run)
    if not splits:
        return ""
    figures = "".join(f"<div class=\"panel\">{svg}</div>" for svg in small_multiples.threshold_grids(run.histograms, splits))
    rows = [table_cells(s) for s in splits]
    text_cols = ("marker", "method")
    head = "".join(f"<th{'' if c in text_cols else ' class=num'}>{escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td title=\"{escape(METHODS.get(v, ''))}\">{escape(v)}</td>" if c == "method" else
                         f"<td{'' if c in text_cols else ' class=num'}>{escape(v)}</td>" for c, v in row.items()) + "</tr>"
        for row in rows)
    used = dict.fromkeys(s.method for s in splits)
    legend = "; ".join(f"<em>{escape(m)}</em>: {escape(METHODS[m])}" for m in used if m in METHODS)
    return ("<section id=\"thresholds\"><h2>Marker thresholds</h2><p class=\"note\">Where each marker turns positive "
            "and how that was decided. Each panel is the marker's distribution over all cells (counts on a square-root "
            "scale), the dashed line its threshold, bars above it red; the title gives the method and the share of "
            "cells positive. Quality is Ashman's D of the two-population fit (2 or more: two resolved populations). "
            "A threshold that cuts through a population rather than between two is worth a <code>threshold</code> "
            f"line in the ruleset.</p>{figures}<table class=\"thresholds\"><thead><tr>{head}</tr></thead><tbody>{body}"
            f"</tbody></table><p class=\"note\">{legend}</p></section>")


# obs columns that hold reference labels in the data sets people bring (scanpy, CELESTA, FACS sorts)
REFERENCE_COLUMNS = ("cell_type", "celltype", "cell_types", "reference_labels", "bulk_labels", "ground_truth",
                     "truth", "labels", "annotation", "cell_type_original")


# what drew obsm['X_umap'] when ctr clustered (params.json clustering.embedding)
EMBEDDING_SOURCES = {
    "igraph_umap": "UMAP layout of ctr's kNN graph computed by igraph (Graph.layout_umap; same graph as "
                   "the Leiden clusters, min_dist 0.5)",
    "umap_learn": "UMAP of ctr's kNN graph computed by umap-learn (scanpy tl.umap)",
    "rapids_umap": "UMAP computed on the GPU by rapids-singlecell (tl.umap)",
}


def _embedding(run: RunDir, colours: dict[str, str]) -> str:
    head = "<section id=\"embedding\"><h2>Embedding</h2>"
    found = _read_obsm(run, ("X_umap", "spatial"))
    if found is None:
        return head + "<p class=\"note\">No UMAP in output.h5ad (obsm['X_umap']; no output.h5ad in this run), so no embedding plot.</p></section>"
    coords, labels = found
    parts = []
    if "X_umap" in coords:
        img = plots.scatter_plot(coords["X_umap"], labels, colours)
        method = EMBEDDING_SOURCES.get((run.params.get("clustering") or {}).get("embedding"))
        if method:
            parts.append(f"<p class=\"note\">{escape(method)}, coloured by each cell's final label.</p>")
        parts.append(f"<div class=\"panel\"><img class=\"figure\" alt=\"UMAP coloured by label\" src=\"{img}\"></div>")
    else:
        parts.append("<p class=\"note\">No UMAP in output.h5ad (obsm['X_umap']), so no embedding plot.</p>")
    if "spatial" in coords:
        img = plots.scatter_plot(coords["spatial"], labels, colours, axis_names=("x", "y"), tissue=True)
        parts.append("<h3 id=\"spatial\">Spatial map</h3><p class=\"note\">Each cell at its position in the "
                     "tissue (obsm['spatial']), coloured by its final label.</p>"
                     f"<div class=\"panel\"><img class=\"figure\" alt=\"spatial map coloured by label\" src=\"{img}\"></div>")
    return head + "".join(parts) + "</section>"


# the embedding plots draw at most this many cells (a fixed random subset): the report's cost
# must not grow with cells, and beyond a few ten thousand points a scatter shows nothing more
EMBEDDING_POINTS = 50_000


def _read_obsm(run: RunDir, keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray], pd.Series] | None:
    """The first two columns of each present ``obsm`` key of output.h5ad, and the cells' final
    labels, for at most ``EMBEDDING_POINTS`` cells; only those elements are read from the file."""
    if run.h5ad is None:
        return None
    import h5py
    from anndata.io import read_elem

    with h5py.File(run.h5ad, "r") as f:
        present = [k for k in keys if "obsm" in f and k in f["obsm"] and isinstance(f["obsm"][k], h5py.Dataset)
                   and f["obsm"][k].ndim == 2 and f["obsm"][k].shape[1] >= 2]
        columns = _obs_columns(f)
        label_col = "ctr_label" if "ctr_label" in columns else next(
            (c for c in columns if c.endswith("_label") and c.replace("_label", "_stop_reason") in columns), None)
        if label_col is None or not present:
            return ({}, pd.Series([], dtype=str)) if label_col is not None else None
        labels = read_elem(f["obs"][label_col])
        n = len(labels)
        rows = np.arange(n) if n <= EMBEDDING_POINTS else np.sort(
            np.random.default_rng(0).choice(n, EMBEDDING_POINTS, replace=False))
        coords = {k: np.asarray(f["obsm"][k][:, :2], dtype=float)[rows] for k in present}
    return coords, pd.Series(np.asarray(labels[rows])).astype(str)


def _obs_columns(f) -> list[str]:
    """The obs column names of an open .h5ad (read from the group's attributes, no column loaded)."""
    if "obs" not in f:
        return []
    return [str(c) for c in f["obs"].attrs.get("column-order", [])]


def _reference_hint(run: RunDir) -> str:
    """Without an evaluation: a pointer to `ctr evaluate` when the data carry reference labels."""
    if run.h5ad is None:
        return ""
    import h5py

    with h5py.File(run.h5ad, "r") as f:
        found = [c for c in _obs_columns(f) if c.lower() in REFERENCE_COLUMNS]
    if not found:
        return ""
    column = found[0]
    return ("<section id=\"accuracy\"><h2>Accuracy</h2><p class=\"note\">The data carry reference labels in "
            f"obs['{escape(column)}']. To compare this run with them (accuracy, confusion matrix, the best any "
            f"per-cluster labelling could reach), run <code>ctr evaluate {escape(str(run.path))} --truth "
            f"{escape(column)}</code> (add <code>--mapping FILE</code> when their names differ from the ruleset's); "
            "this section then shows the comparison.</p></section>")


def _cards(run: RunDir, explanations: list[ClusterExplanation], colours: dict[str, str]) -> str:
    open_all = len(explanations) <= OPEN_CARDS_UP_TO
    cards = "".join(_card(i, e, run, colours, open_all) for i, e in enumerate(explanations)) + _other_clusters(run, explanations)
    return ("<section id=\"clusters\"><h2>Clusters</h2><p class=\"note\">One card per cluster: the decision at each "
            "level, every gate with its observed value, threshold and the rule that set it, and what would have to "
            f"change for the runner-up to win. Click a card to open it.</p>{cards}</section>")


def _largest_clusters(run: RunDir, limit: int) -> list[str]:
    """Every cluster id when there are at most ``limit``, else the ``limit`` largest; in run order."""
    ids = run.cluster_ids
    if len(ids) <= limit:
        return ids
    sizes = pd.to_numeric(run.clusters["n_cells"], errors="coerce").fillna(0).to_numpy() \
        if "n_cells" in run.clusters.columns else np.zeros(len(ids))
    keep = {ids[i] for i in np.argsort(-sizes, kind="stable")[:limit]}
    return [c for c in ids if c in keep]


def _shown_of(shown: int, total: int) -> str:
    return "" if shown >= total else f" Rows: the {shown} largest of the {total} clusters."


def _other_clusters(run: RunDir, explanations: list[ClusterExplanation]) -> str:
    """One table row per cluster without a card (runs with more than ``CARDS_MAX`` clusters)."""
    carded = {e.cluster for e in explanations}
    rest = run.clusters.loc[~run.clusters["cluster"].isin(carded)]
    if rest.empty:
        return ""
    cols = [c for c in ("cluster", "final_annotation", "n_cells", "stop_reason", "score") if c in rest.columns]
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{escape(format_number(v) if isinstance(v, float) else str(v))}</td>"
                                    for v in row) + "</tr>" for row in rest[cols].itertuples(index=False))
    return (f"<h3 id=\"other-clusters\">{len(rest)} smaller clusters</h3><p class=\"note\">Cards are drawn for the "
            f"{len(carded)} largest clusters; <code>ctr explain {escape(str(run.path))} --cluster ID</code> explains any "
            f"other.</p><div class=\"panel\"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _card(i: int, e: ClusterExplanation, run: RunDir, colours: dict[str, str], is_open: bool) -> str:
    conf = "uncontested" if e.confidence == math.inf else format_number(e.confidence)
    swatch = f"<span class=\"swatch\" style=\"background:{colours.get(e.label, plots.UNASSIGNED)}\"></span>"
    head = (f"<summary><span class=\"cid\">Cluster {escape(e.cluster)}</span>{swatch}<span class=\"lab\">{escape(e.label)}</span>"
            f"<span class=\"spacer\"></span><span class=\"badge stop-{escape(e.stop_reason)}\">{escape(e.stop_reason)}</span>"
            f"<span class=\"badge\">{e.n_cells if e.n_cells is not None else '?'} cells</span>"
            f"<span class=\"badge\">confidence {escape(conf)}</span></summary>")
    body = [f"<p class=\"summary-line\">{escape(e.summary)}</p>"]
    if e.path:
        body.append("<p class=\"crumbs\">" + "".join(f"<span>{escape(p)}</span>" for p in e.path) + "</p>")
    body += [_level(d, e) for d in e.levels]
    if e.near_miss:
        body.append(f"<div class=\"callout\"><strong>Near miss.</strong> {escape(e.near_miss.sentence)}</div>")
    if e.votes:
        body.append(_votes(e.votes, colours))
    if e.refinement:
        body.append("<h4>Refinement</h4><ul>" + "".join(f"<li>{escape(r)}</li>" for r in e.refinement) + "</ul>")
    if e.states:
        items = "".join(
            f"<li><strong>{escape(st.state)}</strong>: {'called' if st.called else 'not called'}<ul>"
            + "".join(f"<li>{escape(describe(g))}</li>" for g in st.gates) + "</ul></li>"
            for st in e.states
        )
        body.append(f"<h4>Cell states</h4><ul class=\"states\">{items}</ul>")
    body.append(_card_evidence(run, e))
    return (f"<details class=\"card\" id=\"cluster-{i}\"{' open' if is_open else ''} data-label=\"{escape(e.label)}\" data-stop=\"{escape(e.stop_reason)}\" "
            f"data-search=\"{escape(_search_text(e))}\">{head}<div class=\"body\">{''.join(body)}</div></details>")


def _level(d: LevelDecision, e: ClusterExplanation) -> str:
    rows = []
    for c in d.candidates:
        chosen = " class=\"chosen\"" if c.cell_type == d.chosen and c.passed and d.outcome in ("winner", "leaf") else ""
        gates = "".join(_gate_chip(g, e.split_note(g)) for g in c.gates)
        rows.append(f"<tr{chosen}><td>{escape(c.cell_type)}</td><td class=\"num\">{format_number(c.score)}</td>"
                    f"<td>{'passed' if c.passed else 'failed'}</td><td><div class=\"gates\">{gates}</div></td></tr>")
    return (f"<div class=\"level\"><h4>{escape(level_heading(d))}</h4><div class=\"outcome\">{escape(outcome_sentence(d))}</div>"
            "<table class=\"cand\"><thead><tr><th>cell type</th><th class=\"num\">score</th><th>result</th><th>gates</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _gate_chip(g: Step, split: str = "") -> str:
    cls = "pass" if g.passed else "fail"
    mark = "\u2713" if g.passed else "\u2717"
    value = "missing" if math.isnan(g.observed) else format_number(g.observed)
    text = f"{mark} {measure(g)} {value} {g.comparison} {format_number(g.threshold)}"
    loc = f" <span class=\"loc\">· {escape(g.location)}</span>" if not g.passed and g.location else ""
    return f"<span class=\"gate {cls}\" title=\"{escape(describe(g) + '. ' + gate_reason(g) + split)}\">{escape(text)}{loc}</span>"


def _votes(votes: dict[str, float], colours: dict[str, str]) -> str:
    total = sum(votes.values()) or 1.0
    extra = plots.palette(list(votes))
    colour = lambda k: "#d9dde2" if k == "Uncertain" else colours.get(k, extra[k])  # noqa: E731
    bar = "".join(f"<span style=\"width:{100 * v / total:.1f}%;background:{colour(k)}\" title=\"{escape(k)} {v / total:.0%}\"></span>"
                  for k, v in votes.items())
    legend = "".join(f"<span><span class=\"swatch\" style=\"background:{colour(k)}\"></span>{escape(k)} {v / total:.0%}</span>"
                     for k, v in votes.items())
    return (f"<h4>Per-cell votes</h4><p class=\"note\">How the cluster's cells voted among the tied candidates "
            f"(evidence only; votes never change the label).</p><div class=\"votes\">{bar}</div><div class=\"legend\">{legend}</div>")


def _card_evidence(run: RunDir, e: ClusterExplanation) -> str:
    ev = run.evidence
    if ev.empty or "marker" not in ev.columns or not e.path:
        return ""
    key = "path" if "path" in ev.columns else "cell_type"
    nodes = [PATH_SEP.join(e.path[: i + 1]) for i in range(len(e.path))] if key == "path" else e.path
    rows = run.rows_of("evidence", e.cluster)
    rows = rows.loc[rows[key].isin(nodes)]
    if rows.empty:
        return ""
    cols = [c for c in ("marker", "cell_type", "role", "pos_frac", "enrichment", "median", "threshold", "de_rank") if c in rows.columns]
    text_cols = ("marker", "cell_type", "role")
    head = "".join(f"<th{' class=num' if c not in text_cols else ''}>{escape(c.replace('_', ' '))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(
            f"<td>{escape(str(r[c]))}</td>" if c in text_cols else f"<td class=\"num\">{_fmt_cell(c, r[c])}</td>"
            for c in cols) + "</tr>"
        for r in rows[cols].to_dict("records")
    )
    return f"<h4>Marker evidence on the path</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- small helpers --------------------------------------------------------------------------------


def _label_order(clusters: pd.DataFrame) -> list[str]:
    cells = _cells(clusters)
    order = pd.Series(cells.to_numpy(), index=clusters["final_annotation"].astype(str)).groupby(level=0).sum()
    return list(order.sort_values(ascending=False).index)


def _cells(clusters: pd.DataFrame) -> pd.Series:
    if "n_cells" in clusters.columns:
        return pd.to_numeric(clusters["n_cells"], errors="coerce").fillna(0).astype(int).reset_index(drop=True)
    return pd.Series(np.ones(len(clusters), dtype=int))


def _tissue(run: RunDir) -> dict:
    tissue = run.params.get("tissue") or (run.params.get("provenance") or {}).get("tissue") or {}
    return tissue if isinstance(tissue, dict) else {}


def _search_text(e: ClusterExplanation) -> str:
    names = {c.cell_type for d in e.levels for c in d.candidates}
    markers = {g.marker for d in e.levels for c in d.candidates for g in c.gates if g.marker}
    return " ".join([e.cluster, e.label, e.stop_reason, *sorted(names), *sorted(markers)]).lower()


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    out[prefix.rstrip(".")] = obj
    return out


def _fmt_cell(column: str, value) -> str:
    if column == "de_rank":
        return "" if pd.isna(value) else str(int(value))
    return _fmt_value(value)


def _fmt_value(value) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)
