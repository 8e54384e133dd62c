"""What ``ctr rulesets`` lists: the built-in rulesets and the tissue profiles."""

from __future__ import annotations

from ctr.rules.tissues import list_tissues


def list_catalogue() -> dict:
    """``{"rulesets": [{name, description, cell_types, file}], "tissues": [{name, aliases, ruleset,
    preset, description}]}``; a built-in that fails to compile is listed with its ``error``."""
    from ctr.errors import CtrError
    from ctr.lang import builtin_rulesets, load_ruleset

    rulesets = []
    for name, path in builtin_rulesets().items():
        entry = {"name": name, "description": "", "cell_types": None, "file": str(path)}
        try:
            ruleset = load_ruleset(path)
            entry.update(description=ruleset.description, cell_types=ruleset.cell_type_count)
        except CtrError as exc:
            entry["error"] = exc.message
        rulesets.append(entry)
    tissues = [
        {"name": t.name, "aliases": t.aliases, "ruleset": t.ruleset, "preset": t.preset, "description": t.description}
        for t in list_tissues()
    ]
    return {"rulesets": rulesets, "tissues": tissues}
