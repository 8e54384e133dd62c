"""``ctr annotate`` and ``ctr demo`` end to end: read -> check -> (transform) -> cluster ->
annotate -> refine -> write the run directory -> report.

Each stage is a call into the package; this module only orders them, times them and decides
where outputs go. The input file is only ever read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ctr.errors import InputError, RulesetError, UsageError
from ctr.memory import release_freed_memory
from ctr.options import Choices
from ctr.previous_run import PreviousRun
from ctr.progress import Progress
from ctr.rules.model import Ruleset

TRANSFORMED_LAYER = "ctr_transformed"
CLUSTER_KEY = "cluster_lvl0"


@dataclass
class AnnotateOptions:
    input: str
    output_dir: str
    ruleset: str | None = None
    marker_map: str | None = None
    tissue: str | None = None
    preset: str | None = None
    layer: str | None = None
    var_names: str | None = None
    cluster_key: str | None = None
    annotation_only: bool = False
    scoring_params: str | None = None
    gating_params: str | None = None
    refinement_params: str | None = None
    refinement_plan: str | None = None
    skip_refinement: bool = False
    transform: str | None = None
    normalize: str | None = None
    technical_markers: str | None = None
    no_gpu: bool = False
    random_seed: int = 0
    resolution: float = 1.0
    n_pcs: int = 30
    neighbors_k: int = 15
    key_added: str = "ctr"
    unit: str = "cluster"
    no_report: bool = False
    force: bool = False
    backed: bool = False
    dask_scheduler: str | None = None


@dataclass
class RunSummary:
    run_dir: Path
    clusters: pd.DataFrame
    n_cells: int
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cell_labels: pd.Series | None = None  # each cell's final label (differs from its cluster's with --unit cell)
    agreement: list[str] = field(default_factory=list)  # lines comparing with reference labels (the demo)
    unit: str = "cluster"

    SHOWN_LABELS = 12

    def describe(self) -> str:
        c = self.clusters
        unassigned = c["final_annotation"].eq("Unassigned")
        if self.cell_labels is not None:
            per_label = _label_counts(self.cell_labels)
            cells_unassigned = int(per_label.get("Unassigned", 0))
        else:
            per_label = c.groupby("final_annotation")["n_cells"].sum()
            cells_unassigned = int(c.loc[unassigned, "n_cells"].sum())
        per_label = per_label.sort_values(ascending=False, kind="stable")
        unit = " (each cell's own label: --unit cell)" if self.unit == "cell" else ""
        lines = [f"annotated {len(c)} clusters ({self.n_cells} cells) into {len(per_label)} labels{unit}"]
        lines += [f"  {label:<40} {int(n):>8} cells" for label, n in per_label.head(self.SHOWN_LABELS).items()]
        if len(per_label) > self.SHOWN_LABELS:
            rest = per_label.iloc[self.SHOWN_LABELS:]
            # with --unit cell the labels left out are cells' own, which only output.h5ad holds
            where = "the cells' labels in output.h5ad" if self.unit == "cell" else "cluster_annotations.csv"
            lines.append(f"  (+{len(rest)} more labels, {int(rest.sum())} cells: see {where})")
        lines.append(f"  unassigned: {int(unassigned.sum())} clusters, {cells_unassigned} cells "
                     f"({cells_unassigned / max(self.n_cells, 1):.1%})")
        lines += self.agreement
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"run directory: {self.run_dir}")
        lines += [f"  {p}" for p in self.files]
        lines.append(f"next: ctr explain {self.run_dir}   (why each cluster got its label)")
        return "\n".join(lines)


def _label_counts(labels: pd.Series) -> pd.Series:
    """Cells per label (as text), most first; labels in order of first appearance among equal
    counts, as ``value_counts`` orders them. A categorical is counted through its codes: its text
    per cell would be a million strings (about 120 MB at 10^6 cells)."""
    if not isinstance(labels.dtype, pd.CategoricalDtype):
        return labels.astype(str).value_counts()
    import numpy as np

    codes = labels.cat.codes.to_numpy()
    seen = pd.unique(codes)  # first appearance
    text = np.append(labels.cat.categories.astype(str).to_numpy(dtype=object), "nan")  # code -1: a missing label
    counts = pd.Series(np.bincount(codes + 1, minlength=len(text) + 1)[seen + 1], index=pd.Index(text[seen]))
    return counts.groupby(level=0, sort=False).sum().sort_values(ascending=False)


def run_annotate(opts: AnnotateOptions, progress: Progress | None = None) -> RunSummary:
    """The ``ctr annotate`` command."""
    from ctr.data.anndata_io import read_input

    from ctr.data.anndata_io import read_input_lazy
    from ctr.options import scheduler_address
    from ctr.out_of_core import dask_client, out_of_core_reason, refuse_in_memory_steps, require_dask

    progress = progress or Progress()
    warnings: list = []
    choices = validate_options(opts, warnings)  # cheap checks first: a typo must not cost a clustering run
    scheduler = scheduler_address(opts.dask_scheduler)
    out_of_core = out_of_core_reason(opts.input, backed=opts.backed, dask_scheduler=scheduler)
    if out_of_core:
        require_dask()
        refuse_in_memory_steps(out_of_core, annotation_only=opts.annotation_only, transform=opts.transform,
                               normalize=opts.normalize)
    with dask_client(scheduler), _run_directory(opts.output_dir, opts.force, progress, inputs=input_files(opts)) as run:
        with progress.stage("read", opts.input + (" (out of core)" if out_of_core else "")):
            # the cell names stay on disk when output.h5ad can be a copy of the input (see annotate_adata)
            adata = read_input_lazy(opts.input) if out_of_core else read_input(opts.input, cell_names=not _copies_input(opts))
        summary = annotate_adata(adata, opts, run.staging, progress, choices=choices, ruleset_warnings=warnings,
                                 input_file=Path(opts.input))
        del adata  # the report reads the run's files: the matrix goes before it is drawn
        run.summary = finish_run(summary, opts, run.staging, progress)
        if out_of_core:
            run.summary.notes.append(
                f"read out of core ({out_of_core}{', on the Dask cluster at ' + scheduler if scheduler else ''}): "
                "statistics from partial aggregates per chunk; medians and rank sums read off histograms "
                "(docs/performance.md, Out of core)")
    return run.finished()


def _copies_input(opts: AnnotateOptions) -> bool:
    """Whether output.h5ad is the input file plus the run's obs columns and uns entry: annotation
    only, nothing transformed (a new layer) and nothing clustered (a new column and embedding)."""
    return opts.annotation_only and not opts.transform and not opts.normalize


@dataclass
class _StagedRun:
    """A run being written into ``staging``; it becomes ``target`` when the block ends without error."""

    staging: Path
    target: Path
    summary: RunSummary | None = None

    def finished(self) -> RunSummary:
        """The summary with the paths where the files now are."""
        summary = self.summary
        summary.run_dir = self.target
        summary.files = [self.target / p.relative_to(self.staging) for p in summary.files]
        return summary


@contextmanager
def _run_directory(output_dir: str, force: bool, progress: Progress, inputs: list[Path] = ()) -> Iterator[_StagedRun]:
    """A staging directory for the run: moved into place whole at the end, removed on any failure
    (see :mod:`ctr.io.rundir`)."""
    from ctr.io.rundir import staged_run_dir

    def finish() -> None:
        with progress.stage("finish", str(output_dir)):  # a stage boundary like the others (and for Ctrl-C tests)
            pass

    with staged_run_dir(output_dir, force=force, inputs=inputs, before_commit=finish) as staging:
        yield _StagedRun(staging=staging, target=Path(output_dir))


def input_files(opts: AnnotateOptions) -> list[Path]:
    """Every file the run reads, which it must never replace: the data, the ruleset or marker map,
    ``@file`` parameters and the refinement plan."""
    named = [opts.input, opts.ruleset, opts.marker_map, opts.refinement_plan]
    named += [v[1:] for v in (opts.scoring_params, opts.gating_params, opts.refinement_params)
              if isinstance(v, str) and v.startswith("@")]
    return [Path(v) for v in named if v and Path(v).is_file()]


def validate_options(opts: AnnotateOptions, warnings: list | None = None) -> Choices:
    """Read and check everything that does not need the data, once: run parameters, the input's
    existence, the ruleset (compiled here; its warnings, the loss report of another tool's file
    among them, go to ``warnings``), tissue, preset, parameter blocks, refinement plan, transform.
    A typo must not cost a clustering run. Returns the typed :class:`~ctr.options.Choices` the
    run uses; nothing later parses them again."""
    from ctr.options import check_run_parameters, scheduler_address

    if opts.ruleset and opts.marker_map:
        raise UsageError("--ruleset and --marker-map are alternatives; give one")
    check_run_parameters(resolution=opts.resolution, n_pcs=opts.n_pcs, neighbors_k=opts.neighbors_k,
                         random_seed=opts.random_seed, key_added=opts.key_added)
    if not Path(opts.input).exists():
        raise InputError(f"{opts.input}: no such file", hint="give the path of an .h5ad file or a .zarr store")
    scheduler_address(opts.dask_scheduler)
    return read_choices(opts, warnings)


def read_choices(opts: AnnotateOptions, warnings: list | None = None) -> Choices:
    """The typed choices of ``opts`` (ruleset, tissue, preset, parameter blocks, plan), with the
    transform and normalisation specs checked."""
    from ctr.data.preprocess import normalize_target, parse_transform
    from ctr.options import resolve_choices
    from ctr.rules.lint import require_cell_types

    choices = resolve_choices(ruleset=opts.ruleset, marker_map=opts.marker_map, tissue=opts.tissue, preset=opts.preset,
                              scoring_params=opts.scoring_params, gating_params=opts.gating_params,
                              refinement_params=opts.refinement_params, refinement_plan=opts.refinement_plan,
                              var_names=opts.var_names, warnings=warnings)
    if choices.ruleset is not None:
        require_cell_types(choices.ruleset)
    if opts.transform:
        parse_transform(opts.transform)
    if opts.normalize:
        normalize_target(opts.normalize)
        if opts.transform:
            raise UsageError("--normalize and --transform are alternatives: --normalize already applies log1p",
                             hint="count data: --normalize total; intensities: --transform arcsinh:COFACTOR")
    return choices


def _check_before_clustering(adata, layer: str | None, progress: Progress, *, transforming: bool = False) -> set[str]:
    """Stop on unusable data (no cells, duplicate marker names, no signal) before any expensive step;
    say now what looks wrong with the values (raw counts, untransformed intensities), not after the
    run. Returns the codes said."""
    from ctr.data.anndata_io import expression
    from ctr.data.checks import RAW_COUNTS, RAW_INTENSITIES, check_duplicate_cells, check_matrix, stop_on_errors

    matrix, var_names, name = expression(adata, layer)
    diags = check_matrix(matrix, var_names, layer_name=name)
    stop_on_errors(diags)
    diags += check_duplicate_cells(matrix, layer_name=name)
    if transforming:  # --transform answers "looks like raw counts / untransformed"
        diags = [d for d in diags if d.code not in (RAW_COUNTS, RAW_INTENSITIES)]
    for diag in diags:
        if diag.level == "warning":
            progress.note(_note(diag))
    return {d.code for d in diags if d.level == "warning"}


def _ruleset_to_check(choices: Choices) -> Ruleset | None:
    """The ruleset named for the run (given, or the tissue profile's); None: chosen from the panel."""
    if choices.ruleset is not None:
        return choices.ruleset
    if choices.tissue is not None:
        from ctr.lang import load_ruleset

        return load_ruleset(choices.tissue.ruleset)
    return None


def check_panel(adata, layer: str | None, opts: AnnotateOptions, choices: Choices, previous: PreviousRun,
                progress: Progress) -> None:
    """Before any clustering: lint the ruleset against the panel and say in one line which cell
    types the panel can support. Lint errors (a marker typo) and a panel on which no type can be
    assigned stop the run unless ``--force``."""
    from ctr import api
    from ctr.data.anndata_io import expression
    from ctr.rules.lint import lint, panel_verdict

    named = _ruleset_to_check(choices)
    if named is None and previous.has_ruleset:
        return  # a rerun on an output.h5ad uses that run's ruleset
    _, _, layer_name = expression(adata, layer)
    # the names the run will match: a var column given or chosen (said with the run's notes, CTR519)
    panel = api.marker_names(adata, layer_name, choices, previous, named).names
    rs = named or api.choose_builtin(panel)[0]
    verdict = panel_verdict(rs, panel)
    progress.note(f"panel check (ruleset '{rs.name}', layer '{layer_name}'): {verdict.summary()}")
    errors = [d for d in lint(rs, panel) if d.level == "error"]
    if errors and not opts.force:
        exc = RulesetError(
            f"ruleset '{rs.name}' has {len(errors)} error{'s' * (len(errors) != 1)} against the panel of {opts.input}",
            hint=f"fix the ruleset (`ctr lint-ruleset {rs.source_file or rs.name} --panel {opts.input}` lists every "
            "problem), or pass --force to run anyway",
            diagnostics=errors,
        )
        exc.sources = {rs.source_file: rs.source_text} if rs.source_file and rs.source_text else {}
        raise exc
    if verdict.n_assignable == 0 and not opts.force:
        reasons = [f"  {path}: {why.split('can never be assigned: ', 1)[-1]}"
                   for path, why in verdict.never.items() if path in {r.path_str for r in rs.roots}]
        raise InputError(
            f"no cell type of ruleset '{rs.name}' can be assigned on the panel of {opts.input}, so every cell "
            "would be Unassigned:\n" + "\n".join(reasons[:8])
            + (f"\n  (+{len(reasons) - 8} more)" if len(reasons) > 8 else ""),
            hint="choose a ruleset written for this panel (`ctr rulesets`; protein vs gene names?), add `alias` "
            "lines, or pass --force to run anyway",
        )


def _note(diag) -> str:
    return diag.header() + (f" (hint: {diag.hint})" if diag.hint else "")


def annotate_adata(
    adata, opts: AnnotateOptions, run_dir: Path, progress: Progress, *, choices: Choices | None = None,
    ruleset_warnings: list | None = None, input_file: Path | None = None,
) -> RunSummary:
    """Everything after reading: shared by ``ctr annotate`` and ``ctr demo``. ``choices``: what
    :func:`validate_options` read from ``opts`` (read here when not given), with the ruleset's
    ``ruleset_warnings``. ``input_file``: the .h5ad ``adata`` was read from; when its cell names
    were left there, output.h5ad is written as a copy of it with the run's obs columns and uns
    entry (the names are never encoded again)."""
    from ctr import api
    from ctr.data.anndata_io import names_left_on_disk
    from ctr.io.writers import InputCopy, write_run

    if choices is None:
        ruleset_warnings = []
        choices = read_choices(opts, ruleset_warnings)
    notes: list[str] = [_note(d) for d in ruleset_warnings or []]
    api.check_keys_free(adata, opts.key_added)  # before any work: the user's own obs/uns keys stay
    previous = PreviousRun.of(adata, opts.key_added)
    layer = opts.layer or previous.layer(adata)
    said: set[str] = set()
    if not opts.annotation_only:
        said = _check_before_clustering(adata, layer, progress, transforming=bool(opts.transform or opts.normalize))
    check_panel(adata, layer, opts, choices, previous, progress)
    if opts.transform or opts.normalize:
        layer = _transform(adata, layer, opts, progress)
    cluster_key = opts.cluster_key
    extra: dict = {"pipeline": dict(vars(opts))}
    if opts.normalize:
        from ctr.data.preprocess import normalize_target

        extra["normalization"] = {"method": "total", "target_sum": normalize_target(opts.normalize), "then": "log1p",
                                  "layer": TRANSFORMED_LAYER}
    if opts.annotation_only:
        if opts.cluster_key is None and CLUSTER_KEY in adata.obs:
            notes.append(f"reusing the clusters in obs['{CLUSTER_KEY}']")
    else:
        cluster_key, info = _cluster(adata, layer, opts, progress)
        extra["clustering"] = info
        notes += info.get("warnings", [])
    with progress.stage("annotate"):
        result = api.annotate_with(adata, choices, cluster_key=cluster_key, layer=layer,
                                   skip_refinement=opts.skip_refinement, random_seed=opts.random_seed,
                                   key_added=opts.key_added, annotation_only=True, unit=opts.unit)
    if result.provenance.get("data_profile"):
        from ctr.data.checks import DataProfile

        progress.note(f"data: layer '{result.layer}' holds {DataProfile(**result.provenance['data_profile']).describe()}")
    if opts.var_names is None and previous.var_names and result.provenance.get("var_names") == previous.var_names:
        notes.append(f"using the marker names in var['{previous.var_names}'], as the run that made the input did "
                     "(pass --var-names none to match var_names)")
    for choice in result.provenance.get("inherited", []):
        value = result.provenance.get(choice) if choice == "preset" else result.provenance["tissue"]["name"]
        notes.append(f"using {choice} '{value}' of the run that made the input (pass --{choice} none to drop it)")
    if result.provenance.get("ruleset_auto_chosen"):
        notes.append(
            f"no ruleset given: chose built-in '{result.ruleset.name}', whose markers the panel covers best "
            f"({result.provenance['ruleset_panel_share']:.0%}); pass --ruleset to choose"
        )
    notes += [_note(diag) for diag in result.diagnostics if diag.code not in said]
    adata.uns[opts.key_added]["layer"] = layer or ""
    copy = None
    if input_file is not None and names_left_on_disk(adata):
        copy = InputCopy(input_file, tuple(adata.uns[opts.key_added]["obs_keys"]), (opts.key_added,))
    release_freed_memory()  # what annotating freed does not count through the write
    with progress.stage("write"):
        write_run(result, run_dir, adata=adata, extra=extra, prepared=True, copy=copy)
    files = [run_dir / name for name in ("output.h5ad", "cluster_annotations.csv", "decision_steps.csv")]
    return RunSummary(run_dir=run_dir, clusters=result.clusters, n_cells=adata.n_obs, files=files, notes=notes,
                      cell_labels=result.cell_labels["label"], unit=opts.unit)


def finish_run(summary: RunSummary, opts: AnnotateOptions, run_dir: Path, progress: Progress) -> RunSummary:
    """After :func:`annotate_adata`: the report (unless ``--no-report``), drawn from the run's files
    alone, and timings.json. The caller lets the AnnData go first, so the report's memory does not
    add to the matrix's."""
    from ctr.io.atomic import write_json_atomic

    release_freed_memory()
    if not opts.no_report:
        with progress.stage("report"):
            from ctr.report.html import write_report

            summary.files.append(write_report(run_dir, staged_as=Path(opts.output_dir).name))
    write_json_atomic(run_dir / "timings.json", progress.summary())
    return summary


def _transform(adata, layer: str | None, opts: AnnotateOptions, progress: Progress) -> str:
    """``--transform`` or ``--normalize`` the chosen values into ``layers['ctr_transformed']``; the
    input values stay."""
    from ctr.data.anndata_io import select_layer
    from ctr.data.preprocess import apply_transform, normalize_log1p

    option = "--normalize" if opts.normalize else "--transform"
    if layer == "raw":
        # adata.raw has its own variables, so its transformed values cannot become a layer of adata
        raise UsageError(f"{option} cannot be combined with --layer raw",
                         hint="transform the values before saving them as .raw, or pick a layer of adata.layers")
    spec = opts.normalize or opts.transform
    with progress.stage("normalize" if opts.normalize else "transform", f"{spec}, then log1p" if opts.normalize else spec):
        matrix, _ = select_layer(adata, layer)
        adata.layers[TRANSFORMED_LAYER] = normalize_log1p(matrix, spec) if opts.normalize else apply_transform(matrix, spec)
    return TRANSFORMED_LAYER


def _cluster(adata, layer: str | None, opts: AnnotateOptions, progress: Progress) -> tuple[str, dict]:
    from ctr.data.anndata_io import expression
    from ctr.data.cluster import cluster_cells
    from ctr.data.preprocess import prepare_for_clustering
    from ctr.options import check_neighbors_k
    from ctr.stats import natural_order

    if CLUSTER_KEY in adata.obs.columns and not PreviousRun.of(adata, opts.key_added).made_by_ctr:
        raise InputError(
            f"obs['{CLUSTER_KEY}'] already exists and was not written by ctr; refusing to overwrite it",
            hint=f"reuse it with --annotation-only --cluster-key {CLUSTER_KEY}, or rename the column",
        )
    check_neighbors_k(opts.neighbors_k, adata.n_obs)
    matrix, var_names, _ = expression(adata, layer)
    with progress.stage("preprocess"):
        prepared = prepare_for_clustering(adata, matrix, var_names, technical=technical_patterns(opts.technical_markers))
    with progress.stage("cluster", f"{adata.n_obs} cells"):
        result = cluster_cells(
            prepared.matrix,
            resolution=opts.resolution,
            n_pcs=opts.n_pcs,
            neighbors_k=opts.neighbors_k,
            random_seed=opts.random_seed,
            use_gpu=False if opts.no_gpu else None,
            progress=progress,
            # the embedding is drawn only by the report: without one, no layout is computed
            compute_umap=None if not opts.no_report else False,
        )
    adata.obs[CLUSTER_KEY] = pd.Categorical(result.labels, categories=natural_order(result.labels))
    if result.embedding_umap is not None:
        adata.obsm["X_umap"] = result.embedding_umap
    info = {
        "backend": result.backend,
        "n_pcs_used": result.n_pcs_used,
        "n_clusters": int(len(set(result.labels))),
        "embedding": result.embedding_method,
        "markers_used": len(prepared.kept),
        "markers_dropped": prepared.dropped,
        "technical_moved": prepared.moved,
        "timings": result.timings,
        "warnings": list(result.warnings) + prepared.warnings,
    }
    return CLUSTER_KEY, info


def technical_patterns(names: str | None) -> tuple[str, ...]:
    """``--technical-markers``: the built-in patterns when not given, none for "none", else the
    listed channel names (matched whole, case-insensitively)."""
    import re

    from ctr.data.preprocess import TECHNICAL_MARKERS

    if names is None:
        return tuple(TECHNICAL_MARKERS)
    listed = [n.strip() for n in names.split(",") if n.strip()]
    if [n.lower() for n in listed] == ["none"]:
        return ()
    return tuple(rf"^{re.escape(n)}$" for n in listed)


def demo_adata():
    """scanpy's bundled pbmc68k_reduced with its log-normalised genes (``.raw``) as X."""
    import anndata as ad
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    demo = ad.AnnData(X=pbmc.raw.X.copy(), obs=pbmc.obs[["bulk_labels", "n_genes", "percent_mito", "n_counts"]].copy(),
                      var=pd.DataFrame(index=pbmc.raw.var_names.copy()))
    demo.obs = demo.obs.rename(columns={"bulk_labels": "reference_labels"})
    return demo


def run_demo(output_dir: str = "ctr-demo", force: bool = False) -> RunSummary:
    """The ``ctr demo`` command: the full pipeline on data that ships with scanpy."""
    progress = Progress()
    opts = AnnotateOptions(input="scanpy:pbmc68k_reduced", output_dir=output_dir, ruleset="pbmc", force=force)
    with _run_directory(output_dir, force, progress) as run:
        with progress.stage("load demo data", "scanpy pbmc68k_reduced, 700 cells x 765 genes"):
            adata = demo_adata()
        run.summary = finish_run(annotate_adata(adata, opts, run.staging, progress), opts, run.staging, progress)
    summary = run.finished()
    with progress.stage("evaluate", f"against obs['{DEMO_TRUTH}']"):
        summary.agreement = demo_agreement(adata, summary.run_dir)  # ctr evaluate on the finished run
    summary.notes.append("demo data: scanpy's pbmc68k_reduced (log-normalised genes); obs['reference_labels'] are its bulk_labels (each cell matched to the nearest of ten FACS-sorted bulk profiles)")
    return summary


DEMO_TRUTH = "reference_labels"
DEMO_MAPPING = Path(__file__).resolve().parent / "data" / "pbmc68k_reference.yaml"


def demo_agreement(adata, run_dir: Path) -> list[str]:
    """How well the demo's labels agree with its reference labels, next to the cluster oracle (the
    best any per-cluster labelling of these clusters could do), at lineage and at fine level.

    The fine-level evaluation goes through ``ctr evaluate`` (evaluation.csv and the report's
    Accuracy section); the lineage level is the same comparison cut at the root types.
    """
    from ctr.evaluation_io import evaluate, evaluate_run

    lineage = evaluate(adata, DEMO_TRUTH, mapping=DEMO_MAPPING, level=0)
    fine, _ = evaluate_run(run_dir, DEMO_TRUTH, mapping=DEMO_MAPPING)

    def line(what: str, ev) -> str:
        o = ev.overall
        return (f"  {what:<50} accuracy {o['accuracy']:.3f}   cluster oracle {o['cluster_oracle']:.3f}   "
                f"unassigned {o['unassigned_share']:.3f}")

    return [
        f"agreement with the demo's reference labels (obs['{DEMO_TRUTH}'], FACS-sorted populations):",
        line("lineage (T, B, NK, myeloid, HSPC)", lineage),
        line("fine (CD4 T, CD8 T, NK, B, monocyte, DC, HSPC)", fine),
        f"  per class and confusion matrix: report.html (Accuracy); again with: ctr evaluate {run_dir} "
        f"--truth {DEMO_TRUTH} --mapping {DEMO_MAPPING} [--level 0]",
    ]
