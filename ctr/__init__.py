"""ctr: cell-type annotation with declarative, traceable tissue rulesets.

The notebook API::

    import ctr
    ruleset = ctr.load_ruleset("pbmc")
    result = ctr.annotate(adata, ruleset, cluster_key="louvain", layer="raw")
    result.clusters            # one row per cluster: label, path, confidence, stop reason
    result.trace               # one row per gate evaluation, citing the rule that decided
    # accuracy against reference labels; a mapping names the ruleset type each reference label
    # means (docs/evaluate.md); without one, labels that match no type count as wrong and
    # .diagnostics says which
    ev = ctr.evaluate(result, adata.obs["bulk_labels"], mapping="lineage.yaml")
    ev.overall, ev.diagnostics
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "annotate", "evaluate", "load_ruleset", "AnnotationResult", "write_run"]


def __getattr__(name: str):
    # Lazy: `ctr --help` and `ctr lint-ruleset` must not pay for importing scanpy.
    if name == "load_ruleset":
        from ctr.lang import load_ruleset

        return load_ruleset
    if name in ("annotate", "AnnotationResult", "write_run"):
        from ctr import api

        return getattr(api, name)
    if name == "evaluate":
        from ctr.evaluation_io import evaluate

        return evaluate
    raise AttributeError(f"module 'ctr' has no attribute {name!r}")
