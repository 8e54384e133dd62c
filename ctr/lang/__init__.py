"""The ruleset language front end: DSL, YAML and JSON spellings -> one validated rule graph.

Public API (used by the CLI and the engine)::

    compile_ruleset(source, *, text=None, fmt=None) -> CompileResult   # never raises for user errors
    load_ruleset(source) -> Ruleset                                     # raises RulesetError
    builtin_rulesets() -> dict[str, Path]
    export_text(ruleset, fmt) -> str
"""

from ctr.lang.export import export_text
from ctr.lang.loader import CompileResult, builtin_rulesets, compile_ruleset, format_of, load_ruleset, ruleset_files

__all__ = [
    "CompileResult",
    "builtin_rulesets",
    "compile_ruleset",
    "export_text",
    "format_of",
    "load_ruleset",
    "ruleset_files",
]
