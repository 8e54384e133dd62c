"""Garnett's marker file: ``>Type``, ``expressed:``, ``not expressed:``, ``subtype of:``, ``references:``."""

from __future__ import annotations

from ctr.lang.exporters.common import common_losses, negatives
from ctr.rules.model import Ruleset


def write(ruleset: Ruleset) -> tuple[str, list[str]]:
    losses = common_losses(ruleset, "Garnett")
    names = [n.name for n in ruleset.walk()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        losses.append(f"Garnett names types uniquely; repeated names ({', '.join(dupes)}) are written as they are "
                      "and Garnett will refuse them")
    if ruleset.thresholds:
        losses.append("absolute thresholds are written as 'expressed above:' only for the types that list the marker")
    gates = {t.marker: t.value for t in ruleset.thresholds}
    blocks = []
    for node in ruleset.walk():
        lines = [f">{node.name}"]
        plain = [m for m in node.panel_marker_names if m not in gates]
        if plain:
            lines.append("expressed: " + ", ".join(plain))
        for m in node.panel_marker_names:
            if m in gates:
                lines.append(f"expressed above: {m} {gates[m]:g}")
        if negatives(node):
            lines.append("not expressed: " + ", ".join(negatives(node)))
        if len(node.path) > 1:
            lines.append(f"subtype of: {node.path[-2]}")
        if node.cite:
            lines.append("references: " + ", ".join(node.cite))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n", losses
