"""Write a run directory: the tables, params.json, output.h5ad. Every file lands atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctr.io.atomic import write_csv_atomic, write_h5ad_atomic, write_json_atomic
from ctr.io.h5ad_copy import write_h5ad_over_copy
from ctr.io.rundir import staged_run_dir

TABLES = {
    "cluster_annotations.csv": "clusters",
    "gating_details.csv": "gating",
    "decision_steps.csv": "trace",
    "marker_scores.csv": "scores",
    "marker_evidence.csv": "evidence",
    "refinement_log.csv": "refinement_log",
    "marker_resolution.csv": "markers",
    "state_calls.csv": "states",  # written when the ruleset declares cell states
    "state_steps.csv": "state_trace",
    "marker_thresholds.csv": "thresholds",
    "marker_histograms.csv": "histograms",
}
STATE_TABLES = ("states", "state_trace")


def csv_view(clusters: pd.DataFrame) -> pd.DataFrame:
    """cluster_annotations.csv as spreadsheets read it: an uncontested cluster (no runner-up, so an
    infinite margin) has an empty confidence, said by its ``uncontested`` column, never "inf"."""
    if "confidence" not in clusters.columns or "uncontested" not in clusters.columns:
        return clusters
    out = clusters.copy()
    confidence = pd.to_numeric(out["confidence"], errors="coerce")
    out["confidence"] = confidence.where(~np.isinf(confidence))
    return out


@dataclass(frozen=True)
class InputCopy:
    """output.h5ad as a copy of the input .h5ad ``source`` with ``obs_columns`` and ``uns_keys``
    written in (:func:`ctr.io.h5ad_copy.write_h5ad_over_copy`): the run changed nothing else."""

    source: Path
    obs_columns: tuple[str, ...]
    uns_keys: tuple[str, ...]


def write_run(result, run_dir: str | Path, *, adata=None, force: bool = False, extra: dict | None = None,
              prepared: bool = False, copy: InputCopy | None = None) -> Path:
    """Write ``result`` (an :class:`~ctr.api.AnnotationResult`) into ``run_dir``, whole or not at all
    (see :func:`ctr.io.rundir.staged_run_dir`; ``force`` replaces an earlier run there).

    ``prepared=True`` when the caller is already writing into a staging directory (the pipeline
    stages the whole run, report included) and ``run_dir`` is that directory. ``copy``: write
    output.h5ad as a copy of the input file with the changed elements, not with anndata's writer.
    """
    if prepared:
        return _write_files(result, Path(run_dir), adata, extra, copy)
    with staged_run_dir(run_dir, force=force) as staging:
        _write_files(result, staging, adata, extra, copy)
    return Path(run_dir)


def _write_files(result, run: Path, adata, extra: dict | None, copy: InputCopy | None = None) -> Path:
    for filename, attr in TABLES.items():
        table = getattr(result, attr, None)
        if attr in STATE_TABLES and not result.ruleset.states:
            continue
        if isinstance(table, pd.DataFrame):
            write_csv_atomic(run / filename, csv_view(table) if attr == "clusters" else table)
    params = result.params.as_dict()
    params["ruleset"] = {
        "name": result.ruleset.name,
        "source_file": result.ruleset.source_file,
        "sha256": result.ruleset.digest,
        "stored_copy": result.ruleset.stored_sha256 is not None,
        "metadata": dict(result.ruleset.meta),  # e.g. the reference tool's _marker_map_metadata
    }
    params["provenance"] = result.provenance
    params["tissue"] = result.provenance.get("tissue")
    if extra:
        params.update(extra)
    write_json_atomic(run / "params.json", params)
    if result.diagnostics:
        write_json_atomic(run / "input_checks.json", [d.to_dict() for d in result.diagnostics])
    if adata is not None and copy is not None:
        write_h5ad_over_copy(run / "output.h5ad", copy.source, adata, obs_columns=copy.obs_columns,
                             uns_keys=copy.uns_keys)
    elif adata is not None:
        write_h5ad_atomic(run / "output.h5ad", adata)
    return run
