"""scimap's phenotype workflow: ``group, phenotype, pos/neg ...`` rows, the first group ``all``.

Markers become ``pos`` (one marker) or ``allpos`` (several: every one must pass the gate, the
closest scimap rule to a type defined by all its markers), the members of a marker group
``any(...)`` ``anypos`` (scimap's own rule for alternatives); anti-markers and vetoes become ``neg``
(one) or ``allneg``. scimap reads values rescaled so that the gate is 0.5."""

from __future__ import annotations

from ctr.lang.exporters.common import common_losses, csv_text, markers_in_order, negatives
from ctr.rules.model import Ruleset


def write(ruleset: Ruleset) -> tuple[str, list[str]]:
    losses = common_losses(ruleset, "scimap", groups=True)
    losses.append("scimap scores single cells on values rescaled to a 0.5 gate; rescale the data (sm.pp.rescale) "
                  "with gates that match this ruleset's positivity")
    if ruleset.thresholds:
        losses.append("absolute thresholds are dropped; in scimap they are the gates of sm.pp.rescale")
    markers = markers_in_order(ruleset)
    rows = [["", "", *markers]]
    for node in ruleset.walk():
        group = node.path[-2] if len(node.path) > 1 else "all"
        pos = [m.name for m in node.markers if not m.any_of]
        alternatives = [name for m in node.markers for name in m.any_of]
        neg = negatives(node)
        if len(node.groups) > 1:
            losses.append(f"'{node.path_str}': its marker groups ({', '.join(node.groups)}) are written as one "
                          "`anypos` set; a scimap row has one")
        word_pos = "pos" if len(pos) == 1 else "allpos"
        word_neg = "neg" if len(neg) == 1 else "allneg"
        cells = [word_pos if m in pos else "anypos" if m in alternatives else word_neg if m in neg else ""
                 for m in markers]
        rows.append([group, node.name, *cells])
    return csv_text(rows), losses
