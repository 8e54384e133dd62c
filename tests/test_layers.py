"""Imports run one way (docs/internals.md, "Layers"): a module imports only from its own layer or a
lower one, at module level or inside a function alike."""

from __future__ import annotations

import ast
from pathlib import Path

import ctr

PACKAGE = Path(ctr.__file__).resolve().parent

# lowest first; a module may import its own layer and any layer before it. The package's __init__
# (``ctr.annotate`` ...) is the public face, an edge; its ``__version__`` is a foundation.
LAYERS = [
    ("foundation", {"ctr.__version__", "ctr.codes", "ctr.errors", "ctr.diagnostics", "ctr.resources", "ctr.textfile", "ctr.progress",
                    "ctr.memory"}),
    ("rules", {"ctr.rules"}),
    ("lang", {"ctr.lang"}),
    ("data", {"ctr.data"}),
    ("stats", {"ctr.stats"}),
    ("engine", {"ctr.engine", "ctr.evaluation"}),
    ("io", {"ctr.io"}),
    ("report", {"ctr.report"}),
    ("edge", {"ctr", "ctr.options", "ctr.out_of_core", "ctr.previous_run", "ctr.api", "ctr.pipeline", "ctr.cli", "ctr.__main__", "ctr.ruleset_commands",
              "ctr.interop_commands", "ctr.evaluation_io"}),
]
# known crossings, each with the reason it is allowed to stay
EXCEPTIONS = {
    # the report shows an evaluation written beside the run (issue 14's `ctr evaluate`)
    ("ctr.report.html", "ctr.evaluation_io"),
}


def _layer(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} belongs to no layer of tests/test_layers.py"
    return best[0]


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "ctr":  # from ctr import api, __version__
            out.update(f"ctr.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ctr" and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "ctr")
    return out


def test_imports_run_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        for target in _imports(path):
            if _layer(target) > _layer(module) and (module, target) not in EXCEPTIONS:
                wrong.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_the_engine_reads_no_files_and_runs_no_clustering():
    """Refinement is given the functions that split a cluster and compute statistics."""
    engine = PACKAGE / "engine"
    for path in engine.rglob("*.py"):
        for target in _imports(path):
            assert not target.startswith(("ctr.data", "ctr.io", "ctr.lang")), (path.name, target)
