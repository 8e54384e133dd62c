"""Readers of other tools' marker files, each a pure function ``parse_document(text, file) ->
Document`` with the approximations reported as ``CTR230`` warnings (the loss report).

=========  ==========================================================  ==========================
tool       file                                                        module
=========  ==========================================================  ==========================
garnett    marker file (``>Type`` / ``expressed:`` ...), ``.txt``      :mod:`.garnett`
celesta    prior table with ``Lineage_level``, ``.csv``                :mod:`.celesta`
scyan      knowledge table of 1 / -1 / blank, ``.csv``                 :mod:`.scyan`
scimap     phenotype workflow (``pos``/``neg``/``anypos`` ...), .csv   :mod:`.scimap`
astir      marker YAML (``cell_types``, ``cell_states``, hierarchy)    :mod:`.astir`
=========  ==========================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable

from ctr.lang.document import Document
from ctr.lang.importers import astir, celesta, garnett, scimap, scyan

PARSERS: dict[str, Callable[[str, str], Document]] = {
    "garnett": garnett.parse_document,
    "celesta": celesta.parse_document,
    "scyan": scyan.parse_document,
    "scimap": scimap.parse_document,
    "astir": astir.parse_document,
}
TOOLS = tuple(PARSERS)


def detect(text: str, file: str = "", *, yaml: bool = False) -> str | None:
    """Which tool's format ``text`` is in, from its content (None when it is none of them).
    ``yaml``: the file is named as YAML, so only a YAML-spelled tool's format (Astir) can be it."""
    if yaml:
        return "astir" if _astir(text, file) else None
    head = text.lstrip("\ufeff")[:20000]
    if garnett.looks_like(head):
        return "garnett"
    stripped = head.lstrip()
    if stripped.startswith(("{", "[")):
        return None
    first = stripped.splitlines()[0] if stripped else ""
    if "," in first:
        if celesta.looks_like(head):
            return "celesta"
        if scimap.looks_like(head):
            return "scimap"
        if scyan.looks_like(head):
            return "scyan"
        return None
    if _astir(text, file):
        return "astir"
    return None


def _astir(text: str, file: str) -> bool:
    from ctr.lang.yaml_spelling import YamlLoadError, load_located

    try:
        return astir.looks_like(load_located(text, file or "<text>"))
    except YamlLoadError:
        return False


__all__ = ["PARSERS", "TOOLS", "detect"]
