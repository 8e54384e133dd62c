"""docs/errors.md documents every diagnostic code a user can see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctr.codes import CODES
from ctr.diagnostics import Diagnostic

ERRORS_MD = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def _sections() -> list[tuple[str, str]]:
    """(code, heading) of every '## CTRxxx ...' section of docs/errors.md, in order."""
    return [(m.group(1), m.group(0)[3:]) for m in re.finditer(r"(?m)^## (CTR\d{3})\b.*$", ERRORS_MD.read_text())]


def test_errors_md_has_one_section_per_code_with_its_title_and_severity():
    sections = _sections()
    codes = [code for code, _ in sections]
    assert codes == sorted(codes) and len(codes) == len(set(codes)), "sections in code order, each once"
    assert sorted(CODES) == codes, (sorted(set(CODES) ^ set(codes)))
    for code, heading in sections:
        assert heading == CODES[code].heading, (code, heading, CODES[code].heading)


def test_codes_live_in_one_table():
    """No module registers a code of its own: ctr/codes.py is the table."""
    package = Path(__file__).resolve().parents[1] / "ctr"
    calls = [str(p.relative_to(package)) for p in package.rglob("*.py")
             if p.name != "diagnostics.py" and re.search(r"\bregister\(\s*\"CTR", p.read_text(encoding="utf-8"))]
    assert not calls, f"move these codes into ctr/codes.py: {calls}"


def test_every_code_links_to_its_section():
    """A code's doc anchor is the GitHub anchor of its heading."""
    for code in CODES.values():
        path, anchor = code.doc.split("#")
        assert path == "docs/errors.md" and anchor.startswith(code.code.lower() + "-")


def test_a_diagnostic_with_an_unknown_code_is_refused():
    with pytest.raises(ValueError, match="CTR999"):
        Diagnostic("CTR999", "no such code")
    assert Diagnostic("CTR206", "a warning").level == "warning" == CODES["CTR206"].severity
