"""The ``ctr`` command line: parses options, calls the Python API, prints, sets the exit code.

Exit codes: 0 success; 1 bad input (data, ruleset, parameters, outputs) or lint errors;
2 usage errors; 3 an internal error (a bug in ctr: rerun with ``--debug`` and report it);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from pathlib import Path

from ctr import __version__
from ctr.errors import CtrError, UsageError

IMPORT_TOOLS = ("garnett", "celesta", "scyan", "scimap", "astir")  # ctr.lang.importers.TOOLS, without importing it here
EXPORT_TARGETS = ("garnett", "scimap", "celesta", "scyan", "ct-ref")

EPILOG = "Docs: docs/cli.md. Every error names what is wrong and what would be valid; --debug shows tracebacks."


def _add_annotate(sub) -> None:
    p = sub.add_parser(
        "annotate",
        help="annotate clusters of an .h5ad file with a ruleset and write a run directory",
        description="Cluster (unless --annotation-only), annotate every cluster with a ruleset, refine, "
        "and write a run directory with output.h5ad, the tables, the trace and report.html.",
    )
    p.add_argument("input", metavar="INPUT.h5ad", help="AnnData file (cells x markers), or an AnnData .zarr store; never modified")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="run directory to create (must be empty unless --force)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--ruleset", metavar="NAME|PATH", help="built-in ruleset name (see `ctr rulesets`) or a .ctr/.yaml/.json file")
    src.add_argument("--marker-map", metavar="FILE.json", help="a JSON marker map (the legacy format)")
    p.add_argument("--tissue", metavar="NAME", help="tissue profile (sets ruleset, preset and expected composition; kept by reruns, 'none' drops it)")
    p.add_argument("--preset", metavar="NAME", help="parameter preset: sparse_spatial, deep_scrnaseq, heterogeneous_tumor, conservative "
                   "(an --annotation-only rerun keeps the earlier run's preset; 'none' drops it)")
    p.add_argument("--layer", metavar="L", help="expression layer (default: first of batchcorr, aligned, then X)")
    p.add_argument("--var-names", metavar="COLUMN",
                   help="var column that holds the marker names, when var_names are channels (Pr141Di, FL1-A) and the "
                        "antigens are in a column (marker, desc); empty entries keep their var name, var_names are not "
                        "changed. Default: a text column that resolves clearly more ruleset markers than var_names "
                        "(said in the notes, CTR519), kept by reruns; 'none': match var_names")
    p.add_argument("--cluster-key", metavar="K", help="obs column with cluster labels (default with --annotation-only: cluster_lvl0, leiden, louvain, cluster)")
    p.add_argument("--annotation-only", action="store_true", help="use existing cluster labels, skip clustering")
    p.add_argument("--scoring-params", metavar="JSON", help="scoring parameters as inline JSON or @file.json, e.g. "
                   "'{\"positivity\": \"gate\", \"gate\": 0.5}' for values rescaled around manual gates (docs/cli.md lists the keys)")
    p.add_argument("--gating-params", metavar="JSON", help="gating parameters as inline JSON or @file.json: level_defaults per level, "
                   "nodes per cell type ('{\"nodes\": {\"Lymphatics\": {\"min_coverage\": 0.5}}}')")
    p.add_argument("--refinement-params", metavar="JSON", help="refinement parameters as inline JSON or @file.json")
    p.add_argument("--refinement-plan", metavar="YAML", help="manual refinement plan (override, merge, subcluster, relabel)")
    p.add_argument("--skip-refinement", action="store_true", help="annotate only; no relabelling or subclustering")
    p.add_argument("--transform", metavar="SPEC", help="transform values first: arcsinh:COFACTOR or log1p")
    p.add_argument("--normalize", metavar="total[:TARGET]",
                   help="count data (RNA): scale each cell to TARGET counts (default 10000), then log1p; "
                        "recorded in params.json")
    p.add_argument("--technical-markers", metavar="NAMES",
                   help="comma-separated channels left out of clustering and copied to obs as tech_NAME "
                        "(default: DAPI, Hoechst, DNA1/2, histone, blank and background channels, acquisition "
                        "parameters such as Time, Event_length, FSC/SSC; 'none': keep all)")
    p.add_argument("--no-gpu", action="store_true", help="never use the GPU (rapids-singlecell), even when available")
    p.add_argument("--random-seed", type=int, default=0, metavar="N", help="seed for PCA/Leiden (default 0)")
    p.add_argument("--resolution", type=float, default=1.0, metavar="R", help="Leiden resolution (default 1.0)")
    p.add_argument("--n-pcs", type=int, default=30, metavar="N", help="principal components (capped at usable markers - 1; default 30)")
    p.add_argument("--neighbors-k", type=int, default=15, metavar="K", help="neighbours in the kNN graph (default 15)")
    p.add_argument("--key-added", default="ctr", metavar="PREFIX", help="prefix of the obs/uns keys written (default ctr)")
    p.add_argument("--unit", choices=["cluster", "cell"], default="cluster", help="label clusters (default) or single cells")
    p.add_argument("--no-report", action="store_true", help="do not write report.html (when ctr clusters, no UMAP layout is computed either: obsm['X_umap'] is left out)")
    p.add_argument("--backed", action="store_true",
                   help="read the .h5ad out of core: statistics chunk by chunk on Dask (a .zarr store, or an .h5ad larger "
                   "than half the free memory, always is); needs --annotation-only and --skip-refinement")
    p.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run the out-of-core statistics on this dask.distributed scheduler (e.g. tcp://127.0.0.1:8786); "
                   "implies reading the input out of core")
    p.add_argument("--force", action="store_true",
                   help="replace the files of an earlier ctr run in --output-dir (only those its ctr_run.json lists; "
                        "other files stay, and an input is never replaced), and run even when the panel check finds "
                        "lint errors or no assignable cell type")
    p.set_defaults(func=_cmd_annotate)


def _cmd_annotate(args) -> int:
    from ctr.pipeline import AnnotateOptions, run_annotate

    opts = AnnotateOptions(**{k: v for k, v in vars(args).items() if k in AnnotateOptions.__dataclass_fields__})
    summary = run_annotate(opts)
    print(summary.describe())
    return 0


def _cmd_lint(args) -> int:
    from ctr.ruleset_commands import lint_target

    report = lint_target(args.ruleset, args.panel, var_names=args.var_names)
    print(report.format_json() if args.format == "json" else report.format_text())
    return report.exit_code(strict=args.strict)


DEFAULT_EXPORT = "fallopian_tube"


def _cmd_export(args) -> int:
    from ctr.io.rundir import check_output_file
    from ctr.lang import load_ruleset, ruleset_files
    from ctr.ruleset_commands import export_ruleset

    if args.ruleset is None:
        # the tuning guide's `ctr export-markers --output FILE` exports the default map; never silently
        print(f"ctr: no --ruleset given: exporting the default ruleset '{DEFAULT_EXPORT}'; pass --ruleset NAME|PATH "
              "for another (`ctr rulesets` lists the built-ins)", file=sys.stderr)
        args.ruleset = DEFAULT_EXPORT
    if args.to:
        from ctr.interop_commands import export_markers

        if args.format:
            raise UsageError("--format and --to are alternatives: --to writes another tool's format")
        done = export_markers(args.ruleset, args.to, args.output, force=args.force)
        print(done.format_report(), file=sys.stderr)
        print(f"wrote {done.output} ({done.ruleset.cell_type_count} cell types as {args.to})")
        return 0
    ruleset = load_ruleset(args.ruleset)
    check_output_file(args.output, force=args.force, inputs=ruleset_files(args.ruleset))  # never the ruleset's own files
    path = export_ruleset(ruleset, args.output, args.format)
    print(f"wrote {path} ({ruleset.cell_type_count} cell types from ruleset '{ruleset.name}')")
    return 0


def _cmd_import(args) -> int:
    from ctr.interop_commands import import_markers

    done = import_markers(args.file, getattr(args, "from"), args.output, force=args.force)
    print(done.format_report(), file=sys.stderr)
    errors = [d for d in done.lint if d.level == "error"]
    print(f"wrote {done.output} ({done.ruleset.cell_type_count} cell types, {len(done.ruleset.states)} cell states); "
          f"lint: {len(errors)} errors, {sum(d.level == 'warning' for d in done.lint)} warnings")
    return 1 if errors else 0


def _cmd_explain(args) -> int:
    if args.markers:
        from ctr.report import explain_markers

        print(explain_markers(args.run_dir, args.format), end="")
        return 0
    from ctr.report import explain_run

    print(explain_run(args.run_dir, args.cluster or None, args.format))
    return 0


def _cmd_report(args) -> int:
    from ctr.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def _cmd_diff(args) -> int:
    from ctr.report import diff_runs

    print(diff_runs(args.run_a, args.run_b, args.format))
    return 0


def _cmd_evaluate(args) -> int:
    from ctr.evaluation_io import evaluate_run
    from ctr.report.evaluation import summary_text

    result, written = evaluate_run(args.run_dir, args.truth, mapping=args.mapping, level=args.level,
                                   cluster_key=args.cluster_key)
    for diag in result.diagnostics:
        print(diag.header() + (f" (hint: {diag.hint})" if diag.hint else ""), file=sys.stderr)
    print(summary_text(result.overall, result.per_class, truth=f"obs['{args.truth}']",
                       unused=result.unused_mapping_keys))  # unmatched labels: in the diagnostic above
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_rulesets(args) -> int:
    from ctr.ruleset_commands import list_catalogue

    catalogue = list_catalogue()
    print("Built-in rulesets (ctr annotate --ruleset NAME):")
    for rs in catalogue["rulesets"]:
        status = f"ERROR: {rs['error']}" if rs.get("error") else f"{rs['cell_types']} cell types"
        print(f"  {rs['name']:<24} {status:<16} {rs['description']}")
    print("\nTissue profiles (ctr annotate --tissue NAME):")
    for t in catalogue["tissues"]:
        aliases = f" (also: {', '.join(t['aliases'])})" if t["aliases"] else ""
        print(f"  {t['name']:<24} ruleset {t['ruleset']}, preset {t['preset'] or 'none'}{aliases}")
        if t.get("description"):
            print(f"  {'':<24} {t['description']}")
    return 0


def _cmd_demo(args) -> int:
    from ctr.pipeline import run_demo

    summary = run_demo(args.output_dir, force=args.force)
    print(summary.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctr",
        description="Annotate cell types in clustered single-cell and spatial-proteomics data with declarative tissue rulesets.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"ctr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    _add_annotate(sub)

    p = sub.add_parser("lint-ruleset", help="check a ruleset (and optionally a panel) and print diagnostics")
    p.add_argument("ruleset", metavar="NAME|PATH")
    p.add_argument("--panel", metavar="FILE", help="an .h5ad (its var_names) or a text file of marker names; channel "
                   "names with a measurement tag (141Pr_CD45, CD3 FITC-A) match by their marker (docs/marker-names.md)")
    p.add_argument("--var-names", metavar="COLUMN",
                   help="with an .h5ad panel: the var column that holds the marker names (as ctr annotate --var-names; "
                        "default: a text column that resolves clearly more markers than var_names, CTR519; 'none': var_names)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--strict", action="store_true", help="warnings also make the exit status 1")
    p.set_defaults(func=_cmd_lint)

    p = sub.add_parser("export-markers", help="write a ruleset as .ctr, .yaml or .json, or in another tool's format (--to)",
                       description="Write a ruleset in one of our spellings, or with --to in another tool's marker "
                       "format; what that format cannot express is listed in a loss report.")
    p.add_argument("--ruleset", metavar="NAME|PATH",
                   help="ruleset to export: a built-in name or a file (without it: the default, fallopian_tube, and a note saying so)")
    p.add_argument("--output", required=True, metavar="FILE")
    p.add_argument("--format", choices=["json", "yaml", "ctr"], help="default: from the output file's extension")
    p.add_argument("--to", choices=list(EXPORT_TARGETS),
                   help="another tool's format: garnett (.txt), scimap, celesta, scyan (.csv), ct-ref (the reference tool's JSON map)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file (never the ruleset's own files, "
                   "a symbolic link or a device)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import-markers", help="translate another tool's marker file into a ruleset (.ctr, .yaml or .json)",
                       description="Translate a marker file of Garnett, CELESTA, scyan, scimap or Astir into a ruleset, "
                       "with a comment citing the source line of every type and a loss report of what was approximated. "
                       "`--ruleset FILE` also reads these files directly.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--from", required=True, choices=[*IMPORT_TOOLS, "auto"], help="the tool that wrote FILE; auto guesses from the content")
    p.add_argument("--output", required=True, metavar="OUT.ctr|.yaml|.json")
    p.add_argument("--force", action="store_true", help="replace an existing --output file (never the imported file, "
                   "a symbolic link or a device)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("explain", help="explain, gate by gate, why each cluster got its label",
                       description="Explain, gate by gate, why each cluster got its label (read from the run's trace); "
                       "a requirement or veto row names its marker's positivity split. With --markers: each "
                       "marker's split instead (where it turns positive, the method that chose it, the fit "
                       "quality as Ashman's D and the share of cells positive).",
                       epilog="Docs: docs/explain-and-report.md.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--cluster", action="append", metavar="ID", help="only this cluster (repeatable)")
    which.add_argument("--markers", action="store_true",
                       help="list every marker's positivity threshold, method and fit quality (marker_thresholds.csv)")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("report", help="write RUN_DIR/report.html, a self-contained explain-why report")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("diff", help="what changed between two runs, and the gate and parameter that explain it")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser(
        "evaluate", help="accuracy of a run against reference labels in obs (writes RUN_DIR/evaluation.csv)",
        description="Compare each cell's label in RUN_DIR/output.h5ad with a reference label column: accuracy, "
        "macro-F1, per-class precision and recall, confusion matrix, unassigned share, the cluster oracle (each "
        "cluster given its majority reference label) and the gap to it. A label above the reference's cell type "
        "(a correct ancestor) is counted apart from a wrong one. Writes evaluation.csv, evaluation_confusion.csv "
        "and evaluation.json into RUN_DIR and adds an Accuracy section to report.html.",
        epilog="Docs: docs/evaluate.md.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `ctr annotate` (with output.h5ad)")
    p.add_argument("--truth", required=True, metavar="OBS_KEY", help="obs column with the reference labels")
    p.add_argument("--mapping", metavar="MAP.yaml",
                   help="reference label -> ruleset cell type (a name, a 'Root / Child' path, a list of names, or null "
                        "to leave those cells out); unlisted labels are matched by name, ignoring case")
    p.add_argument("--level", type=int, metavar="N", help="compare at ruleset depth N (0 = the root types): labels and "
                   "mapped cell types are cut to that depth")
    p.add_argument("--cluster-key", metavar="K", help="obs column of clusters for the oracle (default: the run's final "
                   "clusters, ctr_cluster)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("rulesets", help="list the built-in rulesets and tissue profiles")
    p.set_defaults(func=_cmd_rulesets)

    p = sub.add_parser("demo", help="run the whole pipeline on data that ships with the install (PBMC, scanpy)")
    p.add_argument("--output-dir", default="ctr-demo", metavar="DIR", help="run directory (default ./ctr-demo)")
    p.add_argument("--force", action="store_true", help="replace the files of a previous demo run in --output-dir")
    p.set_defaults(func=_cmd_demo)
    return parser


def _print_error(exc: CtrError) -> None:
    """Located diagnostics first (with source excerpts when known), then one summary line."""
    from ctr.diagnostics import DiagnosticList

    from ctr.textfile import shorten

    if not exc.diagnostics:
        print(shorten(f"ctr: error: {exc}"), file=sys.stderr)
        return
    diags = DiagnosticList(exc.diagnostics)
    sources = getattr(exc, "sources", None) or {}
    for diag in diags.sorted():
        src = sources.get(diag.loc.file) if diag.loc is not None else None
        print(shorten(diag.format(src)), file=sys.stderr)
    n_err, n_warn = len(diags.errors), len(diags.warnings)
    print(f"ctr: error: {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}", file=sys.stderr)
    if exc.hint and all(exc.hint != d.hint for d in diags):
        print(shorten(f"  hint: {exc.hint}"), file=sys.stderr)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Ctrl-C during a library's import or callback can surface wrapped (e.g. as RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupted() -> int:
    print("ctr: interrupted; the output is as it was before (nothing half-written)", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # numpy, scanpy and anndata speak through `warnings`, in their words and with their source lines;
    # what matters to a user is said by ctr's own diagnostics, the rest is shown with --debug only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            return _run_command(args)
        finally:
            if args.debug:
                for w in caught:
                    print(f"ctr: debug: {w.category.__name__} at {w.filename}:{w.lineno}: {w.message}", file=sys.stderr)


def _run_command(args) -> int:
    """Run the parsed command; errors become a message and an exit code (a traceback only with --debug)."""
    try:
        return int(args.func(args) or 0)
    except CtrError as exc:
        if args.debug:
            raise
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in ctr, not in the user's input
        if _caused_by_interrupt(exc):
            return _interrupted()
        if args.debug:
            raise
        from ctr.textfile import shorten

        print(
            shorten(f"ctr: internal error: {type(exc).__name__}: {exc}\n"
                    "  this is a bug in ctr; rerun with --debug for the traceback and report it"),
            file=sys.stderr,
        )
        return 3


def run() -> None:
    """The console entry point: ``main`` with its exit status."""
    try:
        code = main()
    except KeyboardInterrupt:  # a second interrupt while the first was being reported
        code = 130
    if code == 130:
        import signal

        # a second Ctrl-C (or one still pending in a library) must not turn the clean exit into a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    run()
