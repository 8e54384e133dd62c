"""Garnett's marker file (``>Type``, ``expressed:``, ``not expressed:``, ``subtype of:``,
``references:``, ``expressed above/below/between:``).

Garnett picks representative cells by their marker scores and trains a classifier on them:
``expressed`` genes are our positive markers; ``not expressed`` genes disqualify a cell from the
training set but only weigh against it in the classifier, so they become anti-markers (a soft
penalty), reported as an approximation. ``expressed above: GENE X`` is an absolute gate
(``threshold GENE > X``); ``below`` and ``between`` have no exact counterpart.
"""

from __future__ import annotations

import re

from ctr.lang.document import Document
from ctr.lang.importers.common import Draft, Imported, assemble

TOOL = "garnett"
_SPEC = re.compile(r"^\s*([A-Za-z][A-Za-z _]*?)\s*:\s*(.*)$")
_KNOWN = ("expressed", "not expressed", "subtype of", "references", "expressed above", "expressed below",
          "expressed between")


def looks_like(text: str) -> bool:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and lines[0].startswith(">") and any(ln.lower().startswith("expressed") for ln in lines)


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_document(text: str, file: str) -> Document:
    imp = Imported(file=file, text=text, tool=TOOL)
    current: Draft | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(">"):
            name = line[1:].strip()
            if not name:
                imp.error(number, "a '>' line needs a cell type name after it", hint="e.g. >T cells")
                current = None
                continue
            current = Draft(name=name, line=number)
            imp.drafts.append(current)
            continue
        match = _SPEC.match(line)
        if current is None or match is None:
            imp.error(number, f"cannot read line {line!r}: expected '>Type' or 'keyword: values'",
                      hint="Garnett lines are '>Cell type', 'expressed: A, B', 'not expressed: C', 'subtype of: P'")
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if key == "expressed":
            current.markers += _items(value)
        elif key == "not expressed":
            current.anti += _items(value)
            imp.loss(number, f"'{current.name}': 'not expressed' genes disqualify training cells in Garnett; "
                     "here they are anti-markers (a soft penalty), not a hard veto")
        elif key == "subtype of":
            current.parent = value
        elif key == "references":
            current.cite += _items(value)
        elif key in ("expressed above", "expressed below", "expressed between"):
            _gate(imp, current, key, value, number)
        else:
            imp.loss(number, f"'{current.name}': Garnett's '{key}:' (meta-data gate) has no counterpart; ignored")
    for draft in imp.drafts:
        if not draft.markers:
            imp.error(draft.line, f"cell type '{draft.name}' has no 'expressed:' genes")
    return assemble(imp, f"imported from Garnett marker file {file}")


def _gate(imp: Imported, draft: Draft, key: str, value: str, line: int) -> None:
    parts = value.replace(",", " ").split()
    try:
        gene, numbers = parts[0], [float(p) for p in parts[1:]]
    except (IndexError, ValueError):
        imp.error(line, f"'{key}:' needs a gene and a number, got {value!r}", hint=f"e.g. {key}: CD4 2")
        return
    if key == "expressed above" and len(numbers) == 1:
        draft.markers.append(gene)
        _threshold(imp, gene, numbers[0], line)
    elif key == "expressed below" and len(numbers) == 1:
        draft.anti.append(gene)
        _threshold(imp, gene, numbers[0], line)
        imp.loss(line, f"'{draft.name}': 'expressed below: {gene} {numbers[0]:g}' becomes an anti-marker with "
                 f"positivity above {numbers[0]:g}")
    elif key == "expressed between" and len(numbers) == 2:
        draft.markers.append(gene)
        _threshold(imp, gene, min(numbers), line)
        imp.loss(line, f"'{draft.name}': 'expressed between: {gene}' keeps the lower bound only "
                 f"(threshold {gene} > {min(numbers):g}); the upper bound is dropped")
    else:
        imp.error(line, f"'{key}:' needs a gene and {'two numbers' if 'between' in key else 'a number'}, got {value!r}")


def _threshold(imp: Imported, gene: str, value: float, line: int) -> None:
    old = imp.thresholds.get(gene)
    if old is not None and old[1] != value:
        imp.loss(line, f"{gene} is gated at {old[1]:g} elsewhere (line {old[2]}); one absolute threshold per "
                 f"marker is kept ({old[1]:g})")
        return
    imp.thresholds[gene] = (">", value, line)
