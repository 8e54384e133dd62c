"""The edges of evaluation: the mapping file, the Python API on AnnData or an annotate() result,
and ``ctr evaluate RUN_DIR`` (read output.h5ad, write evaluation.csv, refresh report.html).

The figures themselves are computed by the pure functions of :mod:`ctr.evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctr.codes import BAD_MAPPING
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.errors import InputError, ParameterError
from ctr.evaluation import (
    AMBIGUITY_SEP,
    UNASSIGNED,
    Evaluation,
    LabelMapping,
    Path_,
    evaluate_labels,
    ruleset_nodes,
    split_label_path,
)
from ctr.previous_run import PreviousRun

EVALUATION_CSV = "evaluation.csv"
CONFUSION_CSV = "evaluation_confusion.csv"
EVALUATION_JSON = "evaluation.json"

MappingLike = str | Path | Mapping[str, Any] | LabelMapping | None



def load_mapping(path: str | Path) -> LabelMapping:
    """Read a mapping YAML: ``reference label: cell type`` (a name or ``"Root / Child"`` path),
    a list of cell types (any of them is correct), or ``null`` (leave those cells out)."""
    from ctr.lang.yaml_spelling import LocDict, YamlLoadError, load_located

    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{file}: no such mapping file", hint="give a YAML file of 'reference label: cell type' lines")
    try:
        data = load_located(p.read_text(encoding="utf-8"), file)
    except YamlLoadError as exc:
        raise ParameterError(f"{file}: not a valid mapping file",
                             diagnostics=[Diagnostic(BAD_MAPPING, str(exc), loc=exc.loc)]) from None
    except UnicodeDecodeError:
        raise ParameterError(f"{file}: not a text file") from None
    if not isinstance(data, dict):
        loc = getattr(data, "loc", None) or SourceLoc(file=file, line=1, column=1)
        raise ParameterError(f"{file}: not a valid mapping file", diagnostics=[Diagnostic(
            BAD_MAPPING, f"expected 'reference label: cell type' entries, found {type(data).__name__}", loc=loc,
            hint="write one 'reference label: cell type' per line")])
    targets: dict[str, tuple[Path_, ...] | None] = {}
    locs: dict[str, SourceLoc] = {}
    errors = []
    for key, value in data.items():
        loc = data.key_locs.get(key) if isinstance(data, LocDict) else None
        # an unknown cell type is reported at the value, where the fix goes
        locs[str(key)] = data.value_locs.get(key, loc) if isinstance(data, LocDict) else loc
        values = value if isinstance(value, list) else ([] if value is None else [value])
        bad = [v for v in values if not isinstance(v, str | int | float) or isinstance(v, bool) or not str(v).strip()]
        if bad:
            errors.append(Diagnostic(BAD_MAPPING, f"'{key}': expected a cell type name, a list of names or null, "
                                     f"found {bad[0]!r}", loc=data.value_locs.get(key, loc) if isinstance(data, LocDict) else loc))
            continue
        targets[str(key)] = None if value is None or values == [] else tuple(split_label_path(str(v)) for v in values)
    if errors:
        raise ParameterError(f"{file}: not a valid mapping file", diagnostics=errors)
    return LabelMapping(targets=targets, source=file, locs=locs)


def as_mapping(mapping: MappingLike) -> LabelMapping | None:
    """A mapping file path, a dict ``{reference label: name | [names] | None}``, or a LabelMapping."""
    if mapping is None or isinstance(mapping, LabelMapping):
        return mapping
    if isinstance(mapping, str | Path):
        return load_mapping(mapping)
    if isinstance(mapping, Mapping):
        targets: dict[str, tuple[Path_, ...] | None] = {}
        for key, value in mapping.items():
            values = list(value) if isinstance(value, list | tuple) else ([] if value is None else [value])
            targets[str(key)] = tuple(split_label_path(str(v)) for v in values) if values else None
        return LabelMapping(targets=targets, source="<mapping dict>")
    raise ParameterError(f"mapping must be a YAML file path or a dict, got {type(mapping).__name__}")


def nodes_with_predictions(nodes: Sequence[Path_], paths: Sequence[str]) -> list[Path_]:
    """The ruleset's nodes plus every node the run predicted (refinement and manual labels may add
    names the ruleset does not have), each with its ancestors."""
    out = dict.fromkeys(tuple(n) for n in nodes)
    for text in pd.unique(pd.Series(paths, dtype=object).astype(str)):
        path = split_label_path(text)
        if not path or path == (UNASSIGNED,) or AMBIGUITY_SEP in path[0]:
            continue
        for depth in range(1, len(path) + 1):
            out.setdefault(path[:depth])
    return list(out)


def evaluate(
    data,
    truth: str | Sequence[str],
    *,
    mapping: MappingLike = None,
    level: int | None = None,
    clusters: str | Sequence[str] | None = None,
    key_added: str = "ctr",
) -> Evaluation:
    """Accuracy of an annotation against reference labels.

    Parameters
    ----------
    data
        An AnnData annotated by ctr (its ``obs[f"{key_added}_label"]`` and ``_path``; ``output.h5ad``
        of a run) or the :class:`~ctr.api.AnnotationResult` of ``ctr.annotate``.
    truth
        The reference labels: an ``obs`` column name (AnnData) or one label per cell.
    mapping
        Reference label -> ruleset cell type: a YAML file, or a dict whose values are a name,
        a ``"Root / Child"`` path, a list of names (any is correct) or None (leave those cells out).
        Labels not in the mapping are matched to cell type names (case-insensitively).
    level
        Compare at this depth of the ruleset (0 = the roots): predictions and targets are cut there.
    clusters
        Clusters for the oracle: an ``obs`` column or one id per cell (default: the run's final
        clusters, ``obs[f"{key_added}_cluster"]``).
    """
    from ctr.api import AnnotationResult

    if isinstance(data, AnnotationResult):
        cells = data.cell_labels
        labels, paths = cells["label"].to_numpy(), cells["path"].to_numpy()
        cluster_ids = cells["cluster"].to_numpy() if clusters is None else _per_cell(clusters, None, "clusters", len(cells))
        truth_values = _per_cell(truth, None, "truth", len(cells))
        nodes = ruleset_nodes(data.ruleset)
    else:
        obs = data.obs
        label_key, path_key = f"{key_added}_label", f"{key_added}_path"
        missing = [k for k in (label_key, path_key) if k not in obs.columns]
        if missing:
            raise InputError(f"obs has no {', '.join(missing)}: this data was not annotated by ctr with prefix '{key_added}'",
                             hint="annotate first (ctr.annotate / ctr annotate), or pass key_added=... for another prefix")
        labels, paths = obs[label_key].astype(str).to_numpy(), obs[path_key].astype(str).to_numpy()
        cluster_ids = _per_cell(f"{key_added}_cluster" if clusters is None else clusters, obs, "clusters", len(obs))
        truth_values = _per_cell(truth, obs, "truth", len(obs))
        nodes = _nodes_of(PreviousRun.of(data, key_added))
    nodes = nodes_with_predictions(nodes, paths)
    return evaluate_labels(truth_values, labels, paths, cluster_ids, nodes, mapping=as_mapping(mapping), level=level)


def _per_cell(values, obs: pd.DataFrame | None, what: str, n: int) -> np.ndarray:
    if isinstance(values, str):
        if obs is None:
            raise ParameterError(f"{what}={values!r} names an obs column, but an annotate() result has no obs",
                                 hint=f"pass the values, e.g. {what}=adata.obs[{values!r}]")
        if values not in obs.columns:
            raise InputError(f"obs has no column '{values}'{did_you_mean(values, obs.columns)}",
                             hint=f"obs columns: {', '.join(map(str, obs.columns[:30]))}")
        column = obs[values].astype(object)
        out = column.where(column.notna(), None).to_numpy()  # missing stays missing (left out)
    else:
        out = np.asarray(pd.Series(values, dtype=object).to_numpy())
    if len(out) != n:
        raise InputError(f"{what} has {len(out)} values for {n} cells")
    return out


def _nodes_of(run: PreviousRun) -> list[Path_]:
    """The node paths of the ruleset the run stored in ``uns[key_added]`` (empty when absent)."""
    ruleset = run.ruleset()
    return ruleset_nodes(ruleset) if ruleset is not None else []


def evaluate_run(run_dir: str | Path, truth: str, *, mapping: str | Path | None = None, level: int | None = None,
                 cluster_key: str | None = None, key_added: str | None = None) -> tuple[Evaluation, list[Path]]:
    """``ctr evaluate``: evaluate RUN_DIR/output.h5ad, write evaluation.csv (and the confusion table
    and settings beside it), and refresh report.html when the run has one."""
    import anndata as ad

    from ctr.io.atomic import write_csv_atomic, write_json_atomic
    from ctr.io.rundir import require_finished_run, updating_run_dir

    run = Path(run_dir)
    h5ad = run / "output.h5ad"
    if not run.is_dir():
        raise InputError(f"{run}: not a directory; expected a ctr run directory (made by `ctr annotate`)")
    if not h5ad.is_file():
        raise InputError(f"{run}: no output.h5ad; evaluation needs the per-cell labels of a finished `ctr annotate` run")
    require_finished_run(run)
    label_mapping = as_mapping(mapping)  # a bad mapping file fails before the data are read
    try:
        adata = ad.read_h5ad(h5ad, backed="r")  # obs and uns only; the matrix stays on disk
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{h5ad}: cannot be read as .h5ad ({exc})") from None
    try:
        key = key_added or _prefix(adata)
        result = evaluate(adata, truth, mapping=label_mapping, level=level, clusters=cluster_key, key_added=key)
    finally:
        adata.file.close()
    settings = {
        "run_fingerprint": run_fingerprint(run),
        "truth": truth,
        "mapping": str(mapping) if mapping is not None else None,
        "level": level,
        "clusters": cluster_key or f"{key}_cluster",
        "unmatched_truth": result.unmatched_truth,
        "unused_mapping_keys": result.unused_mapping_keys,
    }
    with updating_run_dir(run, [EVALUATION_CSV, CONFUSION_CSV, EVALUATION_JSON]):
        written = [write_csv_atomic(run / EVALUATION_CSV, result.table()),
                   write_csv_atomic(run / CONFUSION_CSV, result.confusion),
                   write_json_atomic(run / EVALUATION_JSON, settings)]
    from ctr.report.html import REPORT_NAME, write_report

    if (run / REPORT_NAME).is_file():
        written.append(write_report(run))
    return result, written


def run_fingerprint(run_dir: str | Path) -> str:
    """A digest of the run's decisions and parameters: an evaluation written for an earlier run in
    the same directory (``ctr annotate --force``) no longer matches, and the report says so."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("cluster_annotations.csv", "params.json"):
        path = Path(run_dir) / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def _prefix(adata) -> str:
    """The ``key_added`` of the run that wrote ``adata`` (the uns entry that lists its obs keys)."""
    for key, info in adata.uns.items():
        if isinstance(info, Mapping) and "obs_keys" in info and f"{key}_label" in adata.obs.columns:
            return str(key)
    return "ctr"


def read_evaluation(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict] | None:
    """The written evaluation of a run (table, confusion, settings), or None when it has none."""
    import json

    run = Path(run_dir)
    if not (run / EVALUATION_CSV).is_file() or not (run / CONFUSION_CSV).is_file():
        return None
    table = pd.read_csv(run / EVALUATION_CSV, keep_default_na=False, na_values=[""], dtype={"name": str})
    confusion = pd.read_csv(run / CONFUSION_CSV, keep_default_na=False, dtype={"truth": str, "predicted": str})
    try:
        settings = json.loads((run / EVALUATION_JSON).read_text()) if (run / EVALUATION_JSON).is_file() else {}
    except ValueError:
        settings = {}
    return table, confusion, settings
