"""The grammar, built-in rulesets and tissue profiles ship inside the package.

CI installs with a plain ``pip install ".[test]"`` (not editable), so there this test checks the
installed wheel's files; in an editable checkout it checks the same lookup against the source tree.
"""

from __future__ import annotations

from pathlib import Path

import ctr
from ctr.resources import grammar_path, rulesets_dir, tissues_dir

REPO = Path(__file__).resolve().parents[1]


def test_resources_are_found_next_to_the_package():
    package = Path(ctr.__file__).resolve().parent
    installed = not package.is_relative_to(REPO)
    for folder in (rulesets_dir(), tissues_dir(), grammar_path().parent):
        assert folder.is_dir()
        if installed:  # a wheel install must not reach back into a source checkout
            assert folder.resolve().is_relative_to(package), folder
    assert grammar_path().is_file()
    assert {p.stem for p in rulesets_dir().glob("*.ctr")} >= {
        "fallopian_tube", "lung", "tumor_microenvironment", "pbmc", "codex_immune", "bone_marrow_cytof"}
    assert len(list(tissues_dir().glob("*.yaml"))) >= 5


def test_every_source_ruleset_is_shipped():
    shipped = {p.name for p in rulesets_dir().rglob("*.ctr")}
    in_repo = {p.name for p in (REPO / "rulesets").rglob("*.ctr")}
    assert in_repo <= shipped


def test_every_python_subpackage_is_listed_for_the_wheel():
    """pyproject lists packages by name: a new sub-package left out would be missing from an install."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "ctr").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
