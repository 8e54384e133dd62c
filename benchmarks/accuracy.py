"""Accuracy of ctr with default parameters on every labelled data set we have.

Each set is clustered once with fixed settings (ctr's own clustering: scale, PCA 30, kNN 15,
Leiden resolution 1.0, seed 0, CPU), the cluster labels are cached under benchmarks/.cache/, and
then annotated (annotation only: seconds per set) by

- the built-in ruleset for its tissue (``builtin``), and
- a ruleset written by others, not against this data (``by_others``): the files of
  ../shared/data/rulesets-by-others/ translated by hand into benchmarks/rulesets_by_others/;
- on request (``--rulesets imported``), the same files read by ctr's own importers.

Every figure is per cell against the set's reference labels, mapped to each ruleset's lineages
by benchmarks/mappings/SET__RULESET.yaml (see docs/accuracy.md). No preset and no per-set
parameter is used; ``params`` overrides apply to every set alike.

Usage::

    python benchmarks/accuracy.py [--params JSON|@file.json] [--sets a,b] [--rulesets builtin,by_others,imported]
                                  [--refine] [--recluster] [--csv OUT.csv] [--against [BASE.csv]]
    python benchmarks/accuracy.py --synthetic        # synthetic panels of known truth (synthetic_panels.py)

From Python (what the cross-validation of defaults calls, many times)::

    from benchmarks.accuracy import run          # or: sys.path.insert(0, "benchmarks"); from accuracy import run
    table = run({"scoring": {"positive_quantile": 0.6}}, sets=["pbmc68k", "cytomem_pbmc"])
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
CACHE = HERE / ".cache"
RULESETS_BY_OTHERS = HERE / "rulesets_by_others"
MAPPINGS = HERE / "mappings"
CLUSTER_KEY = "bench_cluster"
BASELINE = HERE / "accuracy_baseline.csv"  # the table with the defaults before the cross-validation

# fixed clustering settings (ctr annotate's defaults); part of the cache key
CLUSTERING = {"resolution": 1.0, "n_pcs": 30, "neighbors_k": 15, "random_seed": 0, "use_gpu": False}

COLUMNS = ["set", "ruleset", "kind", "n_cells", "accuracy", "oracle", "gap", "unassigned", "ambiguous",
           "ancestor", "macro_f1", "seconds"]


@dataclass(frozen=True)
class LabelledSet:
    name: str
    describe: str  # where the values come from and how they were transformed
    load: Callable[[], object]  # -> AnnData with the values to annotate in X and the truth in obs
    truth: str
    rulesets: dict[str, tuple[str, ...]]  # kind -> ruleset names (built-in name or by-others file stem)
    given_clusters: str | None = None  # an obs column of clusters that come with the data


# --- loading -------------------------------------------------------------------------------------


def _read(name: str):
    import anndata as ad

    path = DATA / f"{name}.h5ad"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (the labelled sets live in ../shared/data)")
    return ad.read_h5ad(path)


def _arcsinh(name: str, cofactor: float):
    def load():
        adata = _read(name)
        adata.X = np.arcsinh(np.asarray(adata.X, dtype=np.float32) / cofactor)
        return adata
    return load


def _layer(name: str, layer: str):
    def load():
        adata = _read(name)
        adata.X = np.asarray(adata.layers[layer], dtype=np.float32)
        return adata
    return load


def _as_is(name: str):
    return lambda: _read(name)


def _normalise_log1p(name: str):
    def load():
        import scanpy as sc

        adata = _read(name)
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        return adata
    return load


def _pbmc68k():
    import anndata as ad
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    return ad.AnnData(X=pbmc.raw.X.copy(), obs=pbmc.obs[["bulk_labels", "louvain"]].copy(),
                      var=pd.DataFrame(index=pbmc.raw.var_names.copy()))


SETS: dict[str, LabelledSet] = {s.name: s for s in (
    LabelledSet("pbmc68k", "scanpy pbmc68k_reduced, .raw log-normalised genes, its louvain clusters", _pbmc68k,
                "bulk_labels", {"builtin": ("pbmc",), "by_others": ("garnett_pbmc",)}, given_clusters="louvain"),
    LabelledSet("garnett_pbmc_facs", "10x PBMC, FACS-sorted; normalize_total + log1p", _normalise_log1p("garnett_pbmc_facs"),
                "cell_type", {"builtin": ("pbmc",), "by_others": ("garnett_pbmc",)}),
    LabelledSet("cytomem_pbmc", "CyTOF PBMC; arcsinh(x/5)", _arcsinh("cytomem_pbmc", 5.0),
                "cell_type", {"builtin": ("pbmc", "bone_marrow_cytof"), "by_others": ("garnett_pbmc",)}),
    LabelledSet("scyan_aml_short", "CyTOF AML bone marrow; layers['asinh']", _layer("scyan_aml_short", "asinh"),
                "cell_type", {"builtin": ("bone_marrow_cytof",), "by_others": ("scyan_aml",)}),
    LabelledSet("celesta_codex_crc", "CODEX colorectal cancer; arcsinh(x/150)", _arcsinh("celesta_codex_crc", 150.0),
                "cell_type", {"builtin": ("codex_immune",), "by_others": ("celesta_crc",)}),
    LabelledSet("scimap_cycif", "CyCIF Hodgkin lymphoma; as given (0..1, 0.5 = scimap's gate)", _as_is("scimap_cycif"),
                "cell_type", {"builtin": ("hodgkin_lymphoma",), "by_others": ("scimap_cycif",)}),
)}

# kind "imported": the same source files read by ctr's own importers (`--ruleset FILE`), scored
# with the hand translation's mapping; run on request (--rulesets imported), not by default
IMPORTED = {
    "garnett_pbmc": "garnett_pbmc_test.txt",
    "celesta_crc": "celesta_prior_marker_info.csv",
    "scyan_aml": "scyan_aml_default.csv",
    "scimap_cycif": "scimap_phenotype_workflow.csv",
}
IMPORT_PREFIX = "import:"
DEFAULT_KINDS = ("builtin", "by_others")

_PREPARED: dict[str, object] = {}  # set name -> AnnData with clusters (one process loads each set once)
_RULESETS: dict[str, object] = {}


# the code that turns a set into clusters: a change to any of it makes every cached clustering stale
CLUSTERING_CODE = ("data/cluster.py", "data/neighbors.py", "data/preprocess.py", "pipeline.py")


def _clustering_code_digest() -> str:
    import ctr

    root = Path(ctr.__file__).parent
    digest = hashlib.sha256()
    for name in CLUSTERING_CODE:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def _cache_file(spec: LabelledSet) -> Path:
    """The cached clustering of ``spec``: keyed by the set, its file, the clustering settings and
    the clustering code, so a change to any of them clusters again instead of reusing stale labels."""
    source = DATA / f"{spec.name}.h5ad"
    stamp = f"{source.stat().st_size}" if source.is_file() else "bundled"
    parts = [spec.name, spec.describe, CLUSTERING, stamp, _clustering_code_digest()]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"{spec.name}-clusters-{key}.csv"


def cluster_labels(adata, spec: LabelledSet, *, recluster: bool = False) -> np.ndarray:
    """The set's clusters: given with the data, or ctr's clustering, computed once and cached."""
    if spec.given_clusters:
        return adata.obs[spec.given_clusters].astype(str).to_numpy()
    cache = _cache_file(spec)
    if cache.is_file() and not recluster:
        cached = pd.read_csv(cache, dtype=str, keep_default_na=False)
        if len(cached) == adata.n_obs and (cached["cell"].to_numpy() == adata.obs_names.to_numpy()).all():
            return cached["cluster"].to_numpy()
    from ctr.data.cluster import cluster_cells
    from ctr.data.preprocess import prepare_for_clustering
    from ctr.pipeline import technical_patterns

    scratch = adata.copy()  # technical channels are copied into obs: keep the benchmark's copy clean
    prepared = prepare_for_clustering(scratch, scratch.X, list(scratch.var_names), technical=technical_patterns(None))
    result = cluster_cells(prepared.matrix, compute_umap=False, **CLUSTERING)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    pd.DataFrame({"cell": adata.obs_names, "cluster": result.labels}).to_csv(tmp, index=False)
    tmp.replace(cache)
    return np.asarray(result.labels, dtype=str)


def prepared(name: str, *, recluster: bool = False):
    """The set's AnnData (values in X) with ``obs['bench_cluster']``; cached in memory."""
    if name not in _PREPARED or recluster:
        spec = SETS[name]
        adata = spec.load()
        adata.obs[CLUSTER_KEY] = pd.Categorical(cluster_labels(adata, spec, recluster=recluster))
        _PREPARED[name] = adata
    return _PREPARED[name]


def ruleset(name: str):
    """A built-in ruleset by name, one of benchmarks/rulesets_by_others/NAME.ctr, or
    ``import:FILE`` (a file of ../shared/data/rulesets-by-others/ read by ctr's importer); compiled once."""
    if name not in _RULESETS:
        from ctr.lang import load_ruleset

        path = RULESETS_BY_OTHERS / f"{name}.ctr"
        if name.startswith(IMPORT_PREFIX):
            path = DATA / "rulesets-by-others" / name[len(IMPORT_PREFIX):]
        _RULESETS[name] = load_ruleset(str(path) if path.is_file() else name)
    return _RULESETS[name]


def mapping_file(set_name: str, ruleset_name: str) -> Path:
    """benchmarks/mappings/SET__RULESET.yaml; an imported ruleset shares its hand translation's."""
    hand = {f"{IMPORT_PREFIX}{file}": stem for stem, file in IMPORTED.items()}.get(ruleset_name, ruleset_name)
    return MAPPINGS / f"{set_name}__{hand}.yaml"


def rulesets_of(spec: LabelledSet) -> dict[str, tuple[str, ...]]:
    """The set's rulesets by kind, with the imported counterparts of its by-others rulesets."""
    kinds = dict(spec.rulesets)
    kinds["imported"] = tuple(f"{IMPORT_PREFIX}{IMPORTED[n]}" for n in spec.rulesets.get("by_others", ()) if n in IMPORTED)
    return kinds


# --- the benchmark -------------------------------------------------------------------------------


def evaluate_one(set_name: str, ruleset_name: str, *, params: dict | None = None, refine: bool = False):
    """Annotate one set with one ruleset and evaluate it: (AnnotationResult, Evaluation)."""
    import ctr

    spec = SETS[set_name]
    adata = prepared(set_name)
    params = params or {}
    result = ctr.annotate(
        adata, ruleset(ruleset_name), cluster_key=CLUSTER_KEY, layer="X",
        scoring_params=params.get("scoring"), gating_params=params.get("gating"),
        refinement_params=params.get("refinement"), skip_refinement=not refine, write_obs=False,
    )
    mapping = mapping_file(set_name, ruleset_name)
    evaluation = ctr.evaluate(result, adata.obs[spec.truth].astype(str).to_numpy(),
                              mapping=mapping if mapping.is_file() else None,
                              clusters=adata.obs[CLUSTER_KEY].astype(str).to_numpy())
    return result, evaluation


def run(params: dict | None = None, sets: Iterable[str] | None = None, rulesets: Iterable[str] | None = None,
        *, refine: bool = False) -> pd.DataFrame:
    """One row per (set, ruleset): n_cells, accuracy, cluster oracle, gap, unassigned, macro-F1, ...

    ``params``: ``{"scoring": {...}, "gating": {...}, "refinement": {...}}`` overrides, the JSON
    shape of ``--scoring-params`` etc., applied to every set. ``sets``: names from :data:`SETS`
    (default all whose data are present). ``rulesets``: kinds (``builtin``, ``by_others``,
    ``imported``) and/or ruleset names to keep (default ``builtin`` and ``by_others``).
    ``refine``: run ctr's refinement too (default annotation only).
    """
    unknown = set(params or {}) - {"scoring", "gating", "refinement"}
    if unknown:
        raise ValueError(f"params keys must be scoring, gating, refinement; got {sorted(unknown)}")
    chosen = list(sets) if sets is not None else [s for s in SETS if s == "pbmc68k" or (DATA / f"{s}.h5ad").is_file()]
    missing = [s for s in chosen if s not in SETS]
    if missing:
        raise ValueError(f"unknown sets {missing}; known: {', '.join(SETS)}")
    wanted = set(rulesets) if rulesets is not None else set(DEFAULT_KINDS)
    if sets is None:
        absent = [s for s in SETS if s not in chosen]
        if absent:  # a partial table must say so: its means are not comparable with the full one
            print(f"accuracy: skipped {', '.join(absent)}: not in {DATA}", file=sys.stderr)
    rows = []
    for set_name in chosen:
        for kind, names in rulesets_of(SETS[set_name]).items():
            for rs_name in names:
                if kind not in wanted and rs_name not in wanted:
                    continue
                t0 = time.perf_counter()
                _, ev = evaluate_one(set_name, rs_name, params=params, refine=refine)
                o = ev.overall
                rows.append({
                    "set": set_name, "ruleset": rs_name, "kind": kind, "n_cells": int(o["n_cells"]),
                    "accuracy": o["accuracy"], "oracle": o["cluster_oracle"], "gap": o["oracle_gap"],
                    "unassigned": o["unassigned_share"], "ambiguous": o["ambiguous_share"],
                    "ancestor": o["ancestor_share"], "macro_f1": o["macro_f1"],
                    "seconds": time.perf_counter() - t0,
                })
    return pd.DataFrame(rows, columns=COLUMNS)


def compare(table: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``baseline`` (an earlier table, e.g. benchmarks/accuracy_baseline.csv) beside
    it: ``delta`` = accuracy - baseline accuracy, per (set, ruleset); NaN where the baseline has no row."""
    before = baseline.set_index(["set", "ruleset"])["accuracy"].rename("baseline")
    out = table.join(before, on=["set", "ruleset"])
    out["delta"] = (out["accuracy"] - out["baseline"]).round(4) + 0.0  # + 0.0: no "-0.000" for an unchanged row
    return out


def _params(text: str | None) -> dict | None:
    if not text:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", metavar="JSON", help='overrides for every set: {"scoring": {...}, "gating": {...}, '
                    '"refinement": {...}} inline or @file.json')
    ap.add_argument("--sets", metavar="A,B", help=f"sets to run (default all): {', '.join(SETS)}")
    ap.add_argument("--rulesets", metavar="A,B", help="kinds (builtin, by_others, imported) or ruleset names "
                    "(default builtin,by_others)")
    ap.add_argument("--refine", action="store_true", help="run ctr's refinement as well (default: annotation only)")
    ap.add_argument("--recluster", action="store_true", help="cluster again instead of using benchmarks/.cache/")
    ap.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    ap.add_argument("--synthetic", action="store_true",
                    help="instead: the synthetic panels of known truth (MIBI-, flow- and IMC-like; "
                         "benchmarks/synthetic_panels.py, which takes the same --params, --refine and --csv)")
    ap.add_argument("--against", metavar="BASE.csv", nargs="?", const=str(BASELINE),
                    help="add the accuracy of an earlier table and the change (default file: "
                         "benchmarks/accuracy_baseline.csv, the defaults before the cross-validation)")
    args = ap.parse_args(argv)
    if args.synthetic:
        sys.path.insert(0, str(HERE))  # benchmarks/ as a folder of scripts, however this one was started
        from synthetic_panels import main as synthetic_main

        return synthetic_main((["--params", args.params] if args.params else []) + (["--refine"] if args.refine else [])
                              + (["--csv", args.csv] if args.csv else []))
    sets = args.sets.split(",") if args.sets else None
    if args.recluster:
        for name in sets or SETS:
            prepared(name, recluster=True)
    t0 = time.perf_counter()
    table = run(_params(args.params), sets=sets, rulesets=args.rulesets.split(",") if args.rulesets else None,
                refine=args.refine)
    shown = compare(table, pd.read_csv(args.against)) if args.against else table
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"mean accuracy {table['accuracy'].mean():.3f}, mean gap {table['gap'].mean():.3f}, "
          f"worst gap {table['gap'].max():.3f}; {time.perf_counter() - t0:.1f} s")
    if args.against:
        worst = shown.loc[shown["delta"].idxmin()] if shown["delta"].notna().any() else None
        if worst is not None:
            print(f"largest loss against {args.against}: {worst['delta']:+.3f} ({worst['set']}, {worst['ruleset']})")
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.4f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
