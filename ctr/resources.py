"""Locate the files that ship with ctr: the grammar, built-in rulesets and tissue profiles.

In a wheel they are the packages ``ctr.grammar``, ``ctr.rulesets`` and ``ctr.tissues``;
in a source checkout they are the top-level folders of the same names.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(kind: str) -> Path:
    """Return the folder holding ``kind`` ("grammar", "rulesets" or "tissues").

    A wheel installs them as ``ctr/<kind>/``; a checkout (or editable install) has them
    beside the package.
    """
    installed = _PACKAGE / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def grammar_path() -> Path:
    return resource_dir("grammar") / "ctr.lark"


def rulesets_dir() -> Path:
    return resource_dir("rulesets")


def tissues_dir() -> Path:
    return resource_dir("tissues")
