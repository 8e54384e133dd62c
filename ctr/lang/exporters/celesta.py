"""CELESTA's prior table: ``Lineage_level`` = round_parent_self, then 1 / 0 / NA per marker."""

from __future__ import annotations

from ctr.lang.exporters.common import common_losses, csv_text, markers_in_order, negatives
from ctr.rules.model import Ruleset


def write(ruleset: Ruleset) -> tuple[str, list[str]]:
    losses = common_losses(ruleset, "CELESTA")
    if ruleset.thresholds:
        losses.append("absolute thresholds are dropped; CELESTA gates on marker probabilities")
    markers = markers_in_order(ruleset)
    number = {node.path: i for i, node in enumerate(ruleset.walk(), start=1)}
    rows = [["", "Lineage_level", *markers]]
    for node in ruleset.walk():
        parent = number[node.path[:-1]] if len(node.path) > 1 else 0
        level = f"{len(node.path)}_{parent}_{number[node.path]}"
        neg = set(negatives(node))
        rows.append([node.name, level] + ["1" if m in node.panel_marker_names else "0" if m in neg else "NA" for m in markers])
    return csv_text(rows), losses
