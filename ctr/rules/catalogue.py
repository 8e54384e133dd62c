"""What ``ctr rulesets`` lists: the built-in rulesets and the tissue profiles."""

from __future__ import annotations

from ctr.resources import rulesets_dir
from ctr.rules.tissues import list_tissues

_EXTENSIONS = (".ctr", ".yaml", ".yml", ".json")


def builtin_ruleset_files() -> dict[str, str]:
    """Built-in ruleset name -> file path (top level of ``rulesets/``; ``common/`` holds includes)."""
    return {p.stem: str(p) for p in sorted(rulesets_dir().iterdir()) if p.suffix in _EXTENSIONS and p.is_file()}


def list_catalogue() -> dict:
    """``{"rulesets": [{name, description, cell_types, file}], "tissues": [{name, aliases, ruleset,
    preset, description}]}``; a ruleset that fails to compile is listed with its ``error``."""
    from ctr.errors import CtrError
    from ctr.lang import load_ruleset

    rulesets = []
    for name, path in builtin_ruleset_files().items():
        entry = {"name": name, "description": "", "cell_types": None, "file": path}
        try:
            ruleset = load_ruleset(path)
            entry.update(name=ruleset.name, description=ruleset.description, cell_types=ruleset.cell_type_count)
        except CtrError as exc:
            entry["error"] = exc.message
        rulesets.append(entry)
    tissues = [
        {"name": t.name, "aliases": t.aliases, "ruleset": t.ruleset, "preset": t.preset, "description": t.description}
        for t in list_tissues()
    ]
    return {"rulesets": rulesets, "tissues": tissues}
