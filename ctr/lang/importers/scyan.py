"""scyan's knowledge table: one row per population, one column per marker; 1 = expressed,
-1 = not expressed, blank (or NA) = unknown, values in between = intermediate expression.

scyan is a probabilistic model: -1 weighs against a population without forbidding it, so it
becomes an anti-marker. Intermediate values (e.g. 0.5) have no counterpart: a value > 0 is read
as positive, < 0 as anti, and each such cell is reported. Extra leading columns that name parent
populations (scyan's hierarchy levels) become the type tree.
"""

from __future__ import annotations

from ctr.lang.document import Document
from ctr.lang.importers.common import Draft, Imported, assemble, read_csv_rows

TOOL = "scyan"
_EMPTY = {"", "na", "nan", "none"}


def _value(cell: str) -> float | None:
    if cell.strip().lower() in _EMPTY:
        return None
    return float(cell)


def looks_like(text: str) -> bool:
    head = text.lstrip("\ufeff").splitlines()[:6]
    if not head:
        return False
    body = ",".join(head[1:]).replace(" ", "").split(",")
    values = {v for v in body if v}
    return "-1" in values and "Lineage_level" not in head[0] and not values & {"pos", "neg", "anypos", "allpos"}


def parse_document(text: str, file: str) -> Document:
    imp = Imported(file=file, text=text, tool=TOOL)
    rows = read_csv_rows(imp)
    if not rows:
        imp.error(1, "the file is empty: a scyan table has a header row of markers and one row per population")
        return assemble(imp, f"imported from scyan table {file}")
    (_, header), body = rows[0], rows[1:]
    # leading columns without numbers are the population and its parents (hierarchy levels)
    n_names = _name_columns(body)
    markers = header[n_names:]
    seen: set[str] = set()
    for line, cells in body:
        names = [c for c in cells[:n_names] if c]
        if not names:
            imp.error(line, "a row without a population name")
            continue
        # scyan writes the population first and its coarser levels after it
        chain = list(dict.fromkeys(reversed(names)))
        for depth, name in enumerate(chain[:-1]):
            if name not in seen:
                seen.add(name)
                imp.drafts.append(Draft(name=name, line=line, parent=chain[depth - 1] if depth else None))
        draft = Draft(name=chain[-1], line=line, parent=chain[-2] if len(chain) > 1 else None)
        for marker, cell in zip(markers, cells[n_names:]):
            try:
                value = _value(cell)
            except ValueError:
                imp.error(line, f"'{draft.name}', {marker}: {cell!r} is not 1, -1, a number or blank")
                continue
            if value is None or value == 0:
                continue
            (draft.markers if value > 0 else draft.anti).append(marker)
            if abs(value) != 1:
                imp.loss(line, f"'{draft.name}': {marker} = {cell} (intermediate expression) is read as "
                         f"{'positive' if value > 0 else 'anti'}")
        if draft.anti:
            imp.loss(line, f"'{draft.name}': -1 markers ({', '.join(draft.anti)}) weigh against the population in "
                     "scyan's likelihood; here they are anti-markers (a soft penalty)")
        if draft.name in seen:
            # a level name that is also a population: give the level its own markers
            for d in imp.drafts:
                if d.name == draft.name:
                    d.markers, d.anti = draft.markers, draft.anti
            continue
        seen.add(draft.name)
        imp.drafts.append(draft)
    for draft in imp.drafts:
        if not draft.markers and not any(d.parent == draft.name for d in imp.drafts):
            imp.loss(draft.line, f"'{draft.name}' is defined by negative markers only; ctr needs a positive "
                     "marker for coverage, so this type can never be assigned")
    return assemble(imp, f"imported from scyan knowledge table {file}")


def _name_columns(body: list[tuple[int, list[str]]]) -> int:
    """How many leading columns hold names rather than 1/-1/blank values."""
    def numeric(cell: str) -> bool:
        try:
            _value(cell)
            return True
        except ValueError:
            return False

    n = 1
    while body and all(len(c) > n and not numeric(c[n]) for _, c in body if any(c[n:])):
        n += 1
        if n > 5:
            break
    return n
