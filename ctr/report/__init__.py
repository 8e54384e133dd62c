"""Views of a run directory: ``ctr explain`` (text/markdown/JSON), ``ctr report`` (one HTML file)
and ``ctr diff``. Every view reads the trace (decision_steps.csv); none re-implements a gate.

The names are imported lazily so that ``ctr explain`` does not pay for matplotlib.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "explain_run": "ctr.report.explain",
    "explain_clusters": "ctr.report.explain",
    "explain_tables": "ctr.report.explain",
    "explain_markers": "ctr.report.thresholds",
    "write_report": "ctr.report.html",
    "render_report": "ctr.report.html",
    "diff_runs": "ctr.report.diff",
    "compare_runs": "ctr.report.diff",
    "load_run": "ctr.report.rundir_view",
    "RunDir": "ctr.report.rundir_view",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ctr.report' has no attribute {name!r}")
