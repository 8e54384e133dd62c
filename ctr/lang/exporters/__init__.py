"""Writers of other tools' marker files from a rule graph, each a pure function
``write(ruleset) -> (text, losses)``; ``losses`` say what the target cannot express and how it
was approximated (the same loss report as the importers)."""

from __future__ import annotations

from collections.abc import Callable

from ctr.lang.exporters import celesta, ctref, garnett, scimap, scyan
from ctr.rules.model import Ruleset

WRITERS: dict[str, Callable[[Ruleset], tuple[str, list[str]]]] = {
    "garnett": garnett.write,
    "scimap": scimap.write,
    "celesta": celesta.write,
    "scyan": scyan.write,
    "ct-ref": ctref.write,
}
TARGETS = tuple(WRITERS)

__all__ = ["TARGETS", "WRITERS"]
