"""docs/errors.md documents every diagnostic code a user can see."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import ctr
from ctr.diagnostics import CODES

ERRORS_MD = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def _import_every_module() -> None:
    """Codes are registered at import; import the whole package so none is missed."""
    for module in pkgutil.walk_packages(ctr.__path__, "ctr."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def test_every_registered_code_has_a_section_in_errors_md():
    _import_every_module()
    sections = dict(re.findall(r"(?m)^## (CTR\d{3}) (.+)$", ERRORS_MD.read_text()))
    assert len(CODES) > 50
    missing = sorted(set(CODES) - set(sections))
    assert not missing, f"codes without a '## CTRxxx' section in docs/errors.md: {missing}"
    unknown = sorted(set(sections) - set(CODES))
    assert not unknown, f"docs/errors.md documents codes nothing registers: {unknown}"


def test_code_sections_are_in_order_and_titled_as_registered():
    _import_every_module()
    found = re.findall(r"(?m)^## (CTR\d{3}) (.+)$", ERRORS_MD.read_text())
    codes = [code for code, _ in found]
    assert codes == sorted(codes) and len(codes) == len(set(codes))
    for code, title in found:
        assert title.startswith(CODES[code][1]), (code, title, CODES[code][1])
