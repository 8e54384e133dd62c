"""Words and HTML for an evaluation: the summary ``ctr evaluate`` prints and the report's
"Accuracy" section (confusion matrix and per-class table), both from the figures of
:mod:`ctr.evaluation`."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

HEADLINE = (
    ("accuracy", "accuracy"),
    ("cluster_oracle", "cluster oracle"),
    ("oracle_gap", "gap to oracle"),
    ("unassigned_share", "unassigned"),
    ("macro_f1", "macro-F1"),
)


def _pct(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def summary_text(overall: dict, per_class: pd.DataFrame, *, truth: str = "", unmatched=(), unused=()) -> str:
    """A few lines: the headline figures, where cells went, the worst classes, what did not map."""
    n = int(overall.get("n_cells", 0))
    level = overall.get("level")
    depth = "" if level is None or (isinstance(level, float) and math.isnan(level)) else f", at depth {int(level)}"
    lines = [f"evaluated {n} cells against {truth or 'the reference labels'}{depth}"
             + (f" ({int(overall['n_excluded'])} left out: no reference label, or null in the mapping)" if overall.get("n_excluded") else "")]
    lines.append("  " + "   ".join(f"{name} {_pct(overall.get(key, float('nan')))}" for key, name in HEADLINE))
    lines.append(f"  cells: correct {_pct(overall.get('accuracy'))}, correct ancestor {_pct(overall.get('ancestor_share'))}, "
                 f"wrong {_pct(overall.get('wrong_share'))}, unassigned {_pct(overall.get('unassigned_share'))}, "
                 f"ambiguous {_pct(overall.get('ambiguous_share'))}")
    if len(per_class):
        lines.append(f"  {'class':<32} {'cells':>7} {'recall':>7} {'precision':>9} {'oracle':>7}")
        for _, row in per_class.iterrows():
            lines.append(f"  {str(row['name'])[:32]:<32} {int(row['n_cells']):>7} {_pct(row['recall']):>7} "
                         f"{_pct(row['precision']):>9} {_pct(row['oracle']):>7}")
    if unmatched:
        lines.append(f"reference labels matching no cell type (counted wrong): {', '.join(map(str, unmatched))}")
    if unused:
        lines.append(f"mapping entries not among the reference labels: {', '.join(map(str, unused))}")
    return "\n".join(lines)


def overall_from_table(table: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Split a read-back evaluation.csv into the overall figures and the per-class rows."""
    overall_rows = table.loc[table["kind"] == "overall"]
    overall = {str(k): float(v) for k, v in zip(overall_rows["name"], overall_rows["value"])}
    return overall, table.loc[table["kind"] == "class"].reset_index(drop=True)


def evaluation_section(table: pd.DataFrame, confusion: pd.DataFrame, settings: dict) -> str:
    """The report's "Accuracy" section."""
    overall, per_class = overall_from_table(table)
    kpis = "".join(f"<div class=\"kpi\"><div class=\"value\">{_pct(overall.get(key, float('nan')))}</div>"
                   f"<div class=\"label\">{escape(name)}</div></div>" for key, name in HEADLINE)
    level = settings.get("level")
    note = (f"Each cell's label compared with <code>obs['{escape(str(settings.get('truth', '')))}']</code>"
            + (f" through the mapping <code>{escape(str(settings['mapping']))}</code>" if settings.get("mapping") else "")
            + (f", at ruleset depth {int(level)}" if level is not None else "")
            + ". A label at or below the reference's cell type is correct; one above it (a correct ancestor), "
              "Unassigned and ambiguous labels are not. The cluster oracle gives each cluster the label most of its "
              "cells have: the best any per-cluster annotation could do with these clusters.")
    unmatched = settings.get("unmatched_truth") or []
    warn = (f"<p class=\"warning\">Reference labels matching no cell type of the ruleset (always wrong): "
            f"{escape(', '.join(map(str, unmatched)))}</p>") if unmatched else ""
    return ("<section id=\"accuracy\"><h2>Accuracy</h2>"
            f"<p class=\"note\">{note}</p><div class=\"kpis\">{kpis}</div>{warn}"
            f"<div class=\"panel scroll\"><h3>Confusion matrix (cells; rows: reference, columns: label)</h3>"
            f"{_confusion_table(confusion, list(per_class['name']))}</div>"
            f"<div class=\"panel\"><h3>Per class</h3>{_class_table(per_class)}</div></section>")


def stale_section() -> str:
    """In place of the figures when evaluation.csv belongs to an earlier run in the directory."""
    return ("<section id=\"accuracy\"><h2>Accuracy</h2><p class=\"warning\">The evaluation files in this "
            "directory were written for an earlier run (the run was annotated again since); their figures are not "
            "shown. Run <code>ctr evaluate</code> again to measure this run.</p></section>")


def _confusion_table(confusion: pd.DataFrame, rows: list[str]) -> str:
    if confusion.empty:
        return "<p class=\"note\">No cells were evaluated.</p>"
    wide = confusion.pivot_table(index="truth", columns="predicted", values="n_cells", aggfunc="sum", fill_value=0)
    wide = wide.reindex(index=[r for r in rows if r in wide.index] + [r for r in wide.index if r not in rows])
    # labels named like a reference class first, in the rows' order, so agreement runs down the diagonal
    diagonal = [r for r in wide.index if r in wide.columns]
    columns = diagonal + sorted((c for c in wide.columns if c not in diagonal), key=lambda c: (-int(wide[c].sum()), c))
    head = "".join(f"<th class=\"num\">{escape(str(c))}</th>" for c in columns)
    body = []
    for truth, row in wide.iterrows():
        total = max(int(row.sum()), 1)
        cells = "".join(
            f"<td class=\"num\" style=\"background:rgba(62,124,177,{0.85 * int(row[c]) / total:.2f})\">{int(row[c]) or ''}</td>"
            for c in columns)
        body.append(f"<tr><th>{escape(str(truth))}</th>{cells}</tr>")
    return f"<table class=\"confusion\"><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _class_table(per_class: pd.DataFrame) -> str:
    cols = [("name", "class"), ("n_cells", "cells"), ("recall", "recall"), ("precision", "precision"), ("f1", "F1"),
            ("oracle", "oracle"), ("ancestor", "ancestor"), ("unassigned", "unassigned"), ("ruleset_node", "cell type")]
    num = ' class="num"'
    head = "".join(f"<th{'' if k in ('name', 'ruleset_node') else num}>{escape(t)}</th>" for k, t in cols)
    rows = []
    for _, row in per_class.iterrows():
        tds = []
        for key, _ in cols:
            value = row[key]
            if key in ("recall", "precision", "f1", "oracle"):
                tds.append(f"<td class=\"num\">{_pct(float(value))}</td>")
            elif key in ("n_cells", "ancestor", "unassigned"):
                tds.append(f"<td class=\"num\">{int(float(value)):,}</td>")
            else:
                tds.append(f"<td>{escape('' if pd.isna(value) else str(value))}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
