"""Load a run directory (docs/internals.md, "The run directory") into one typed, read-only object.

Every view in ``ctr.report`` starts here, so the file names and the column clean-up (cluster ids
as strings, booleans as booleans) live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctr.engine.trace import Step
from ctr.errors import InputError
from ctr.io.rundir import require_finished_run
from ctr.textfile import ENCODING, decode_error, read_text

REQUIRED = ("cluster_annotations.csv", "params.json")
# columns that hold names and labels (never numbers, never NaN: empty when absent)
TEXT_COLUMNS = (
    "cluster", "path", "parent", "annotation_path", "cell_type", "runner_up", "ambiguous_candidates",
    "vote_composition", "refinement_action", "failed_gates", "root", "root_type", "reason", "gate", "kind",
    "marker", "statistic", "comparison", "expression", "candidates", "markers", "absent", "values",
    "param_key", "layer", "scope", "file", "file_sha256", "shadowed_key", "shadowed_layer",
)
TRACE_NAMES = ("decision_steps.csv", "decision_steps.jsonl")
OPTIONAL_TABLES = {
    "states": "state_calls.csv",
    "state_trace": "state_steps.csv",
    "gating": "gating_details.csv",
    "scores": "marker_scores.csv",
    "evidence": "marker_evidence.csv",
    "refinement": "refinement_log.csv",
    "resolution": "marker_resolution.csv",
    "thresholds": "marker_thresholds.csv",  # each marker's positivity split (runs since positivity: auto)
    "histograms": "marker_histograms.csv",  # each marker's distribution in bins, to draw the split on
}


@dataclass(frozen=True)
class RunDir:
    """The tables of one run. Optional tables are empty frames when the file is absent."""

    path: Path
    clusters: pd.DataFrame
    trace: pd.DataFrame
    params: dict[str, Any]
    gating: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    evidence: pd.DataFrame = field(default_factory=pd.DataFrame)
    refinement: pd.DataFrame = field(default_factory=pd.DataFrame)
    states: pd.DataFrame = field(default_factory=pd.DataFrame)  # cell states called per cluster
    state_trace: pd.DataFrame = field(default_factory=pd.DataFrame)  # their gate rows
    resolution: pd.DataFrame = field(default_factory=pd.DataFrame)  # ruleset marker -> panel name
    thresholds: pd.DataFrame = field(default_factory=pd.DataFrame)  # one positivity split per panel marker
    histograms: pd.DataFrame = field(default_factory=pd.DataFrame)  # marker, lower, upper, count
    display_name: str = ""  # the run's name while it is still written under a staging name
    # each table split by cluster once, on first use (views ask per cluster; a scan each would be
    # O(clusters x rows))
    _by_cluster: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.display_name or self.path.name

    @property
    def cluster_ids(self) -> list[str]:
        return list(self.clusters["cluster"])

    @property
    def h5ad(self) -> Path | None:
        path = self.path / "output.h5ad"
        return path if path.is_file() else None

    def cluster_row(self, cluster: str) -> pd.Series:
        return self.rows_of("clusters", cluster).iloc[0]

    def rows_of(self, table: str, cluster: str) -> pd.DataFrame:
        """The rows of the table named ``table`` (``trace``, ``gating``, ...) that belong to ``cluster``."""
        frame: pd.DataFrame = getattr(self, table)
        if "cluster" not in frame.columns:
            return frame.iloc[0:0]
        groups = self._by_cluster.get(table)
        if groups is None:
            groups = {str(key): rows for key, rows in frame.groupby("cluster", sort=False)}
            self._by_cluster[table] = groups
        return groups.get(cluster, frame.iloc[0:0])

    def trace_of(self, cluster: str) -> pd.DataFrame:
        """The cluster's trace rows in decision order."""
        if "step" not in self.trace.columns or "cluster" not in self.trace.columns:
            return self.rows_of("trace", cluster)
        groups = self._by_cluster.get("trace in steps")
        if groups is None:  # one stable sort of the whole trace keeps each cluster's rows in step order
            ordered = self.trace.sort_values("step", kind="stable")
            groups = {str(key): rows for key, rows in ordered.groupby("cluster", sort=False)}
            self._by_cluster["trace in steps"] = groups
        return groups.get(cluster, self.trace.iloc[0:0])

    def steps_of(self, cluster: str) -> list[Step]:
        """The cluster's trace rows in decision order, as :class:`Step` records (the whole trace
        is read once, on first use)."""
        steps = self._by_cluster.get("steps")
        if steps is None:
            steps = {}
            for step in Step.from_frame(self.trace.sort_values("step", kind="stable") if "step" in self.trace else self.trace):
                steps.setdefault(step.cluster, []).append(step)
            self._by_cluster["steps"] = steps
        return steps.get(cluster, [])


def load_run(run_dir: str | Path, *, finished: bool = True) -> RunDir:
    """Read ``run_dir``; an ``InputError`` names the missing files when it is not a run directory, or
    says it is unfinished when it has no manifest (``finished=False``: a run still being staged)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory; expected a ctr run directory (made by `ctr annotate`)")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    trace_file = next((path / n for n in TRACE_NAMES if (path / n).is_file()), None)
    if trace_file is None:
        missing.append(" or ".join(TRACE_NAMES))
    if missing:
        raise InputError(
            f"{path}: not a ctr run directory; missing {', '.join(missing)}",
            hint="pass the --output-dir of a finished `ctr annotate` run",
        )
    if finished:
        require_finished_run(path)
    try:
        params = json.loads(read_text(path / "params.json", "run's params.json"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path / 'params.json'}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    tables = {key: _read_csv(path / name) for key, name in OPTIONAL_TABLES.items() if (path / name).is_file()}
    clusters = _read_csv(path / "cluster_annotations.csv")
    if "cluster" not in clusters.columns:
        raise InputError(f"{path / 'cluster_annotations.csv'}: no 'cluster' column; columns are {', '.join(clusters.columns)}")
    trace = _read_csv(trace_file) if trace_file.suffix == ".csv" else _read_jsonl(trace_file)
    return RunDir(path=path, clusters=clusters, trace=trace, params=params, **tables)


def _read_jsonl(path: Path) -> pd.DataFrame:
    try:
        return _clean(pd.read_json(path, lines=True, dtype=False))
    except UnicodeDecodeError as exc:
        raise decode_error(path, exc, "table") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON lines ({exc})") from None


def _read_csv(path: Path) -> pd.DataFrame:
    # Cluster ids look numeric ("0", "1", "3.1") but are labels: never let pandas parse them.
    text_cols = {c: str for c in (*TEXT_COLUMNS[:4], "marker", "candidates", "markers", "absent", "file", "file_sha256")}
    try:
        # only an empty field is missing (ctr writes NaN as ""): a cluster named "nan" or "NA" stays a name
        return _clean(pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values=[""], encoding=ENCODING))
    except UnicodeDecodeError as exc:
        raise decode_error(path, exc, "table") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({str(exc).strip()})",
                         hint="the file was changed after ctr wrote it; rerun `ctr annotate` to rewrite it") from None


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    for col in TEXT_COLUMNS:
        if col in frame.columns:
            frame[col] = frame[col].where(frame[col].notna(), "").astype(str)
    if "passed" in frame.columns and frame["passed"].dtype != bool:
        frame["passed"] = frame["passed"].astype(str).str.lower().isin(["true", "1", "yes"])
    for col in ("observed", "threshold", "score", "confidence", "margin", "shadowed_value", "line", "col", "n_markers"):
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if "confidence" in frame.columns and "uncontested" in frame.columns:
        # the CSV leaves an uncontested cluster's confidence empty; in memory it is the infinite margin
        uncontested = frame["uncontested"].astype(str).str.lower().isin(["true", "1"])
        frame["confidence"] = frame["confidence"].mask(uncontested & frame["confidence"].isna(), np.inf)
    return frame


def run_from_result(result, path: str | Path = "<in memory>") -> RunDir:
    """A :class:`RunDir` view of an in-memory ``ctr.api.AnnotationResult`` (before it is written)."""
    params = result.params.as_dict() if hasattr(result.params, "as_dict") else dict(result.params)
    params["provenance"] = dict(getattr(result, "provenance", {}) or {})

    def table(frame) -> pd.DataFrame:
        return _clean(frame.copy()) if isinstance(frame, pd.DataFrame) else pd.DataFrame()

    return RunDir(path=Path(path), clusters=table(result.clusters), trace=table(result.trace), params=params,
                  gating=table(result.gating), scores=table(result.scores), evidence=table(result.evidence),
                  refinement=table(result.refinement_log), states=table(getattr(result, "states", None)),
                  state_trace=table(getattr(result, "state_trace", None)), resolution=table(result.markers),
                  thresholds=table(getattr(result, "thresholds", None)),
                  histograms=table(getattr(result, "histograms", None)))
