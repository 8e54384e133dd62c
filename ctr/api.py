"""The notebook API: ``ctr.annotate(adata, ruleset, ...)`` in the style of scanpy's ``tl`` functions.

It takes an AnnData that already has cluster labels, computes the statistics on the ruleset's
markers only, evaluates the ruleset, optionally refines, and returns an
:class:`AnnotationResult`; with ``write_obs=True`` (the default) it also writes
``obs[f"{key_added}_label"]`` etc. and ``uns[key_added]``. The CLI is a thin layer over this.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctr import __version__
from ctr.diagnostics import Diagnostic
from ctr.errors import InputError, ParameterError
from ctr.options import Choices
from ctr.previous_run import PreviousRun
from ctr.rules.model import Ruleset
from ctr.rules.plan import RefinementPlan
from ctr.rules.params import ResolvedParams, check_node_entries, resolve_params

# obs columns written per cell (prefixed with key_added); "cluster" is the final cluster id, which
# differs from the input clusters where refinement subclustered ("3.0") or merged clusters
OBS_FIELDS = ("cluster", "label", "root", "path", "confidence", "stop_reason")
CATEGORICAL_FIELDS = ("cluster", "label", "root", "path", "stop_reason")


@dataclass
class AnnotationResult:
    """Everything one annotation produced. Tables are pandas DataFrames, one row per record."""

    clusters: pd.DataFrame  # cluster_annotations.csv
    gating: pd.DataFrame  # gating_details.csv
    scores: pd.DataFrame  # marker_scores.csv
    evidence: pd.DataFrame  # marker_evidence.csv
    trace: pd.DataFrame  # decision_steps.csv: one row per gate evaluation and selection
    refinement_log: pd.DataFrame
    markers: pd.DataFrame  # marker resolution: marker, panel_name, how (missing -> empty panel_name)
    params: ResolvedParams
    ruleset: Ruleset
    cluster_key: str
    layer: str
    cell_labels: pd.DataFrame  # per cell: cluster, label, root, path, confidence, stop_reason
    thresholds: pd.DataFrame = field(default_factory=pd.DataFrame)  # marker_thresholds.csv: each marker's split
    histograms: pd.DataFrame = field(default_factory=pd.DataFrame)  # marker_histograms.csv: each marker's distribution
    diagnostics: list[Diagnostic] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    states: pd.DataFrame = field(default_factory=pd.DataFrame)  # state_calls.csv: one row per (cluster, state)
    state_trace: pd.DataFrame = field(default_factory=pd.DataFrame)  # state_steps.csv: the states' gate rows
    cell_states: pd.DataFrame = field(default_factory=pd.DataFrame)  # per cell, one boolean column per state

    @property
    def labels(self) -> dict[str, str]:
        """Cluster id -> final label."""
        return dict(zip(self.clusters["cluster"].astype(str), self.clusters["final_annotation"]))

    def explain(self, cluster: str | None = None) -> str:
        """Why each cluster (or one) got its label, from the trace."""
        from ctr.report.explain import explain_tables

        return explain_tables(self, [cluster] if cluster is not None else None)

    def write(self, run_dir: str | Path, adata=None, *, force: bool = False) -> Path:
        """Write the run directory (tables, params.json, and output.h5ad when ``adata`` is given)."""
        from ctr.io.writers import write_run

        return write_run(self, run_dir, adata=adata, force=force)


def builtins() -> list[Ruleset]:
    """Every built-in ruleset, in name order."""
    from ctr.lang import builtin_rulesets, load_ruleset

    return [load_ruleset(name) for name in sorted(builtin_rulesets())]


def choose_builtin(panel: list[str]) -> tuple[Ruleset, float]:
    """The built-in ruleset whose markers the panel covers best (used when none was named)."""
    from ctr.rules.markers import resolve_markers

    best: tuple[float, Ruleset] | None = None
    for rs in builtins():
        markers = rs.all_markers()
        mapping = resolve_markers(rs, panel).mapping
        share = sum(m in mapping for m in markers) / max(len(markers), 1)
        if best is None or share > best[0]:
            best = (share, rs)
    assert best is not None, "no built-in rulesets are installed"
    return best[1], best[0]


def _layers(ruleset: Ruleset, tissue, preset, cli_blocks) -> list:
    from ctr.options import parameter_blocks
    from ctr.rules.presets import preset_blocks

    layers = []
    if tissue is not None:
        if tissue.preset:
            layers.append(("tissue", preset_blocks(tissue.preset)))
        tissue_params = getattr(tissue, "params", None) or {}
        if tissue_params:
            layers.append(("tissue", parameter_blocks(**tissue_params, origin=f"tissue profile {tissue.name}: {{kind}}")))
    layers.append(("ruleset", {"scoring": ruleset.scoring, "gating": ruleset.gating, "refinement": ruleset.refinement}))
    if preset:
        layers.append(("preset", preset_blocks(preset)))
    layers.append(("cli", cli_blocks))
    return layers


def annotate(
    adata,
    ruleset: Ruleset | str | Path | None = None,
    *,
    marker_map: str | Path | None = None,
    cluster_key: str | None = None,
    layer: str | None = None,
    tissue: str | None = None,
    preset: str | None = None,
    scoring_params: dict | str | None = None,
    gating_params: dict | str | None = None,
    refinement_params: dict | str | None = None,
    refinement_plan: str | Path | dict | RefinementPlan | None = None,
    skip_refinement: bool = False,
    random_seed: int = 0,
    key_added: str = "ctr",
    write_obs: bool = True,
    annotation_only: bool = True,
    unit: str = "cluster",
    var_names: str | None = None,
) -> AnnotationResult:
    """Annotate the clusters of ``adata`` with a ruleset.

    A convenience over :func:`annotate_with`: names, paths and JSON text are read here, once, into
    :class:`ctr.options.Choices`.

    Parameters
    ----------
    adata
        AnnData with cells x markers and a cluster column in ``obs``.
    ruleset
        A :class:`~ctr.rules.model.Ruleset`, a built-in name (``"pbmc"``) or a path
        (``.ctr``, ``.yaml``, ``.json``). Default: the tissue profile's ruleset, else the ruleset of
        the run that made ``adata`` (an ``output.h5ad``), else the built-in that covers the panel best.
    cluster_key
        ``obs`` column with cluster labels (default: ``cluster_lvl0``, ``leiden``, ``louvain``, ``cluster``).
    layer
        Expression values: a layer name, ``"X"``, or ``"raw"`` for ``adata.raw`` (default: first of
        ``batchcorr``, ``aligned``, then ``X``).
    scoring_params, gating_params, refinement_params
        Partial parameter blocks (dicts or JSON text), the command-line layer.
    key_added
        Prefix of the ``obs`` columns and the ``uns`` key written.
    var_names
        The ``var`` column that holds the marker names, when ``var_names`` are channels
        (``Pr141Di``, ``FL1-A``) and the antigens are in a column (``"marker"``, ``"desc"``), as
        scanpy's ``gene_symbols=``; an empty entry keeps its var name, and ``adata.var_names`` are
        not changed. ``"none"``: match ``var_names``. Default: the column of the run that made
        ``adata``, else a text column of ``var`` that resolves clearly more of the ruleset's
        markers than ``var_names`` (said with CTR519).
    unit
        ``"cluster"``: every cell takes its cluster's label. ``"cell"``: where a cluster stopped
        at a parent or an ambiguous root, each cell descends further on its own per-cell vote
        (stop reason ``cell_vote``); the cluster tables are unchanged.

    Returns
    -------
    AnnotationResult with the per-cluster table, the trace and the statistics tables.
    """
    from ctr.options import resolve_choices

    choices = resolve_choices(ruleset=ruleset, marker_map=marker_map, tissue=tissue, preset=preset,
                              scoring_params=scoring_params, gating_params=gating_params,
                              refinement_params=refinement_params, refinement_plan=refinement_plan,
                              var_names=var_names)
    return annotate_with(adata, choices, cluster_key=cluster_key, layer=layer, skip_refinement=skip_refinement,
                         random_seed=random_seed, key_added=key_added, write_obs=write_obs,
                         annotation_only=annotation_only, unit=unit)


def annotate_with(
    adata,
    choices: Choices,
    *,
    cluster_key: str | None = None,
    layer: str | None = None,
    skip_refinement: bool = False,
    random_seed: int = 0,
    key_added: str = "ctr",
    write_obs: bool = True,
    annotation_only: bool = True,
    unit: str = "cluster",
) -> AnnotationResult:
    """Annotate the clusters of ``adata`` with typed, validated ``choices``, in stages: resolve
    the ruleset and parameters, resolve the inputs (layer, cluster key, marker names), annotate
    the clusters, refine, and write ``obs``/``uns``."""
    if unit not in ("cluster", "cell"):
        raise ParameterError(f"unit must be 'cluster' or 'cell', got {unit!r}")
    previous = PreviousRun.of(adata, key_added)
    matrix, layer_name = _expression(adata, layer)
    scope = ruleset_scope(choices, previous)
    names = marker_names(adata, layer_name, choices, previous, scope.ruleset)
    chosen = resolve_ruleset(choices, previous, names.names, scope)
    data = resolve_inputs(adata, chosen.ruleset, matrix, names, layer_name,
                          cluster_key=cluster_key, annotation_only=annotation_only)
    result = annotate_inputs(data, chosen, choices, skip_refinement=skip_refinement, random_seed=random_seed,
                             unit=unit, obs_names=adata.obs_names)
    if write_obs:
        write_obs_columns(adata, result, key_added)
    return result


# ---- stage 1: the ruleset and the parameters --------------------------------------------------


@dataclass(frozen=True)
class ChosenRuleset:
    """The ruleset, tissue profile and preset in force, the parameters they resolve to, and what
    was kept from the run that made the input or chosen automatically."""

    ruleset: Ruleset
    params: ResolvedParams
    tissue: Any = None  # TissueProfile
    preset: str | None = None
    inherited: tuple[str, ...] = ()
    auto_share: float | None = None  # the panel's share of the markers, when the ruleset was chosen automatically


@dataclass(frozen=True)
class RulesetScope:
    """The tissue profile and preset in force, what was kept from the previous run, and the
    ruleset when it is known without looking at the panel (None: a built-in will be chosen)."""

    ruleset: Ruleset | None
    tissue: Any = None
    preset: str | None = None
    inherited: tuple[str, ...] = ()


def ruleset_scope(choices: Choices, previous: PreviousRun) -> RulesetScope:
    """The given ruleset, else the tissue profile's, else the previous run's (None when none of
    these); the tissue and preset given, else the previous run's (unless "none")."""
    from ctr.lang import load_ruleset
    from ctr.rules.tissues import load_tissue

    # rerunning with one changed parameter must not silently drop the earlier run's tissue or
    # preset, or every other threshold moves too; "none" turns an inherited choice off
    inherit_tissue = choices.tissue is None and not choices.drop_tissue and previous.tissue is not None
    inherit_preset = choices.preset is None and not choices.drop_preset and previous.preset is not None
    tissue = load_tissue(previous.tissue) if inherit_tissue else choices.tissue
    preset = previous.preset if inherit_preset else choices.preset
    inherited = [name for name, kept in (("tissue", inherit_tissue), ("preset", inherit_preset)) if kept]
    rs = choices.ruleset
    if rs is None and tissue is not None:
        rs = load_ruleset(tissue.ruleset)
    if rs is None:
        rs = previous.ruleset()
    return RulesetScope(rs, tissue, preset, tuple(inherited))


def marker_names(adata, layer_name: str, choices: Choices, previous: PreviousRun, ruleset: Ruleset | None):
    """The names the panel's variables go by (:class:`ctr.data.var_names.MarkerNames`): the var
    column given, else the previous run's, else one that resolves clearly more markers of
    ``ruleset`` (or of the built-ins, when none is known) than var_names do; CTR502 on duplicates."""
    from ctr.data.checks import check_var_names, stop_on_errors
    from ctr.data.var_names import choose_marker_names

    var = adata.raw.var if layer_name == "raw" else adata.var
    var_names = adata.raw.var_names if layer_name == "raw" else adata.var_names
    column = choices.var_names
    if column is None and not choices.drop_var_names and previous.var_names in var.columns:
        column = previous.var_names  # a rerun matches the names its run matched
    names = choose_marker_names(var, list(var_names), column, automatic=not choices.drop_var_names,
                                rulesets=lambda: [ruleset] if ruleset is not None else builtins())
    # markers are looked up by name
    stop_on_errors(check_var_names(names.names, layer_name=layer_name, column=names.column))
    return names


def resolve_ruleset(choices: Choices, previous: PreviousRun, panel: list[str],
                    scope: RulesetScope | None = None) -> ChosenRuleset:
    """The ruleset of :func:`ruleset_scope`, else the built-in the panel covers best, and the
    parameters they resolve to (scope before layer)."""
    from ctr.rules.lint import require_cell_types

    scope = scope or ruleset_scope(choices, previous)
    rs, auto_share = scope.ruleset, None
    if rs is None:
        rs, auto_share = choose_builtin(panel)
    require_cell_types(rs)
    params = resolve_params(_layers(rs, scope.tissue, scope.preset, choices.blocks))
    check_node_entries(params, rs)
    return ChosenRuleset(rs, params, scope.tissue, scope.preset, scope.inherited, auto_share)


# ---- stage 2: the inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """The cells as the engine sees them: the ruleset markers' columns of the chosen layer, a cluster
    label per cell, and how each ruleset marker was found in the panel."""

    matrix: Any  # cells x panel_names
    labels: np.ndarray
    panel_names: list[str]
    resolution: Any  # ctr.rules.markers.MarkerResolution
    cluster_key: str
    layer: str
    diagnostics: list[Diagnostic]
    profile: Any  # ctr.data.checks.DataProfile: what the values look like
    counts: Any = None  # ctr.data.checks.ValueCounts the profile came from (each marker's range among them)
    names: Any = None  # ctr.data.var_names.MarkerNames: the var column the panel names were read from, if any


def _expression(adata, layer: str | None):
    from ctr.data.anndata_io import expression

    matrix, _, layer_name = expression(adata, layer)
    return matrix, layer_name


def resolve_inputs(adata, ruleset: Ruleset, matrix, names, layer_name: str, *, cluster_key: str | None,
                   annotation_only: bool) -> Inputs:
    """The cluster key and labels, the ruleset's markers in the panel (by ``names``, a
    :class:`ctr.data.var_names.MarkerNames`), and the data checks."""
    from ctr.data.anndata_io import detect_cluster_key
    from ctr.data.checks import check_clusters, check_matrix, cluster_labels, columns_profile, count_values, stop_on_errors
    from ctr.rules.lint import ambiguity_diagnostics
    from ctr.rules.markers import resolve_markers

    key = detect_cluster_key(adata, cluster_key, annotation_only)
    if key is None:
        raise InputError("no cluster labels: pass cluster_key=... (or run the full pipeline, which clusters first)")
    diagnostics: list[Diagnostic] = []
    labels = cluster_labels(adata.obs[key])  # NaN-labelled cells: one group, never merged with a cluster "nan"
    diagnostics += check_clusters(adata.obs[key])  # the column itself: its unused categories are reported
    diagnostics += names.diagnostics()  # a var column chosen automatically: say which, and why
    var_names = names.names
    resolution = resolve_markers(ruleset, list(var_names))
    diagnostics += ambiguity_diagnostics(resolution)  # two columns for one marker: say which is used
    if not resolution.mapping:
        raise InputError(
            f"none of the {len(ruleset.all_markers())} markers of ruleset '{ruleset.name}' "
            f"(e.g. {', '.join(map(str, list(ruleset.all_markers())[:8]))}) is in the panel of layer '{layer_name}' "
            f"({len(var_names)} markers, e.g. {', '.join(map(str, list(var_names)[:8]))})",
            hint="check the layer/var_names (gene symbols vs protein names), name the var column that holds the "
                 "marker names (--var-names COLUMN), or add `alias` lines to the ruleset",
        )
    # the panel's own columns (a marker group's column is derived from its members' later)
    panel_names = list(dict.fromkeys(p for m, p in resolution.mapping.items() if resolution.how[m] != "group"))
    col_index = pd.Index(var_names).get_indexer(panel_names)
    # every column, in order: no copy of the layer (statistics only read it)
    sub = matrix if np.array_equal(col_index, np.arange(matrix.shape[1])) else matrix[:, col_index]
    counts = count_values(sub)  # one pass over the values, also for a layer read out of core
    data_profile = columns_profile(counts, panel_names, matrix, list(var_names), layer_name)
    diagnostics += check_matrix(sub, panel_names, layer_name=layer_name, profile=data_profile, counts=counts)
    stop_on_errors(diagnostics)  # no cells, or no signal in any ruleset marker: nothing to annotate
    return Inputs(sub, labels, panel_names, resolution, key, layer_name, diagnostics, data_profile, counts, names)


# ---- stages 3 and 4: annotate the clusters, refine ---------------------------------------------


def annotate_inputs(data: Inputs, chosen: ChosenRuleset, choices: Choices, *, skip_refinement: bool = False,
                    random_seed: int = 0, unit: str = "cluster", obs_names=None) -> AnnotationResult:
    """Statistics, the engine's decision per cluster, refinement, per-cell labels and cell states."""
    from functools import partial

    from ctr.data.cluster import subcluster
    from ctr.engine.annotate import EngineInputs
    from ctr.engine.refine import LOG_COLUMNS, refine
    from ctr.report.sentences import gating_with_reasons, refinement_reasons, with_reasons
    from ctr.stats import absolute_thresholds, compute_statistics, statistics_for_labels
    from ctr.rules.markers import group_columns
    from ctr.stats.cluster_stats import is_dask_array
    from ctr.stats.marker_groups import mark_groups, with_groups

    rs, params, mapping, names = chosen.ruleset, chosen.params, data.resolution.mapping, data.names
    out_of_core = is_dask_array(data.matrix)
    if out_of_core:
        _refuse_per_cell(rs, skip_refinement, unit)
    thresholds = absolute_thresholds(rs, mapping)
    ranges = (data.counts.column_lo, data.counts.column_hi) if out_of_core and data.counts is not None else None
    # a layer rescaled around manual gates (scimap) carries its gates: positivity auto cuts there
    gate = data.profile.gate if data.profile is not None else None
    groups = group_columns(data.resolution, rs.marker_groups())
    if groups:  # `any(...)` groups: a derived column each, read as a marker from here on
        if out_of_core:
            raise ParameterError(f"ruleset '{rs.name}' has marker groups ({', '.join(groups)}), whose values are "
                                 "derived from every cell: not supported on input read out of core",
                                 hint="read the input into memory (an .h5ad without --backed), or list the "
                                      "group's markers one by one")
        matrix, panel_names, thresholds = with_groups(data.matrix, data.panel_names, groups, params.scoring,
                                                      thresholds, gate)
        data = replace(data, matrix=matrix, panel_names=panel_names)
    stats = compute_statistics(data.matrix, data.labels, data.panel_names, params.scoring, thresholds, ranges=ranges,
                               rescale_gate=gate)
    if groups:
        stats.global_ = mark_groups(stats.global_, groups)
    # out of core, per-cell votes on ambiguous clusters (evidence that never changes a label) are not taken
    inputs = EngineInputs(rs, mapping, params, cell_matrix=None if out_of_core else data.matrix)
    annotation = inputs.annotate(stats, data.labels)
    marker_table = pd.DataFrame(stats.global_.to_dict(as_series=False))

    refinement_log = pd.DataFrame(columns=LOG_COLUMNS)
    cell_cluster = data.labels
    if not skip_refinement:
        refined = refine(annotation, stats, inputs, cell_clusters=data.labels, plan=choices.plan,
                         origin=choices.plan_origin, split=partial(subcluster, random_seed=random_seed),
                         statistics=statistics_for_labels(stats, data.matrix, params.scoring))
        annotation, refinement_log, cell_cluster = refined.annotation, refined.log, refined.cell_clusters
    clusters_table = annotation.clusters

    obs_names = obs_names if obs_names is not None else pd.RangeIndex(len(data.labels)).astype(str)
    cell_labels = _cell_labels(clusters_table, cell_cluster, obs_names)
    if unit == "cell":
        from ctr.engine.cells import cell_level_labels

        cell_labels = cell_level_labels(cell_labels, rs, mapping, marker_table, data.matrix, data.panel_names,
                                        params.scoring.per_cell_gap, params=params)
    calls = _call_states(rs, mapping, params, stats, data.matrix, cell_cluster, data.panel_names, thresholds,
                         clusters_table, cell_labels, gate)
    result = AnnotationResult(
        clusters=clusters_table,
        gating=gating_with_reasons(annotation.gating, annotation.trace),
        scores=annotation.scores,
        evidence=annotation.evidence,
        trace=with_reasons(annotation.trace),
        refinement_log=refinement_reasons(refinement_log),
        markers=_marker_table(rs, data),
        params=params,
        ruleset=rs,
        cluster_key=data.cluster_key,
        layer=data.layer,
        cell_labels=cell_labels,
        thresholds=marker_table,
        histograms=pd.DataFrame(stats.histograms.to_dict(as_series=False)) if stats.histograms is not None else pd.DataFrame(),
        diagnostics=data.diagnostics,
        provenance={
            "ctr_version": __version__,
            "inherited": list(chosen.inherited),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cluster_key": data.cluster_key,
            "layer": data.layer,
            "data_profile": data.profile.to_dict(),
            "tissue": chosen.tissue.model_dump() if chosen.tissue is not None else None,
            "preset": chosen.preset,
            "ruleset_auto_chosen": chosen.auto_share is not None,
            "ruleset_panel_share": chosen.auto_share,
            # the var column the marker names were read from (None: var_names); a rerun reads the same
            "var_names": names.column if names is not None else None,
            "var_names_auto_chosen": bool(names is not None and names.automatic),
        },
    )
    if calls is not None:
        result.states, result.state_trace = calls.calls, with_reasons(calls.steps)
        result.cell_states = calls.cells.set_axis(obs_names)
    return result


def _marker_table(rs: Ruleset, data: Inputs) -> pd.DataFrame:
    """marker_resolution.csv: each ruleset marker, the panel name it was found under and how; with
    names read from a var column, also the variable (channel) that name belongs to."""
    mapping, how = data.resolution.mapping, data.resolution.how
    # the panel's markers, then each marker group (resolved to its derived column, or missing)
    names = [*rs.all_markers(), *rs.marker_groups()]
    rows = [{"marker": m, "panel_name": mapping.get(m, ""), "how": how.get(m, "missing")} for m in names]
    if data.names is not None and data.names.column is not None:
        channel = dict(zip(data.names.names, data.names.var_names))
        for row in rows:
            row["var_name"] = channel.get(row["panel_name"], "")
    return pd.DataFrame(rows)


def _refuse_per_cell(rs: Ruleset, skip_refinement: bool, unit: str) -> None:
    """Cells read out of core (a dask array) get their cluster's label; what needs every cell in
    memory is refused with the way out."""
    if unit == "cell":
        raise ParameterError("--unit cell is not supported on input read out of core (each cell would be read again)",
                             hint="annotate clusters (--unit cluster), or read the input into memory (an .h5ad without --backed)")
    if rs.states:
        raise ParameterError(f"ruleset '{rs.name}' declares cell states, which are called per cell: not supported on "
                             "input read out of core", hint="use a ruleset without `state` lines, or read the input into memory")
    if not skip_refinement:
        raise ParameterError("refinement (subclustering, votes per cell) is not supported on input read out of core",
                             hint="pass --skip-refinement (skip_refinement=True)")


def _call_states(rs: Ruleset, mapping, params, stats, sub, cell_cluster, panel_names, thresholds, clusters_table, cell_labels,
                 rescale_gate: float | None):
    """The ruleset's cell states in the final clusters and in every cell (None without states)."""
    if not rs.states:
        return None
    from ctr.engine.cell_evidence import cell_evidence
    from ctr.engine.scoring import ClusterEvidence
    from ctr.engine.states import call_states
    from ctr.stats import compute_statistics

    final = compute_statistics(sub, np.asarray(cell_cluster, dtype=str), panel_names, params.scoring, thresholds,
                               rescale_gate=rescale_gate)
    global_ = pd.DataFrame(final.global_.to_dict(as_series=False))
    paths = dict(zip(clusters_table["cluster"].astype(str), clusters_table["annotation_path"].astype(str)))
    return call_states(ClusterEvidence.from_statistics(final), rs, mapping, params, paths,
                       cell_evidence(sub, panel_names, global_), cell_labels["path"].astype(str).to_numpy())


def _cell_labels(clusters: pd.DataFrame, cell_cluster, obs_names) -> pd.DataFrame:
    """Each cell's cluster and its cluster's decision. Text columns are categoricals made from
    the distinct clusters' values: a million cells hold integer codes, never a million strings."""
    from ctr.stats.cluster_stats import cluster_codes

    table = clusters.set_index(clusters["cluster"].astype(str))
    codes, order = cluster_codes(cell_cluster)  # distinct labels looked up once, not once per cell
    pos = table.index.get_indexer(pd.Index(order, dtype=object))  # each distinct cluster's row (-1: none)
    out = pd.DataFrame(index=pd.Index(obs_names))
    out["cluster"] = pd.Categorical.from_codes(codes, categories=pd.Index(order, dtype=object))

    def take(col, fill):  # one value per distinct cluster
        values = table[col].to_numpy()
        return np.where(pos >= 0, values[np.clip(pos, 0, None)], fill) if len(values) else np.full(len(order), fill, dtype=object)

    def per_cell(col, fill):
        distinct = pd.Categorical(take(col, fill))
        return pd.Categorical.from_codes(distinct.codes[codes], categories=distinct.categories)

    out["label"] = per_cell("final_annotation", "Unassigned")
    out["root"] = per_cell("root", "")
    out["path"] = per_cell("annotation_path", "")
    out["confidence"] = take("confidence", 0.0).astype(float)[codes]
    out["stop_reason"] = per_cell("stop_reason", "")
    return out


def obs_keys(key_added: str) -> list[str]:
    return [f"{key_added}_{name}" for name in OBS_FIELDS]


def check_keys_free(adata, key_added: str = "ctr") -> None:
    """Refuse a ``key_added`` whose obs columns or uns entry hold the user's own data (not a ctr run's)."""
    from ctr.options import key_added_problem

    problem = key_added_problem(key_added)
    if problem:
        raise ParameterError(problem)
    previous = PreviousRun.of(adata, key_added)
    if previous.present and not previous.made_by_ctr:
        raise InputError(
            f"uns['{key_added}'] exists and was not written by ctr; refusing to overwrite it",
            hint=f"choose another prefix with --key-added (now '{key_added}')",
        )
    ours = previous.obs_keys
    for column in obs_keys(key_added):
        if column in adata.obs.columns and column not in ours:
            raise InputError(
                f"obs column '{column}' exists and was not written by ctr; refusing to overwrite it",
                hint=f"choose another prefix with --key-added (now '{key_added}')",
            )


def write_obs_columns(adata, result: AnnotationResult, key_added: str = "ctr") -> None:
    """Write the per-cell labels and ``uns[key_added]``; never overwrite an obs column or uns entry
    ctr did not make."""
    check_keys_free(adata, key_added)
    cells = result.cell_labels
    _write_state_columns(adata, result, key_added)
    for name, column in zip(OBS_FIELDS, obs_keys(key_added)):
        values = cells[name]
        if name == "cluster":
            from ctr.stats import natural_order

            adata.obs[column] = pd.Categorical(values, categories=natural_order(pd.unique(values).tolist()))
        elif name in CATEGORICAL_FIELDS:
            adata.obs[column] = pd.Categorical(values)
        else:
            adata.obs[column] = values.to_numpy()
    adata.uns[key_added] = uns_record(result, key_added)


def state_keys(key_added: str, states) -> list[str]:
    """The obs columns of cell states: ``<key>_state_<name>`` per state and ``<key>_states``."""
    return [f"{key_added}_state_{name}" for name in states] + ([f"{key_added}_states"] if len(states) else [])


def _write_state_columns(adata, result: AnnotationResult, key_added: str) -> None:
    from ctr.engine.states import states_summary

    cells = result.cell_states
    ours = PreviousRun.of(adata, key_added).obs_keys
    columns = state_keys(key_added, list(cells.columns))
    for column in columns:
        if column in adata.obs.columns and column not in ours:
            raise InputError(f"obs column '{column}' exists and was not written by ctr; refusing to overwrite it",
                             hint=f"choose another prefix with --key-added (now '{key_added}')")
    for name in cells.columns:
        adata.obs[f"{key_added}_state_{name}"] = cells[name].to_numpy(dtype=bool)
    if len(cells.columns):
        adata.obs[f"{key_added}_states"] = pd.Categorical(states_summary(cells))


def uns_record(result: AnnotationResult, key_added: str) -> dict:
    """What ``uns[key_added]`` holds: version, parameters, ruleset source and hash, provenance."""
    import json

    from ctr.lang import export_text

    rs = result.ruleset
    fmt = Path(rs.source_file).suffix.lstrip(".") if rs.source_file else "ctr"
    return {
        "version": __version__,
        "obs_keys": obs_keys(key_added) + state_keys(key_added, list(result.cell_states.columns)),
        "params": json.dumps(result.params.as_dict(), default=str),
        "ruleset": {
            "name": rs.name,
            "source_file": rs.source_file or "",
            "format": {"yml": "yaml"}.get(fmt, fmt) or "ctr",
            "source_text": rs.source_text,
            "compiled_text": export_text(rs, "ctr"),
            "sha256": rs.digest,
        },
        "provenance": json.dumps(result.provenance, default=str),
        "cluster_key": result.cluster_key,
        "refinement": json.dumps(result.refinement_log.to_dict(orient="records"), default=str),
    }
