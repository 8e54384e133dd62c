"""scyan's knowledge table: one row per population, 1 / -1 / blank per marker."""

from __future__ import annotations

from ctr.lang.exporters.common import common_losses, csv_text, markers_in_order, negatives
from ctr.rules.model import Ruleset


def write(ruleset: Ruleset) -> tuple[str, list[str]]:
    losses = common_losses(ruleset, "scyan")
    markers = markers_in_order(ruleset)
    leaves = [n for n in ruleset.walk() if not n.children]
    if any(n.children for n in ruleset.walk()):
        losses.append("scyan's table is written flat: each leaf type is a population and carries its ancestors' "
                      "markers; the parent types themselves are not rows")
    if ruleset.thresholds:
        losses.append("absolute thresholds are dropped; scyan learns marker levels from the data")
    rows = [["Populations", *markers]]
    for leaf in leaves:
        pos: set[str] = set()
        neg: set[str] = set()
        for depth in range(1, len(leaf.path) + 1):
            node = ruleset.node(leaf.path[:depth])
            pos |= set(node.panel_marker_names)
            neg |= set(negatives(node))
        rows.append([leaf.name] + ["1" if m in pos else "-1" if m in neg else "" for m in markers])
    return csv_text(rows), losses
