"""Read a marker panel (the variable names a ruleset will be matched against) from a file."""

from __future__ import annotations

from pathlib import Path

from ctr.errors import InputError

_ACCEPTED = "an .h5ad file (its var_names) or a text file with one marker per line or comma-separated ('#' starts a comment)"


def read_panel(path: str | Path) -> list[str]:
    """The marker names of a panel file, in file order, without duplicates.

    ``.h5ad``: the ``var_names`` (read without loading the matrix); anything else is text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: panel file not found; expected {_ACCEPTED}")
    if path.suffix.lower() == ".h5ad":
        names = _h5ad_var_names(path)
    else:
        names = _text_names(path)
    if not names:
        raise InputError(f"{path}: no marker names found; expected {_ACCEPTED}")
    return list(dict.fromkeys(names))


def read_panel_var(path: str | Path):
    """The ``var`` table of an .h5ad panel file (index: var_names), read without the matrix; None
    for a text panel, which has names only."""
    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        return None
    import anndata

    if not path.is_file():
        raise InputError(f"{path}: panel file not found; expected {_ACCEPTED}")
    try:
        adata = anndata.read_h5ad(path, backed="r")
    except Exception as exc:  # h5py/anndata raise many types for a damaged file
        raise InputError(f"{path}: cannot read as .h5ad ({exc}); expected {_ACCEPTED}") from None
    try:
        return adata.var.copy()
    finally:
        adata.file.close()


def _h5ad_var_names(path: Path) -> list[str]:
    return [str(v) for v in read_panel_var(path).index]


def _text_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file; expected {_ACCEPTED}") from None
    names: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        names += [part.strip() for part in line.split(",") if part.strip()]
    return names
